"""Layer snapshots keyed by chain id and overlayfs root filesystems over them."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import threading
from pathlib import Path

import pytest

from engine.errors import ContainerRuntimeError, EngineError
from engine.oci.digest import Digest
from engine.runtime.snapshots import (
    MOUNT_DATA_LIMIT,
    SnapshotStore,
    chain_ids,
    is_mountpoint,
    overlay_options,
    prepare_rootfs,
    release_rootfs,
)

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="overlay mounts and whiteouts need root")


def test_chain_ids_follow_the_oci_spec() -> None:
    a, b, c = (Digest.from_bytes(x) for x in (b"a", b"b", b"c"))
    ids = chain_ids([a, str(b), c])
    assert ids[0] == a
    assert ids[1].hex == hashlib.sha256(f"{a} {b}".encode()).hexdigest()
    assert ids[2].hex == hashlib.sha256(f"{ids[1]} {c}".encode()).hexdigest()
    assert chain_ids([]) == []


def test_overlay_options_put_the_top_layer_first() -> None:
    assert overlay_options(["/s/l0", "/s/l1"], "/c/upper", "/c/work") == (
        "lowerdir=/s/l1:/s/l0,upperdir=/c/upper,workdir=/c/work")
    assert overlay_options(["/s/l0"], None, None) == "lowerdir=/s/l0"
    with pytest.raises(ContainerRuntimeError, match="','"):
        overlay_options(["/s/a,b"], None, None)


def _layer(files: dict[str, bytes | None]) -> bytes:
    """A tar with files (None: a directory); names starting with .wh. are whiteouts."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _diff_id(data: bytes) -> Digest:
    return Digest.from_bytes(data)


@needs_root
def test_ensure_unpacks_once_and_overlay_applies_whiteouts(tmp_path: Path) -> None:
    layers = [
        _layer({"etc": None, "etc/keep": b"keep", "etc/gone": b"gone", "opq": None, "opq/old": b"old"}),
        _layer({"etc": None, "etc/.wh.gone": b"", "opq": None, "opq/.wh..wh..opq": b"", "opq/new": b"new"}),
    ]
    diff_ids = [_diff_id(layer) for layer in layers]
    store = SnapshotStore(tmp_path / "snapshots")
    opened: list[int] = []

    def opener(index: int) -> io.BytesIO:
        opened.append(index)
        return io.BytesIO(layers[index])

    lowers = store.ensure(diff_ids, opener)
    assert opened == [0, 1]
    assert [p.name for p in lowers] == [c.hex for c in chain_ids(diff_ids)]
    assert store.ensure(diff_ids, opener) == lowers and opened == [0, 1]  # already there
    assert sorted(store.list()) == sorted(chain_ids(diff_ids))

    target = tmp_path / "c" / "rootfs"
    prepare_rootfs(lowers, tmp_path / "c" / "upper", tmp_path / "c" / "work", target)
    try:
        assert is_mountpoint(target)
        assert (target / "etc" / "keep").read_bytes() == b"keep"
        assert not (target / "etc" / "gone").exists()
        assert sorted(os.listdir(target / "opq")) == ["new"]
        (target / "etc" / "written").write_text("mine")
        (target / "etc" / "keep").unlink()
    finally:
        release_rootfs(target)
    assert not is_mountpoint(target)
    assert (tmp_path / "c" / "upper" / "etc" / "written").read_text() == "mine"
    assert (lowers[0] / "etc" / "keep").read_bytes() == b"keep"  # snapshots are never written
    release_rootfs(target)  # quiet when not mounted


@needs_root
def test_a_bad_layer_leaves_no_snapshot(tmp_path: Path) -> None:
    good = _layer({"a": b"1"})
    store = SnapshotStore(tmp_path / "snapshots")
    with pytest.raises(EngineError, match=r"(?i)digest|diff"):
        store.ensure([Digest.from_bytes(b"something else")], lambda _: io.BytesIO(good))
    assert store.list() == []
    assert [p.name for p in (tmp_path / "snapshots").iterdir() if not p.name.endswith(".lock")] == []


@needs_root
def test_concurrent_ensure_unpacks_each_layer_once(tmp_path: Path) -> None:
    layer = _layer({f"f{i}": b"x" * 1000 for i in range(200)})
    diff_ids = [_diff_id(layer)]
    store = SnapshotStore(tmp_path / "snapshots")
    calls: list[int] = []
    results: list[list[Path]] = []

    def opener(index: int) -> io.BytesIO:
        calls.append(index)
        return io.BytesIO(layer)

    threads = [threading.Thread(target=lambda: results.append(store.ensure(diff_ids, opener))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and all(r == results[0] for r in results)
    assert len(calls) == 1
    assert len(os.listdir(results[0][0])) == 200


@needs_root
def test_many_layers_beyond_one_page_of_mount_options(tmp_path: Path) -> None:
    # deep paths so that the absolute lowerdir list exceeds what mount(2) takes in one page
    base = tmp_path / ("d" * 100) / ("e" * 100)
    lowers = []
    for i in range(40):
        layer = base / f"layer-{i:03d}-{'x' * 40}"
        layer.mkdir(parents=True)
        (layer / f"file{i}").write_text(str(i))
        lowers.append(layer)
    assert len(overlay_options([str(p) for p in lowers], None, None)) > MOUNT_DATA_LIMIT
    target = tmp_path / "rootfs"
    prepare_rootfs(lowers, tmp_path / "upper", tmp_path / "work", target)
    try:
        assert sorted(os.listdir(target)) == sorted(f"file{i}" for i in range(40))
    finally:
        release_rootfs(target)


@needs_root
def test_no_layers_and_read_only_mounts(tmp_path: Path) -> None:
    target = tmp_path / "rootfs"
    prepare_rootfs([], tmp_path / "upper", tmp_path / "work", target)
    try:
        assert os.listdir(target) == []
    finally:
        release_rootfs(target)
    lower = tmp_path / "lower"
    lower.mkdir()
    (lower / "f").write_text("x")
    ro = tmp_path / "ro"
    prepare_rootfs([lower], None, None, ro)
    try:
        assert (ro / "f").read_text() == "x"
        with pytest.raises(OSError):
            (ro / "g").write_text("no")
    finally:
        release_rootfs(ro)
