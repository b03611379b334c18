"""Snapshot gc (engine/runtime/snapshot_gc.py through ``Engine.images.gc`` and ``dockyard gc``): unpacked
layers no image, container or running build uses go, with the leftovers of crashed unpacks and builds;
what is in use (an image's chains, a container's lowerdirs, a mounted overlay, a held unpack lock, a
running build, a fresh directory) stays; freed bytes are reported."""

from __future__ import annotations

import asyncio
import fcntl
import os
import re
import shutil
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO, cast

import pytest
from click.testing import CliRunner

from cli.main import cli
from engine.api import Engine
from engine.config import EngineConfig
from engine.oci.digest import Digest
from engine.runtime.options import RunOptions
from engine.runtime.record import ContainerDir, ContainerRecord, now_rfc3339
from engine.runtime.snapshot_gc import BuildLease, lease_path, mounted_lowerdirs
from engine.runtime.snapshots import SnapshotStore, chain_ids, prepare_rootfs, release_rootfs
from engine.store.layout import ResolvedImage
from tests.buildfixtures import BuilderEnv, BuildFailed
from tests.store_helpers import import_files

pytest_plugins = ("tests.buildfixtures",)

ORPHAN_BYTES = 3 << 20


@pytest.fixture
def engine() -> Engine:
    return Engine(EngineConfig.from_env())


def _unpack(engine: Engine, image: ResolvedImage) -> list[Path]:
    snaps = SnapshotStore(engine.config.snapshots_dir)
    layers = image.manifest.layers

    def opener(index: int) -> BinaryIO:
        return cast(BinaryIO, engine.images.store.open_blob(layers[index].digest))

    return snaps.ensure(image.config.diff_ids, opener)


def _orphan(engine: Engine, seed: str, size: int = ORPHAN_BYTES) -> Path:
    """A snapshot directory whose chain id no image has (as left by an image that was removed)."""
    chain = chain_ids([Digest.from_bytes(seed.encode())])[-1]
    path = engine.config.snapshots_dir / chain.hex
    (path / "data").mkdir(parents=True)
    (path / "data" / "blob").write_bytes(os.urandom(size))
    os.link(path / "data" / "blob", path / "data" / "same-inode")  # counted once
    return path


def _leftovers(engine: Engine) -> list[Path]:
    root = engine.config.snapshots_dir
    root.mkdir(parents=True, exist_ok=True)
    made = []
    for name in (".tmp-0123456789ab-deadbeef", ".run-aaaaaaaaaaaa", ".copy-bbbbbbbbbbbb", ".view-cccccccccccc",
                 ".del-0123456789ab-feedf00d"):
        (root / name / "sub").mkdir(parents=True)
        (root / name / "sub" / "file").write_bytes(b"x" * 10000)
        made.append(root / name)
    (root / "tmpk3j4h5g6").write_bytes(b"half an ADD download")
    made.append(root / "tmpk3j4h5g6")
    return made


def _gc(engine: Engine, grace: float | None = 0.0) -> Any:
    return asyncio.run(engine.images.gc(grace=grace))


def test_unused_snapshots_and_leftovers_go_image_chains_stay(engine: Engine) -> None:
    image = import_files(engine.images.store, "localhost/app:1", {"etc": None, "etc/a": b"a" * 5000})
    base_layer = import_files(engine.images.store, "localhost/two:1", {"x": b"1"})
    kept = _unpack(engine, image) + _unpack(engine, base_layer)
    orphans = [_orphan(engine, "gone-1"), _orphan(engine, "gone-2")]
    leftovers = _leftovers(engine)

    report = _gc(engine).snapshots
    assert report is not None and not report.build_running
    assert all(p.is_dir() for p in kept)
    assert not any(p.exists() for p in orphans + leftovers)
    assert report.removed_snapshots == 2 and report.removed_temp_dirs == len(leftovers)
    assert report.freed_bytes >= 2 * ORPHAN_BYTES
    assert report.freed_bytes < 2 * ORPHAN_BYTES + (1 << 20), "a hard-linked file was counted twice"
    assert sorted(os.listdir(engine.config.snapshots_dir)) == sorted(p.name for p in kept)

    # the image's snapshots go once the image does, and come back on demand
    asyncio.run(engine.images.remove("localhost/app:1"))
    report = _gc(engine).snapshots
    assert report is not None and report.removed_snapshots == len(kept) - 1
    assert [p.is_dir() for p in kept] == [False, True]
    assert _unpack(engine, base_layer)[0].is_dir()


