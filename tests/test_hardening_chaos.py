"""Crash safety: SIGKILL the real CLI (.venv/bin/dockyard, DOCKYARD_ROOT set) at random moments during
build, rmi, gc, pull and push (import and load are covered by tests/test_store_crash.py), many times.

After every kill: fsck says every blob matches its digest and every ref points at a complete image.
At the end: re-running each interrupted command succeeds, gc leaves no temp file, fsck is clean, and
nothing a finished command wrote is lost.  DOCKYARD_CHAOS_SEED replays a run; DOCKYARD_CHAOS_KILLS
sets the number of kills (default 40)."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from engine.oci.reference import Reference
from engine.store.layout import ImageStore
from tests.store_helpers import import_files

REPO = Path(__file__).resolve().parent.parent
DOCKYARD = REPO / ".venv" / "bin" / "dockyard"
KILLS = int(os.environ.get("DOCKYARD_CHAOS_KILLS", "40"))
STATS: dict[str, int] = {}


def cli(root: Path, *args: str) -> subprocess.Popen[bytes]:
    command = [str(DOCKYARD)] if DOCKYARD.exists() else [sys.executable, "-c", "from cli.main import main; main()"]
    env = dict(os.environ, DOCKYARD_ROOT=str(root))
    return subprocess.Popen([*command, *args], env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)


def run_cli(root: Path, *args: str, timeout: float = 120) -> tuple[int, float, str]:
    started = time.monotonic()
    proc = cli(root, *args)
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, time.monotonic() - started, (out + err).decode()


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the CLI and anything it started (its own session, so only its processes)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)


def temp_files(store: ImageStore) -> list[str]:
    ingest = list(store.ingest_dir.iterdir()) if store.ingest_dir.exists() else []
    return [p.name for p in ingest] + [p.name for p in store.root.glob(".index.json.tmp-*")]


def assert_consistent(store: ImageStore, where: str) -> None:
    report = store.fsck()
    assert not report.corrupt_blobs, f"{where}: corrupt blobs {report.corrupt_blobs}"
    assert not report.dangling_entries, f"{where}: refs to incomplete images {report.dangling_entries}"
    assert report.clean, f"{where}: {report}"
    for image in store.images():  # every listed image resolves to a manifest and config we can read
        for name in image.names:
            store.resolve(name)


@dataclass
class Operation:
    name: str
    args: Callable[[int], tuple[str, ...]]
    prepare: Callable[[int], None] = field(default=lambda i: None)
    duration: float = 0.0


@pytest.fixture
def registry_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str | None]:
    if shutil.which("docker-registry") is None:
        yield None
        return
    from tests.registryfixtures import start_registry

    with start_registry(tmp_path_factory.mktemp("chaos-registry")) as reg:
        yield reg.host


@pytest.mark.slow
def test_sigkill_during_build_rmi_gc_pull_push(tmp_path: Path, registry_host: str | None,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    seed = int(os.environ.get("DOCKYARD_CHAOS_SEED") or time.time_ns() % 2**32)
    with capsys.disabled():
        print(f"\nchaos seed: {seed} (DOCKYARD_CHAOS_SEED={seed} replays it)")
    rng = random.Random(seed)
    root = tmp_path / "root"
    store = ImageStore(root / "images")
    base = import_files(store, "localhost/base:1", {"etc": None, "etc/hostname": b"base\n"})
    context = tmp_path / "context"
    context.mkdir()
    (context / "big").write_bytes(os.urandom(8 << 20))
    (context / "Dockerfile").write_text("FROM localhost/base:1\nCOPY big /big\nENV CHAOS=1\n")

    def refill_garbage(i: int) -> None:
        # Something for gc to delete: unreferenced blobs and an image that is untagged again.
        with store.writing():
            for n in range(3):
                store.put_blob(os.urandom(1 << 20) + f"{i}-{n}".encode())

    def victim(i: int) -> None:
        import_files(store, f"localhost/victim:{i}", {"v": os.urandom(2 << 20)})

    operations = [
        Operation("build", lambda i: ("build", "-t", f"localhost/built:{i}", "--no-cache" if i % 2 else "-q",
                                      str(context))),
        Operation("rmi", lambda i: ("rmi", f"localhost/victim:{i}"), prepare=victim),
        Operation("gc", lambda i: ("gc",), prepare=refill_garbage),
    ]
    if registry_host is not None:
        import_files(store, "localhost/pushme:1", {"p": os.urandom(6 << 20)})
        source = Reference.parse(f"{registry_host}/chaos/src:1")
        code, _, out = run_cli(root, "tag", "localhost/pushme:1", str(source))
        assert code == 0, out
        code, _, out = run_cli(root, "push", "-q", "--insecure", str(source))
        assert code == 0, out

        def forget_pulled(i: int) -> None:
            # Pull must transfer again: drop the pulled name and its blobs (another name keeps them otherwise).
            for ref in (f"{registry_host}/chaos/src:1", "localhost/pushme:1"):
                if store.exists(ref):
                    store.remove(ref, force=True)
            store.gc()

        operations += [
            Operation("pull", lambda i: ("pull", "-q", "--insecure", f"{registry_host}/chaos/src:1"),
                      prepare=forget_pulled),
            Operation("push", lambda i: ("push", "-q", "--insecure", "localhost/base:1",
                                         f"{registry_host}/chaos/pushed-{i}:1")),
        ]
    assert store.resolve("localhost/base:1").id == base.id

    # How long each full run takes, so kills spread over start-up, transfers, blob writes and index updates.
    for op in operations:
        op.prepare(10_000)
        code, took, out = run_cli(root, *op.args(10_000))
        assert code == 0, f"{op.name}: {out}"
        op.duration = took
    assert_consistent(store, "after the timing runs")

    killed_mid_run = 0
    for kill in range(KILLS):
        op = operations[kill % len(operations)]
        op.prepare(kill)
        delay = rng.uniform(0.0, op.duration * 1.05)
        proc = cli(root, *op.args(kill))
        time.sleep(delay)
        if proc.poll() is None:
            killed_mid_run += 1
        kill_group(proc)
        assert_consistent(store, f"seed {seed}, kill {kill} ({op.name} after {delay:.3f}s)")

    for op in operations:  # the interrupted commands, re-run, succeed
        op.prepare(KILLS)
        code, _, out = run_cli(root, *op.args(KILLS))
        assert code == 0, f"seed {seed}: re-run of {op.name} failed: {out}"
    code, _, out = run_cli(root, "gc")
    assert code == 0, out
    assert temp_files(store) == [], f"seed {seed}: gc left temp files"
    assert_consistent(store, f"seed {seed}: at the end")
    assert store.resolve("localhost/base:1").id == base.id  # finished work is never lost
    assert store.exists(f"localhost/built:{KILLS}")
    if registry_host is not None:
        dest = tmp_path / "verify"
        code, _, out = run_cli(dest, "pull", "-q", "--insecure", f"{registry_host}/chaos/pushed-{KILLS}:1")
        assert code == 0, out
        assert ImageStore(dest / "images").resolve(f"{registry_host}/chaos/pushed-{KILLS}:1").id == base.id
    STATS.update(kills=KILLS, killed_mid_run=killed_mid_run, operations=len(operations))
    with capsys.disabled():
        print(f"chaos: {KILLS} SIGKILLs over {', '.join(op.name for op in operations)}; "
              f"{killed_mid_run} hit a running command; store fsck-clean after every one")
