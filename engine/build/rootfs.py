"""File systems for build steps: snapshots of the stage's layers, a merged read-only view, and turning
a directory of changes (a RUN's overlay upper dir, a COPY's staging dir) into a stored layer whose
directory then becomes the snapshot of the new chain, so the next step never unpacks it again."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, cast

from engine.errors import EngineError, StoreError, from_os_error
from engine.oci.digest import Digest
from engine.oci.models import Descriptor
from engine.runtime.snapshots import chain_ids, prepare_rootfs, release_rootfs

if TYPE_CHECKING:
    from engine.archive.layer_writer import LayerItem
    from engine.runtime.snapshots import SnapshotStore
    from engine.store.layout import ImageStore


class BuildFilesystems:
    def __init__(self, store: ImageStore, snapshots: SnapshotStore, work_root: Path) -> None:
        self.store = store
        self.snapshots = snapshots
        self.work_root = work_root

    def lowerdirs(self, layers: list[tuple[Descriptor, Digest]]) -> list[Path]:
        blobs = [desc for desc, _ in layers]

        def opener(index: int) -> BinaryIO:
            return cast(BinaryIO, self.store.open_blob(blobs[index].digest))

        return self.snapshots.ensure([diff for _, diff in layers], opener)

    def workdir(self, prefix: str) -> Path:
        """A fresh directory on the snapshots' file system (so a rename can publish it)."""
        path = self.snapshots.root / f".{prefix}-{uuid.uuid4().hex[:12]}"
        try:
            path.mkdir(parents=True)
        except OSError as exc:
            raise from_os_error(exc, "cannot create a build directory") from exc
        return path

    @contextlib.contextmanager
    def merged(self, layers: list[tuple[Descriptor, Digest]]) -> Iterator[Path]:
        """A read-only overlay of ``layers`` for reading files (COPY --from, /etc/passwd, dest checks)."""
        lowers = self.lowerdirs(layers)
        base = self.workdir("view")
        target = base / "rootfs"
        try:
            if lowers:
                if len(lowers) == 1:  # a read-only overlay needs two lowers: add an empty one below
                    empty = base / "empty"
                    empty.mkdir()
                    lowers = [empty, *lowers]
                prepare_rootfs(lowers, None, None, target)
            else:
                target.mkdir()
            yield target
        finally:
            if lowers:
                release_rootfs(target)
            shutil.rmtree(base, ignore_errors=True)

    def commit(
        self, items: Iterable[LayerItem], changes_dir: Path | None, parent_diff_ids: list[Digest], *,
        mtime_clamp: int | None, compression: str = "gzip", before_adopt: Callable[[], None] | None = None,
    ) -> tuple[Descriptor, Digest, int]:
        """Write ``items`` as a layer into the store; adopt ``changes_dir`` as its snapshot.

        ``before_adopt`` runs between the two (RUN: wait for the container root's unmount); what it
        raises propagates and ``changes_dir`` is left where it is.
        Returns (blob descriptor, diff id, uncompressed size).
        """
        from engine.archive.layer_writer import write_layer

        with self.store.blob_writer() as writer:
            writer.trust_caller_digest()  # write_layer hashes the compressed bytes it writes: once is enough
            result = write_layer(items, cast(BinaryIO, writer), compression=compression, mtime_clamp=mtime_clamp)
            if writer.bytes_written != result.size:
                raise StoreError(f"layer writer reported {result.size} bytes but wrote {writer.bytes_written}")
            digest, size = writer.commit(result.digest)
        if before_adopt is not None:
            before_adopt()
        if changes_dir is not None:
            chain = chain_ids([*parent_diff_ids, result.diff_id])[-1]
            final = self.snapshots.path(chain)
            if final.exists():
                shutil.rmtree(changes_dir, ignore_errors=True)
            else:
                try:
                    os.chmod(changes_dir, 0o755)
                    os.rename(changes_dir, final)
                except OSError:
                    shutil.rmtree(changes_dir, ignore_errors=True)  # the snapshot is made again on demand
        return Descriptor(result.media_type, digest, size), result.diff_id, result.uncompressed_size


def remove_tree(path: Path) -> None:
    with contextlib.suppress(EngineError, OSError):
        release_rootfs(path)
    shutil.rmtree(path, ignore_errors=True)
