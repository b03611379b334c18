"""SIGKILL `dockyard import` and `dockyard load` at random moments: the store stays fsck-clean, the
command then succeeds, and gc leaves no temp file.  Set DOCKYARD_CRASH_SEED to replay a run."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from engine.store.archives import save_images, write_output
from engine.store.layout import ImageStore
from tests.store_helpers import import_files, layer_tar

REPO = Path(__file__).resolve().parent.parent
KILLS = 20


def _start(root: Path, *args: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, DOCKYARD_ROOT=str(root))
    return subprocess.Popen([sys.executable, "-c", "from cli.main import main; main()", *args], env=env,
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _run(root: Path, *args: str) -> tuple[int, float, str]:
    started = time.monotonic()
    proc = _start(root, *args)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, time.monotonic() - started, err.decode()


def _temp_files(store: ImageStore) -> list[str]:
    return [p.name for p in store.ingest_dir.iterdir()] + [p.name for p in store.root.glob(".index.json.tmp-*")]


def test_sigkill_during_import_and_load_leaves_a_clean_store(tmp_path: Path) -> None:
    seed = int(os.environ.get("DOCKYARD_CRASH_SEED") or time.time_ns() % 2**32)
    print(f"crash test seed: {seed} (DOCKYARD_CRASH_SEED={seed} replays it)")
    rng = random.Random(seed)
    rootfs = tmp_path / "rootfs.tar"
    rootfs.write_bytes(layer_tar({"big": os.urandom(12 << 20), "etc": None, "etc/x": b"x"}))
    source = ImageStore(tmp_path / "source")
    import_files(source, "localhost/big:1", {"blob": os.urandom(12 << 20)})
    import_files(source, "localhost/two:1", {"other": os.urandom(4 << 20)})
    archive = tmp_path / "images.tar"
    write_output(archive, lambda fh: save_images(source, ["localhost/big:1", "localhost/two:1"], fh))
    commands = [("import", str(rootfs), "localhost/imported:1"), ("load", "-i", str(archive))]

    # How long a full run takes, so the kills spread over start-up, blob writes and the index update.
    durations = []
    for command in commands:
        code, took, err = _run(tmp_path / "timing", *command)
        assert code == 0, err
        durations.append(took)

    root = tmp_path / "root"
    interrupted = 0
    for kill in range(KILLS):
        which = kill % 2
        delay = rng.uniform(0.0, durations[which] * 1.1)
        proc = _start(root, *commands[which])
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        store = ImageStore(root / "images")
        report = store.fsck()
        assert report.clean, f"seed {seed}, kill {kill} ({commands[which][0]} after {delay:.3f}s): {report}"
        if report.temp_files or set(store.all_blobs()) - store.reachable():
            interrupted += 1
    print(f"{interrupted} of {KILLS} kills left partial work behind (temp files or unreferenced blobs)")

    for command in commands:
        code, _, err = _run(root, *command)
        assert code == 0, f"seed {seed}: re-run of {command[0]} failed: {err}"
    store = ImageStore(root / "images")
    names = {name for image in store.images() for name in image.names}
    assert {"localhost/big:1", "localhost/two:1", "localhost/imported:1"} <= names
    assert store.resolve("localhost/big:1").id == source.resolve("localhost/big:1").id
    assert store.fsck().clean
    store.gc()
    assert _temp_files(store) == []
    assert store.fsck().clean