def test_a_fresh_unused_snapshot_is_kept_for_the_grace_period(engine: Engine) -> None:
    orphan = _orphan(engine, "fresh")
    stale = _leftovers(engine)
    report = _gc(engine, grace=None).snapshots  # the default grace (600 s)
    assert report is not None and report.kept_young == 1 and report.removed_snapshots == 0
    assert orphan.is_dir()
    # .del-* is dead whatever its age; the others could belong to something in progress
    assert [p.exists() for p in stale] == [True, True, True, True, False, True]
    report = _gc(engine, grace=0.0).snapshots
    assert report is not None and report.removed_snapshots == 1 and not orphan.exists()


def test_a_held_unpack_lock_keeps_its_snapshot_and_temp_dir(engine: Engine) -> None:
    orphan = _orphan(engine, "unpacking")
    root = engine.config.snapshots_dir
    temp = root / f".tmp-{orphan.name[:12]}-0000aaaa"
    temp.mkdir()
    fd = os.open(root / f".{orphan.name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        report = _gc(engine).snapshots
        assert report is not None and report.removed_snapshots == 0
        assert orphan.is_dir() and temp.is_dir()
    finally:
        os.close(fd)
    report = _gc(engine).snapshots
    assert report is not None and report.removed_snapshots == 1 and report.removed_temp_dirs == 1
    assert not orphan.exists() and not temp.exists()


def test_a_running_build_keeps_unnamed_snapshots_and_work_dirs(engine: Engine) -> None:
    orphan = _orphan(engine, "mid-build")
    leftovers = _leftovers(engine)
    with BuildLease(engine.config.snapshots_dir):
        report = _gc(engine).snapshots
        assert report is not None and report.build_running and report.removed_snapshots == 0
        assert orphan.is_dir()
        # .tmp-: its unpack lock is free; .del-: dead anyway; build dirs and downloads: the build's
        assert [p.exists() for p in leftovers] == [False, True, True, True, False, True]
    report = _gc(engine).snapshots
    assert report is not None and not report.build_running and report.removed_snapshots == 1


def test_the_build_lease_waits_for_a_sweep_not_for_other_builds(engine: Engine) -> None:
    root = engine.config.snapshots_dir
    first, second = BuildLease(root), BuildLease(root)
    assert first.acquire(wait=False) and second.acquire(wait=False)  # builds share it
    first.release()
    second.release()
    fd = os.open(lease_path(root), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # what gc holds while it decides
        assert not BuildLease(root).acquire(wait=False)
    finally:
        os.close(fd)
    assert BuildLease(root).acquire(wait=False)


def test_container_lowerdirs_keep_their_snapshots(engine: Engine) -> None:
    image = import_files(engine.images.store, "localhost/ctr:1", {"f": b"1"})
    lowers = _unpack(engine, image)
    orphan = _orphan(engine, "used-by-a-container")
    cdir = ContainerDir(engine.config.containers_dir / ("c" * 64))
    cdir.path.mkdir(parents=True)
    record = ContainerRecord(id="c" * 64, name="ctr", image="localhost/ctr:1", image_id=str(image.id),
                             created=now_rfc3339(), args=(), options=RunOptions(), hostname="ctr",
                             lowerdirs=(*map(str, lowers), str(orphan)))
    cdir.save(record)
    asyncio.run(engine.images.remove("localhost/ctr:1"))  # rmi -f while the container exists
    report = _gc(engine).snapshots
    assert report is not None and report.removed_snapshots == 0
    assert orphan.is_dir() and all(p.is_dir() for p in lowers)
    shutil.rmtree(cdir.path)
    report = _gc(engine).snapshots
    assert report is not None and report.removed_snapshots == 2


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("overlay mounts need root")


def test_a_mounted_lowerdir_is_kept_and_a_crashed_builds_mount_is_released(engine: Engine, tmp_path: Path) -> None:
    _need_root()
    orphan = _orphan(engine, "mounted", size=1000)
    other = _orphan(engine, "mounted-too", size=1000)
    target = tmp_path / "merged"
    prepare_rootfs([orphan, other], None, None, target)
    # a build killed while its read-only view was mounted
    view = engine.config.snapshots_dir / ".view-0123456789ab"
    prepare_rootfs([orphan, other], None, None, view / "rootfs")
    try:
        names, _ = mounted_lowerdirs()
        assert {orphan.name, other.name} <= names
        report = _gc(engine).snapshots
        assert report is not None and report.removed_snapshots == 0 and report.removed_temp_dirs == 1
        assert orphan.is_dir() and other.is_dir() and not view.exists()
        assert (target / "data" / "blob").exists()
    finally:
        release_rootfs(target)
        release_rootfs(view / "rootfs")
    report = _gc(engine).snapshots
    assert report is not None and report.removed_snapshots == 2
    assert str(engine.config.root) not in Path("/proc/self/mountinfo").read_text()


def test_cli_gc_reports_freed_bytes(engine: Engine) -> None:
    _orphan(engine, "cli", size=2 << 20)
    _leftovers(engine)
    result = CliRunner().invoke(cli, ["gc", "--grace", "0"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("removed 0 blobs")
    assert re.fullmatch(r"removed 1 layer snapshots and 6 leftover build/unpack dirs \(2\.\d+MB\)", lines[1]), lines
    assert re.fullmatch(r"freed 2\.\d+MB in all", lines[2]), lines
    _orphan(engine, "cli-young", size=1000)
    result = CliRunner().invoke(cli, ["gc"], catch_exceptions=False)
    assert "kept 1 unused snapshots younger than the grace period" in result.stdout, result.stdout
    result = CliRunner().invoke(cli, ["gc", "--grace", "-1"])
    assert result.exit_code == 2


# ---- with real builds ------------------------------------------------------------------------------------


DOCKERFILE = "FROM busybox\nRUN echo one > /one\nCOPY a /a\n"


def _snapshot_entries(env: BuilderEnv) -> list[str]:
    root = env.engine.config.snapshots_dir
    return sorted(p.name for p in root.iterdir() if not p.name.endswith(".lock"))


def test_rmi_then_gc_removes_the_build_snapshots_and_a_rebuild_brings_them_back(builder_env: BuilderEnv) -> None:
    files = {"Dockerfile": DOCKERFILE, "a": "x\n"}
    first = builder_env.build(files, tags=("app:1",))
    own = [c.hex for c in chain_ids(first.image.config.diff_ids)]
    assert set(own) <= set(_snapshot_entries(builder_env))
    asyncio.run(builder_env.engine.images.remove("app:1"))
    report = _gc(builder_env.engine).snapshots
    assert report is not None and report.removed_snapshots == 2  # RUN's and COPY's; busybox's stays
    assert _snapshot_entries(builder_env) == own[:1]
    again = builder_env.build(files, tags=("app:1",))
    assert again.cached_steps() == [True, True] and again.id == first.id
    # a step that misses needs the removed snapshots: they are unpacked again from the cached layers
    more = builder_env.build({**files, "Dockerfile": DOCKERFILE + "RUN cat /one /a > /both\n"}, tags=("app:2",))
    assert more.cached_steps() == [True, True, False]
    assert set(own) <= set(_snapshot_entries(builder_env))
    assert builder_env.filesystem("app:2")["both"][0] == "file"


def test_a_failed_build_leaves_no_work_dirs(builder_env: BuilderEnv) -> None:
    builder_env.build({"Dockerfile": "FROM busybox\nRUN true\n"}, name="warm")
    before = _snapshot_entries(builder_env)
    for name, dockerfile in {
        "run": "FROM busybox\nRUN echo partial > /p && exit 3\n",
        "copy": "FROM busybox\nCOPY missing /m\n",
        "workdir-then-run": "FROM busybox\nWORKDIR /deep/er\nRUN false\n",
        "add-url": "FROM busybox\nADD http://127.0.0.1:9/nothing /n\n",
    }.items():
        with pytest.raises(BuildFailed):
            builder_env.build({"Dockerfile": dockerfile}, name=name)
        left = [n for n in _snapshot_entries(builder_env) if n not in before and n.startswith((".", "tmp"))]
        assert left == [], f"{name}: {left}"


def test_gc_during_a_build_leaves_it_alone(builder_env: BuilderEnv) -> None:
    files = {"Dockerfile": "FROM busybox\nRUN echo a > /a\nRUN sleep 1.5\nCOPY b /b\n", "b": "b\n"}
    started = threading.Event()
    outcome: dict[str, Any] = {}

    def build() -> None:
        started.set()
        try:
            outcome["result"] = builder_env.build(files, tags=("slow:1",))
        except BuildFailed as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=build)
    thread.start()
    started.wait()
    deadline = time.monotonic() + 20
    snapshots = builder_env.engine.config.snapshots_dir
    while not (snapshots.is_dir() and any(n.startswith(".run-") for n in os.listdir(snapshots))):
        assert time.monotonic() < deadline, "the RUN step never started"
        time.sleep(0.02)
    engine = Engine(EngineConfig.from_env())  # another client of the same root
    report = _gc(engine).snapshots
    thread.join(30)
    assert report is not None and report.build_running and report.removed_snapshots == 0
    assert "error" not in outcome, outcome.get("error")
    assert outcome["result"].cached_steps() == [False, False, False]
