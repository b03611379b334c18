"""Disk full during ``dockyard pull`` (the real CNCF registry, a store on a 24 MiB tmpfs): a ~30 MB image
never fits and fails with one "no space left on ..." line (NoSpaceError through the CLI), the store stays
fsck-clean and ``gc`` leaves no temp file; a ~6 MB image at seeded random fill levels either fits or fails
the same way, and fits once space is back.  The seed is DOCKYARD_DISKFULL_SEED (printed)."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from engine.store.layout import ImageStore
from tests.store_helpers import import_files
from tests.test_hardening_chaos import assert_consistent, run_cli, temp_files
from tests.test_hardening_diskfull import fill, small_fs

if TYPE_CHECKING:
    from tests.registryfixtures import RunningRegistry

pytest_plugins = ["tests.registryfixtures"]
__all__ = ["small_fs"]  # the fixture, used by name

BIG_LAYERS = 3  # x 10 MiB of random bytes: ~30 MB compressed, more than the whole tmpfs
SMALL = 6 << 20


def _push(tmp_path: Path, registry: RunningRegistry, repository: str, layers: dict[str, bytes]) -> str:
    """An image of random (incompressible) layers, pushed from a store on the normal disk."""
    source_root = tmp_path / f"source-{repository.replace('/', '-')}"
    source = ImageStore(source_root / "images")
    local = f"localhost/{repository}:1"
    import_files(source, local, {"data": None, **layers})
    ref = registry.ref(repository, "1")
    code, _, out = run_cli(source_root, "tag", local, ref)
    assert code == 0, out
    code, _, out = run_cli(source_root, "push", "-q", "--insecure", ref)
    assert code == 0, out
    return ref


def _assert_one_no_space_line(code: int, out: str, where: str) -> None:
    assert code != 0, f"{where}: the pull fitted: {out}"
    assert "no space left on" in out, f"{where}: {out}"
    errors = [line for line in out.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and "Traceback" not in out, f"{where}: {out}"
    assert errors[0].startswith("dockyard: error: "), f"{where}: {out}"


def _gc_clean(root: Path, store: ImageStore, where: str) -> None:
    code, _, out = run_cli(root, "gc", "--grace", "0")
    assert code == 0, f"{where}: gc: {out}"
    assert temp_files(store) == [], f"{where}: gc left temp files"
    big = [str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.stat().st_size > (1 << 20)]
    assert big == [], f"{where}: big files left after gc: {big}"


@pytest.mark.slow
def test_pull_on_a_full_disk(tmp_path: Path, small_fs: Path, open_registry: RunningRegistry,
                             capsys: pytest.CaptureFixture[str]) -> None:
    seed = int(os.environ.get("DOCKYARD_DISKFULL_SEED") or time.time_ns() % 2**32)
    with capsys.disabled():
        print(f"\ndisk-full pull seed: {seed} (DOCKYARD_DISKFULL_SEED={seed} replays it)")
    rng = random.Random(seed)
    tag = f"{os.getpid()}-{seed}"
    big = _push(tmp_path, open_registry, f"diskfull/big-{tag}",
                {f"data/part{i}": os.urandom(10 << 20) for i in range(BIG_LAYERS)})
    small = _push(tmp_path, open_registry, f"diskfull/small-{tag}", {"data/blob": os.urandom(SMALL)})

    root = small_fs / "root"
    store = ImageStore(root / "images")
    import_files(store, "localhost/base:1", {"etc": None, "etc/hostname": b"base\n"})

    # The big image never fits: the failure lands in a blob write, wherever it is.
    code, _, out = run_cli(root, "pull", "-q", "--insecure", big)
    _assert_one_no_space_line(code, out, "big pull")
    assert_consistent(store, "after the big pull")
    assert not store.exists(big)
    _gc_clean(root, store, "big pull")

    failures = successes = 0
    # Always one level that cannot fit and one that fits, plus seeded ones around the image's size.
    levels = [0, 12 << 20] + [rng.choice([4096, 256 << 10, 2 << 20, 5 << 20, SMALL, SMALL + (64 << 10),
                                          SMALL + (512 << 10), 8 << 20]) for _ in range(4)]
    rng.shuffle(levels)
    for round_, leave in enumerate(levels):
        filler = fill(small_fs, leave)
        code, _, out = run_cli(root, "pull", "-q", "--insecure", small)
        where = f"seed {seed}, round {round_}, {leave} bytes free"
        if code != 0:
            failures += 1
            _assert_one_no_space_line(code, out, where)
            assert not store.exists(small), where
        else:
            successes += 1
            assert store.exists(small), where
        filler.unlink()
        assert_consistent(store, where)
        if store.exists(small):
            store.remove(small, force=True)
        _gc_clean(root, store, where)

    assert failures and successes, (failures, successes)
    code, _, out = run_cli(root, "pull", "-q", "--insecure", small)  # space back: it fits
    assert code == 0, out
    assert_consistent(store, "with space back")
    assert store.resolve(small).manifest.layers
    with capsys.disabled():
        print(f"disk-full pull: big image refused with one line; small image {failures} failed / "
              f"{successes} fitted; store fsck-clean and gc left no temp file after each")
