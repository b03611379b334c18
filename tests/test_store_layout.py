"""ImageStore unit tests: verified ingest, never-rewrite, index locking across processes, gc, fsck and
repair, resolve, and docker's rmi semantics."""

from __future__ import annotations

import io
import multiprocessing
import os
import threading
import time
from pathlib import Path

import pytest

from engine.errors import (
    BlobNotFoundError,
    ConflictError,
    DigestMismatchError,
    ImageNotFoundError,
    InvalidInputError,
    SizeMismatchError,
)
from engine.oci.digest import Digest
from engine.oci.reference import Reference
from engine.store.layout import ImageStore
from tests.store_helpers import import_files


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "store")


def _blob_files(store: ImageStore) -> set[str]:
    return {p.name for p in (store.blobs_dir / "sha256").iterdir()}


# ------------------------------------------------------------------------------------------- ingest


def test_layout_files_other_tools_expect(store: ImageStore) -> None:
    assert (store.root / "oci-layout").read_text() == '{"imageLayoutVersion":"1.0.0"}'
    assert store.entries() == []


def test_ingest_verifies_digest_and_size_and_publishes_nothing_wrong(store: ImageStore) -> None:
    data = b"hello world"
    right = Digest.from_bytes(data)
    wrong = Digest.from_bytes(b"other")
    with pytest.raises(DigestMismatchError):
        store.put_blob(data, expected=wrong)
    with pytest.raises(DigestMismatchError):
        store.ingest(io.BytesIO(data), expected=wrong)
    with pytest.raises(SizeMismatchError):
        store.ingest(io.BytesIO(data), expected=right, size=len(data) - 1)
    with pytest.raises(SizeMismatchError):
        store.ingest(io.BytesIO(data), expected=right, size=len(data) + 1)
    assert _blob_files(store) == set() and list(store.ingest_dir.iterdir()) == []
    assert store.ingest([b"hello ", b"world"], expected=right, size=len(data)) == (right, len(data))
    assert store.read_blob(right) == data
    with pytest.raises(BlobNotFoundError):
        store.read_blob(wrong)


def test_an_existing_blob_is_never_rewritten(store: ImageStore) -> None:
    data = b"content" * 1000
    digest = store.put_blob(data)
    inode = store.blob_path(digest).stat().st_ino
    assert store.put_blob(data) == digest
    with store.blob_writer(digest, len(data)) as writer:  # a second writer racing the first
        writer.write(data)
        writer.commit()
    assert store.blob_path(digest).stat().st_ino == inode
    assert list(store.ingest_dir.iterdir()) == []


def test_read_blob_notices_corruption(store: ImageStore) -> None:
    digest = store.put_blob(b"abc")
    path = store.blob_path(digest)
    os.chmod(path, 0o644)
    path.write_bytes(b"abd")
    with pytest.raises(Exception, match="corrupt"):
        store.read_blob(digest)


# -------------------------------------------------------------------------------------------- index


def _tag_many(root: str, prefix: str, count: int) -> None:
    store = ImageStore(Path(root))
    for i in range(count):
        store.tag("localhost/base:1", Reference.parse(f"localhost/{prefix}:{i}"))


def test_two_processes_tagging_concurrently_lose_no_tag(store: ImageStore) -> None:
    import_files(store, "localhost/base:1", {"a": b"a"})
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_tag_many, args=(str(store.root), prefix, 40)) for prefix in ("p", "q")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    names = {entry.name for entry in store.entries()}
    assert {f"localhost/{p}:{i}" for p in "pq" for i in range(40)} <= names
    assert len(store.entries()) == 81


def test_moving_a_tag_leaves_the_old_image_untagged(store: ImageStore) -> None:
    old = import_files(store, "localhost/app:1", {"v": b"1"})
    new = import_files(store, "localhost/app:1", {"v": b"2"})
    assert store.resolve("localhost/app:1").id == new.id
    orphan = store.resolve(old.id.hex)
    assert orphan.names == ()
    assert {image.id for image in store.images()} == {old.id, new.id}


# ---------------------------------------------------------------------------------------------- resolve


def test_resolve_by_name_id_prefix_and_digest(store: ImageStore) -> None:
    image = import_files(store, "busybox", {"a": b"a"})
    other = import_files(store, "localhost:5000/team/app:v1", {"b": b"b"})
    for name in ("busybox", "busybox:latest", "docker.io/library/busybox:latest", "library/busybox",
                 image.id.hex[:12], image.id.hex, str(image.id), f"sha256:{image.id.hex[:8]}",
                 image.manifest.digest.hex[:16], f"busybox@{image.manifest.digest}"):
        assert store.resolve(name).id == image.id, name
    assert store.resolve("localhost:5000/team/app:v1").id == other.id
    assert store.resolve("localhost:5000/team/app:v1").names == ("localhost:5000/team/app:v1",)
    with pytest.raises(ImageNotFoundError, match="no such image: busybox:other"):
        store.resolve("busybox:other")
    with pytest.raises(ImageNotFoundError):
        store.resolve(f"busybox@{other.manifest.digest}")  # the digest of another repository's image
    with pytest.raises(ImageNotFoundError):
        store.resolve("NOT A NAME")


