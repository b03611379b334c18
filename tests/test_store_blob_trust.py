"""BlobWriter.trust_caller_digest: a locally produced blob (a built layer) is hashed once, by its
producer; the writer still checks sizes, fsyncs and links atomically, and refuses half-used forms."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from engine.archive.layer_writer import directory_items, write_layer
from engine.build.rootfs import BuildFilesystems
from engine.errors import DigestMismatchError, SizeMismatchError, StoreError
from engine.oci.digest import Digest
from engine.runtime.snapshots import SnapshotStore
from engine.store.layout import ImageStore


def _ingest_left(store: ImageStore) -> list[str]:
    return [p.name for p in store.ingest_dir.iterdir()] if store.ingest_dir.exists() else []


def test_trusted_commit_publishes_under_the_callers_digest(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    data = os.urandom(100_000)
    with store.blob_writer() as writer:
        writer.trust_caller_digest()
        writer.write(data[:40_000])
        writer.write(data[40_000:])
        digest, size = writer.commit(Digest.from_bytes(data))
    assert (digest, size) == (Digest.from_bytes(data), len(data))
    assert store.read_blob(digest) == data  # read_blob re-hashes: the published bytes match the digest
    assert _ingest_left(store) == []


def test_trusted_commit_without_a_digest_publishes_nothing(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    with store.blob_writer() as writer:
        writer.trust_caller_digest()
        writer.write(b"data")
        with pytest.raises(StoreError, match="needs the caller's digest"):
            writer.commit()
    assert not store.has_blob(Digest.from_bytes(b"data"))
    assert _ingest_left(store) == []


def test_trust_only_before_the_first_write(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    with store.blob_writer() as writer:
        writer.write(b"x")
        with pytest.raises(StoreError, match="before the first write"):
            writer.trust_caller_digest()


def test_untrusted_commit_checks_a_given_digest_against_its_own(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    with store.blob_writer() as writer:
        writer.write(b"actual bytes")
        with pytest.raises(DigestMismatchError):
            writer.commit(Digest.from_bytes(b"other bytes"))
    assert _ingest_left(store) == []


def test_trusted_writes_still_honour_a_promised_size(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    with store.blob_writer(None, 3) as writer:
        writer.trust_caller_digest()
        with pytest.raises(SizeMismatchError):
            writer.write(b"four")


def test_built_layers_are_hashed_once_and_verify_on_read(tmp_path: Path) -> None:
    """BuildFilesystems.commit trusts write_layer's digest; the stored blob must still hash to it."""
    src = tmp_path / "changes"
    (src / "app").mkdir(parents=True)
    (src / "app/big").write_bytes(os.urandom(3 << 20))
    (src / "app/small").write_text("small\n")
    store = ImageStore(tmp_path / "store")
    fs = BuildFilesystems(store, SnapshotStore(tmp_path / "snapshots"), tmp_path / "tmp")
    descriptor, diff_id, raw_size = fs.commit(directory_items(src), None, [], mtime_clamp=0)
    blob = store.read_blob(descriptor.digest)  # raises if the bytes do not hash to the digest
    assert len(blob) == descriptor.size
    reference = io.BytesIO()
    expected = write_layer(directory_items(src), reference, mtime_clamp=0)
    assert (descriptor.digest, diff_id, raw_size) == (expected.digest, expected.diff_id, expected.uncompressed_size)
    assert reference.getvalue() == blob
