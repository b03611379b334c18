"""Two and four dockyard processes at once on one store: building (same context: the same blobs written
concurrently), tagging, importing and removing, pulling (when the registry binary is installed) and gc
running beside the writers.  Afterwards: every tag a command reported is there (no lost tag), index.json
parses, fsck is clean (no blob removed while referenced, every blob matches its digest)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from engine.store.layout import ImageStore
from tests.store_helpers import import_files, layer_tar
from tests.test_hardening_chaos import assert_consistent, run_cli

ROUNDS = 3
STATS: dict[str, int] = {}


@pytest.fixture(scope="module")
def registry_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str | None]:
    if shutil.which("docker-registry") is None:
        yield None
        return
    from tests.registryfixtures import start_registry

    with start_registry(tmp_path_factory.mktemp("concurrency-registry")) as reg:
        yield reg.host


def _worker(root: Path, k: int, context: Path, rootfs: Path, registry: str | None) -> tuple[list[str], list[str]]:
    """One process's sequence; returns (tags it created and kept, failures)."""
    kept: list[str] = []
    failures: list[str] = []

    def run(*args: str) -> bool:
        code, _, out = run_cli(root, *args)
        if code != 0:
            failures.append(f"{' '.join(args)}: {out.strip()}")
        return code == 0

    for j in range(ROUNDS):
        if run("build", "-q", "-t", f"localhost/w{k}-built:{j}", str(context)):
            kept.append(f"localhost/w{k}-built:{j}")
        if run("tag", "localhost/base:1", f"localhost/w{k}-tag:{j}"):
            kept.append(f"localhost/w{k}-tag:{j}")
        if run("import", str(rootfs), f"localhost/w{k}-victim:{j}"):
            run("rmi", f"localhost/w{k}-victim:{j}")
        run("gc")
        if registry is not None and run("pull", "-q", "--insecure", f"{registry}/conc/src:1"):
            run("tag", f"{registry}/conc/src:1", f"localhost/w{k}-pulled:{j}")
            kept.append(f"localhost/w{k}-pulled:{j}")
    return kept, failures


@pytest.mark.slow
@pytest.mark.parametrize("processes", [2, 4])
def test_processes_share_one_store(processes: int, tmp_path: Path, registry_host: str | None) -> None:
    root = tmp_path / "root"
    store = ImageStore(root / "images")
    import_files(store, "localhost/base:1", {"etc": None, "etc/hostname": b"base\n"})
    context = tmp_path / "context"
    context.mkdir()
    (context / "big").write_bytes(os.urandom(4 << 20))
    (context / "Dockerfile").write_text("FROM localhost/base:1\nCOPY big /big\nENV CONCURRENT=1\n")
    rootfs = tmp_path / "rootfs.tar"
    rootfs.write_bytes(layer_tar({"victim": os.urandom(2 << 20)}))
    if registry_host is not None:
        src = tmp_path / "src"
        import_files(ImageStore(src / "images"), f"{registry_host}/conc/src:1", {"p": os.urandom(3 << 20)})
        code, _, out = run_cli(src, "push", "-q", "--insecure", f"{registry_host}/conc/src:1")
        assert code == 0, out

    with ThreadPoolExecutor(processes) as pool:
        results = list(pool.map(lambda k: _worker(root, k, context, rootfs, registry_host), range(processes)))

    failures = [f for _, fs in results for f in fs]
    assert not failures, "\n".join(failures)
    json.loads((root / "images" / "index.json").read_bytes())  # never a torn index
    names = {name for image in store.images() for name in image.names}
    expected = {tag for kept, _ in results for tag in kept}
    assert expected <= names, f"lost tags: {sorted(expected - names)}"
    assert not any("victim" in n for n in names), "an rmi was undone by a concurrent writer"
    assert_consistent(store, f"{processes} processes")
    # Concurrent cache misses may stamp different "created" times, but the layers must be the same.
    layers = {store.resolve(t).config.diff_ids for t in expected if "built" in t}
    assert len(layers) == 1, "the same Dockerfile and context built different layers"
    STATS[f"p{processes}"] = len(expected)


def test_gc_leaves_the_temp_file_of_an_index_update_in_flight(tmp_path: Path) -> None:
    """Regression (found by the test above): gc deleted the .index.json.tmp-* file of a concurrent rmi or
    tag, whose rename then failed.  gc now removes index temp files only under the index lock."""
    import threading

    store = ImageStore(tmp_path / "images")
    import_files(store, "localhost/base:1", {"a": b"a"})
    in_sweep, update_started = threading.Event(), threading.Event()
    blobs = store.all_blobs

    def slow_all_blobs():  # type: ignore[no-untyped-def]
        in_sweep.set()  # gc has read the index and released its lock; the sweep starts
        update_started.wait(5)
        return blobs()

    store.all_blobs = slow_all_blobs  # type: ignore[method-assign]
    worker = threading.Thread(target=store.gc)
    worker.start()
    assert in_sweep.wait(5)
    in_flight = store.root / ".index.json.tmp-in-flight"

    def change(items: list) -> list:  # type: ignore[type-arg]
        in_flight.write_bytes(b"{}")  # stands for the temp file atomic_write is about to rename
        update_started.set()
        worker.join(0.5)
        assert in_flight.exists(), "gc deleted an index temp file while the index lock was held"
        in_flight.unlink()
        return items

    store.update_index(change)
    worker.join(10)
    assert not worker.is_alive()
    store.all_blobs = blobs  # type: ignore[method-assign]
    assert_consistent(store, "after gc")