def test_ambiguous_id_prefix_is_refused(store: ImageStore) -> None:
    seen: dict[str, str] = {}
    for n in range(1000):  # ~100 images until two ids share their first 3 hex digits
        image_id = import_files(store, None, {"n": str(n).encode()}).id.hex
        if image_id[:3] in seen:
            break
        seen[image_id[:3]] = image_id
    prefix = image_id[:3]
    with pytest.raises(InvalidInputError, match="ambiguous"):
        store.resolve(prefix)
    assert store.resolve(image_id).id.hex == image_id
    assert store.resolve(seen[prefix]).id.hex == seen[prefix]


# ---------------------------------------------------------------------------------------------- remove


def test_rmi_by_name_untags_and_by_id_needs_force_across_repositories(store: ImageStore) -> None:
    image = import_files(store, "localhost/a:1", {"a": b"a"})
    store.tag("localhost/a:1", Reference.parse("localhost/a:2"))
    assert store.remove("localhost/a:2") == ["Untagged: localhost/a:2"]
    store.tag("localhost/a:1", Reference.parse("localhost/b:1"))
    with pytest.raises(ConflictError, match="multiple repositories"):
        store.remove(image.id.hex[:12])
    lines = store.remove(image.id.hex[:12], force=True)
    assert sorted(lines[:-1]) == ["Untagged: localhost/a:1", "Untagged: localhost/b:1"]
    assert lines[-1] == f"Deleted: {image.id}"
    assert store.entries() == []
    with pytest.raises(ImageNotFoundError):
        store.remove("localhost/a:1")


def test_rmi_of_the_last_name_deletes_and_gc_frees_its_blobs(store: ImageStore) -> None:
    keep = import_files(store, "localhost/keep:1", {"k": b"k"})
    gone = import_files(store, "localhost/gone:1", {"g": b"g" * 10_000})
    assert store.remove("localhost/gone:1")[-1] == f"Deleted: {gone.id}"
    report = store.gc()
    assert report.removed_blobs == 3  # manifest, config, layer
    assert report.freed_bytes > 0
    assert not store.has_blob(gone.id) and store.has_blob(keep.id)
    assert store.fsck().clean


# ---------------------------------------------------------------------------------------------- gc, fsck


def test_gc_removes_unreferenced_blobs_and_temp_files(store: ImageStore) -> None:
    image = import_files(store, "localhost/a:1", {"a": b"a"})
    stray = store.put_blob(b"nobody references me")
    (store.ingest_dir / "dead.partial").write_bytes(b"half")
    (store.root / ".index.json.tmp-999999").write_bytes(b"{")
    before = _blob_files(store)
    report = store.gc()
    assert report.removed_blobs == 1 and report.removed_temp_files == 2
    assert _blob_files(store) == before - {stray.hex}
    assert store.resolve("localhost/a:1").id == image.id


def test_gc_waits_for_a_writer(store: ImageStore) -> None:
    released = threading.Event()
    unreferenced: list[Digest] = []

    def writer() -> None:
        with store.writing():
            unreferenced.append(store.put_blob(b"not yet in the index"))
            time.sleep(0.5)
            released.set()

    thread = threading.Thread(target=writer)
    thread.start()
    while not unreferenced:
        time.sleep(0.01)
    store.gc()
    assert released.is_set()  # gc only ran once the writer let go
    thread.join()


def test_fsck_finds_corruption_and_missing_blobs_and_repairs(store: ImageStore) -> None:
    good = import_files(store, "localhost/good:1", {"g": b"g"})
    bad = import_files(store, "localhost/bad:1", {"b": b"b" * 5000})
    gone = import_files(store, "localhost/gone:1", {"x": b"x" * 7000})
    layer = store.blob_path(bad.manifest.layers[0].digest)
    os.chmod(layer, 0o644)
    layer.write_bytes(b"\x00" * layer.stat().st_size)
    store.blob_path(gone.id).unlink()
    report = store.fsck()
    assert not report.clean
    assert report.corrupt_blobs == [str(bad.manifest.layers[0].digest)]
    assert sorted(e.split(":")[0] + ":" + e.split(":")[1] for e in report.dangling_entries) == [
        "localhost/bad:1", "localhost/gone:1"]
    assert any("missing" in e for e in report.dangling_entries)
    repaired = store.fsck(repair=True)
    assert repaired.repaired
    assert store.fsck().clean
    assert store.resolve("localhost/good:1").id == good.id
    for name in ("localhost/bad:1", "localhost/gone:1"):
        with pytest.raises(ImageNotFoundError):
            store.resolve(name)


def test_a_short_name_another_tool_wrote_can_be_removed(store: ImageStore) -> None:
    image = import_files(store, "localhost/a:1", {"a": b"a"})
    store.update_index(lambda items: [*items, items[0].with_annotations(
        {"org.opencontainers.image.ref.name": "short"})])  # what `skopeo copy ... oci:STORE:short` writes
    assert store.resolve("short").id == image.id
    assert store.remove("short") == ["Untagged: short"]
    assert store.resolve("localhost/a:1").names == ("localhost/a:1",)
