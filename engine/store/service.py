"""The images part of the facade (``Engine.images``): async wrappers over the store, for CLI and TUI."""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from engine.config import EngineConfig
from engine.errors import EngineError, ImageNotFoundError, InvalidInputError, NotFoundError, from_os_error
from engine.oci.reference import Reference
from engine.store.layout import GcReport, ImageStore

if TYPE_CHECKING:  # archives, inspect views and summaries load when a method needs them (CLI start-up)
    from engine.archive.changes import ImageChanges
    from engine.oci.models import Descriptor
    from engine.runtime.snapshot_gc import SnapshotGcReport
    from engine.store.archives import LoadedImage
    from engine.store.layout import FsckReport, ResolvedImage
    from engine.summaries import ImageSummary, LayerSummary


@dataclass
class ImageGcReport(GcReport):
    """The store's blob gc plus the snapshot gc (``snapshots`` is None when it did not run)."""

    snapshots: SnapshotGcReport | None = None

    @property
    def total_freed_bytes(self) -> int:
        return self.freed_bytes + (self.snapshots.freed_bytes if self.snapshots is not None else 0)


class ImageService:
    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.store = ImageStore(config.store_dir)

    async def list(self) -> list[ImageSummary]:
        from engine.store import inspect as views

        images = await asyncio.to_thread(self.store.images)
        return [views.summary(image) for image in images]

    async def get(self, name: str) -> ResolvedImage:
        return await asyncio.to_thread(self.store.resolve, name)

    async def exists(self, name: str) -> bool:
        try:
            await self.get(name)
        except ImageNotFoundError:
            return False
        return True

    async def inspect(self, name: str) -> dict[str, Any]:
        from engine.store import inspect as views

        return views.docker_inspect(await self.get(name))

    async def layers(self, name: str) -> builtins.list[LayerSummary]:
        from engine.store import inspect as views

        return views.layers(await self.get(name))

    async def history(self, name: str) -> builtins.list[dict[str, Any]]:
        from engine.store import inspect as views

        return views.history_rows(await self.get(name))

    async def tag(self, source: str, target: str) -> None:
        await asyncio.to_thread(self.store.tag, source, Reference.parse(target))

    async def remove(self, name: str, *, force: bool = False) -> builtins.list[str]:
        return await asyncio.to_thread(self.store.remove, name, force=force)

    async def gc(self, *, build_cache: bool = False, snapshots: bool = True,
                 grace: float | None = None) -> ImageGcReport:
        """Remove unreferenced blobs, then unpacked layer snapshots nothing uses (and what crashed
        unpacks and builds left; see engine/runtime/snapshot_gc.py for the rule and its locks).

        Layers the build cache holds are kept unless ``build_cache``, which empties the cache first
        (like ``docker builder prune`` then a gc).  ``grace``: seconds a fresh snapshot or temp dir
        nobody holds a lock on is kept (default ``snapshot_gc.GRACE_SECONDS``)."""
        from engine.build.cache import BuildCache

        cache = BuildCache(self.config.cache_dir / "build")
        if build_cache:
            await asyncio.to_thread(cache.prune)
        roots = await asyncio.to_thread(cache.layer_digests)
        blobs = await asyncio.to_thread(self.store.gc, roots)
        report = ImageGcReport(blobs.removed_blobs, blobs.freed_bytes, blobs.removed_temp_files)
        if snapshots:
            report.snapshots = await asyncio.to_thread(self._gc_snapshots, grace)
        return report

    async def remove_dangling(self, image_ids: Iterable[str]) -> builtins.list[str]:
        """Remove those of ``image_ids`` that no name refers to and no container uses; the ids removed.

        Checked and removed in one index update (under the index lock), so an image a concurrent build
        or ``tag`` names again meanwhile stays.  Its blobs go at the next :meth:`gc`."""
        return await asyncio.to_thread(self._remove_dangling, {str(i) for i in image_ids})

    def _remove_dangling(self, wanted: set[str]) -> builtins.list[str]:
        from engine.runtime.snapshot_gc import container_records
        from engine.store.layout import IMAGE_ID, REF_NAME

        for record in container_records(self.config.containers_dir):
            wanted.discard(str(record.get("image_id")))
        removed: set[str] = set()

        def image_id(item: Descriptor) -> str | None:
            known = item.annotations.get(IMAGE_ID)
            if known:
                return known
            try:
                return str(self.store.load_manifest(item).config.digest)
            except EngineError:
                return None

        def change(items: builtins.list[Descriptor]) -> builtins.list[Descriptor]:
            removed.clear()
            named = {item.digest for item in items if item.annotations.get(REF_NAME)}
            doomed = {item.digest for item in items
                      if item.digest not in named and image_id(item) in wanted}
            for item in items:
                if item.digest in doomed:
                    removed.add(image_id(item) or "")
            return [item for item in items if item.digest not in doomed]

        if wanted:
            self.store.update_index(change)
        return sorted(removed - {""})

    def _gc_snapshots(self, grace: float | None) -> SnapshotGcReport:
        from engine.runtime import snapshot_gc

        keep = snapshot_gc.image_chains(self.store) | snapshot_gc.container_chains(self.config.containers_dir,
                                                                                    self.store)
        return snapshot_gc.collect(self.config.snapshots_dir, keep=keep,
                                   grace=snapshot_gc.GRACE_SECONDS if grace is None else grace)

    async def fsck(self, *, repair: bool = False) -> FsckReport:
        return await asyncio.to_thread(self.store.fsck, repair=repair)

    async def import_rootfs(
        self, tarball: Path, name: str | None, *, changes: Sequence[str] = (), message: str = ""
    ) -> ImageSummary:
        from engine.store import inspect as views
        from engine.store.importer import import_rootfs

        ref = Reference.parse(name) if name else None
        image = await asyncio.to_thread(import_rootfs, self.store, tarball, ref, changes=changes,
                                        message=message)
        return views.summary(image)

    # ---- archives: save, load, export (engine/store/archives.py) --------------------------------

    async def save(self, names: Sequence[str], output: Path | BinaryIO, *, fmt: str = "docker-archive") -> None:
        """Write images to a docker-archive or oci-archive file (atomically) or stream."""
        from engine.store.archives import save_images, write_output

        def work() -> None:
            if isinstance(output, Path):
                write_output(output, lambda fh: save_images(self.store, names, fh, fmt))
            else:
                save_images(self.store, names, output, fmt)

        await asyncio.to_thread(work)

    async def load(self, source: Path | BinaryIO) -> builtins.list[LoadedImage]:
        """Load every image of a docker-archive or OCI archive (plain or compressed; file or stream)."""
        from engine.store.archives import load_archive, open_input

        def work() -> builtins.list[LoadedImage]:
            if isinstance(source, Path):
                with open_input(source) as fh:
                    return load_archive(self.store, fh, label=str(source))
            return load_archive(self.store, source, label="stdin")

        return await asyncio.to_thread(work)

    async def export(self, name: str, output: Path | BinaryIO) -> None:
        """Write the image's flattened filesystem (whiteouts applied) as one tar."""
        from engine.store.archives import export_image, write_output

        def work() -> None:
            if isinstance(output, Path):
                write_output(output, lambda fh: export_image(self.store, name, fh))
            else:
                export_image(self.store, name, output)

        await asyncio.to_thread(work)

    # ---- layer files (the TUI's dive-like browser) ------------------------------------------------------

    async def layer_changes(self, name: str) -> ImageChanges:
        """What each layer adds, changes and deletes, and the bytes later layers waste."""
        from engine.archive.changes import image_layer_changes

        image = await self.get(name)

        def work() -> ImageChanges:
            with ExitStack() as stack:
                streams = (cast(BinaryIO, stack.enter_context(self.store.open_blob(layer.digest)))
                           for layer in image.manifest.layers)
                return image_layer_changes(streams)

        return await asyncio.to_thread(work)

    async def export_file(self, name: str, layer: int, path: str, dest: Path) -> int:
        """Write the regular file ``path`` as layer ``layer`` (0-based, manifest order) stores it to ``dest``."""
        from engine.archive.fstree import classify
        from engine.archive.reader import LayerReader

        image = await self.get(name)
        layers = image.manifest.layers
        if not 0 <= layer < len(layers):
            raise NotFoundError(f"{name} has no layer {layer} (it has {len(layers)})")
        wanted = tuple(p for p in path.split("/") if p)

        def work() -> int:
            with self.store.open_blob(layers[layer].digest) as blob, LayerReader(cast(BinaryIO, blob)) as reader:
                for member in reader:
                    kind, parts = classify(member.name)
                    if kind != "entry" or parts != wanted:
                        continue
                    if not member.isreg():
                        raise InvalidInputError(f"{path} in layer {layer} is not a regular file")
                    written = 0
                    try:
                        with open(dest, "wb") as out:
                            for chunk in reader.chunks(member):
                                written += out.write(chunk)
                    except OSError as exc:
                        raise from_os_error(exc, f"cannot write {dest}") from exc
                    return written
            raise NotFoundError(f"{path} is not in layer {layer} of {name}")

        return await asyncio.to_thread(work)
