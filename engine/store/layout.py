"""The local image store: an OCI image layout other tools (skopeo, umoci, buildah) read and write.

::

    <root>/oci-layout          {"imageLayoutVersion": "1.0.0"}
    <root>/index.json          one manifest descriptor per name; the name is the
                               org.opencontainers.image.ref.name annotation holding the full reference
    <root>/blobs/sha256/<hex>  content, verified before it is linked into place
    <root>/.ingest/            temp files of blobs being written (removed by gc)
    <root>/.index.lock         flock for read-modify-write of index.json
    <root>/.gc.lock            writers hold it shared while their blobs are not yet referenced; gc exclusive

An index entry without a name is an image nobody tagged (docker's ``<none>:<none>``); it is kept
until ``rmi``. Entries may carry ``io.dockyard.image.id`` (the config digest) to list fast.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from engine.errors import (
    BlobNotFoundError,
    ConflictError,
    EngineError,
    ImageNotFoundError,
    InvalidInputError,
    InvalidManifestError,
    InvalidReferenceError,
    StoreError,
    from_os_error,
)
from engine.oci import mediatypes as mt
from engine.oci.digest import Digest
from engine.oci.models import Descriptor, ImageConfig, Index, Manifest, canonical_json, decode_json
from engine.oci.reference import Reference
from engine.store.blobs import CHUNK, BlobWriter, hash_file
from engine.store.locking import atomic_write, file_lock

REF_NAME = "org.opencontainers.image.ref.name"
IMAGE_ID = "io.dockyard.image.id"
SOURCE_REPO = "io.dockyard.source.repository"


@dataclass(frozen=True, slots=True)
class IndexEntry:
    descriptor: Descriptor

    @property
    def name(self) -> str | None:
        return self.descriptor.annotations.get(REF_NAME)

    @property
    def reference(self) -> Reference | None:
        name = self.name
        if not name:
            return None
        try:
            return Reference.parse(name)
        except InvalidReferenceError:
            return None  # a short name another tool wrote ("latest"); kept, shown as is


@dataclass(frozen=True, slots=True)
class ResolvedImage:
    """An image found in the store: its names, manifest and config."""

    manifest_descriptor: Descriptor
    manifest: Manifest
    config: ImageConfig
    names: tuple[str, ...]  # every full reference pointing at this manifest
    source_repositories: tuple[str, ...] = ()

    @property
    def id(self) -> Digest:
        return self.config.digest

    @property
    def manifest_digest(self) -> Digest:
        return self.manifest_descriptor.digest

    @property
    def size(self) -> int:
        return self.manifest.config.size + sum(layer.size for layer in self.manifest.layers)


@dataclass
class GcReport:
    removed_blobs: int = 0
    freed_bytes: int = 0
    removed_temp_files: int = 0


@dataclass
class FsckReport:
    blobs_checked: int = 0
    bytes_checked: int = 0
    corrupt_blobs: list[str] = field(default_factory=list)
    dangling_entries: list[str] = field(default_factory=list)  # index entries whose image is incomplete
    temp_files: list[str] = field(default_factory=list)
    repaired: bool = False

    @property
    def clean(self) -> bool:
        return not self.corrupt_blobs and not self.dangling_entries


class ImageStore:
    """An OCI image layout directory used as dockyard's image store."""

    def __init__(self, root: Path, *, create: bool = True) -> None:
        self.root = Path(root)
        self.blobs_dir = self.root / "blobs"
        self.ingest_dir = self.root / ".ingest"
        self.index_path = self.root / "index.json"
        if create:
            self._ensure_layout()
        elif not (self.root / "oci-layout").exists():
            raise StoreError(f"{self.root} is not an OCI image layout (no oci-layout file)")

    def _ensure_layout(self) -> None:
        try:
            (self.blobs_dir / "sha256").mkdir(parents=True, exist_ok=True)
            self.ingest_dir.mkdir(exist_ok=True)
            layout = self.root / "oci-layout"
            if not layout.exists():
                atomic_write(layout, canonical_json({"imageLayoutVersion": mt.OCI_LAYOUT_VERSION}))
            if not self.index_path.exists():
                with file_lock(self.root / ".index.lock"):
                    if not self.index_path.exists():
                        atomic_write(self.index_path, _index_bytes([]))
        except OSError as exc:
            raise from_os_error(exc, f"cannot create the image store at {self.root}") from exc

    # ---- blobs -------------------------------------------------------------------------------------

    def blob_path(self, digest: Digest) -> Path:
        return self.blobs_dir / digest.algorithm / digest.hex

    def has_blob(self, digest: Digest) -> bool:
        return self.blob_path(digest).exists()

    def blob_size(self, digest: Digest) -> int:
        try:
            return self.blob_path(digest).stat().st_size
        except FileNotFoundError:
            raise BlobNotFoundError(f"blob {digest} is not in the store") from None

    def open_blob(self, digest: Digest) -> IO[bytes]:
        try:
            return open(self.blob_path(digest), "rb")
        except FileNotFoundError:
            raise BlobNotFoundError(f"blob {digest} is not in the store") from None
        except OSError as exc:
            raise from_os_error(exc, f"cannot read blob {digest}") from exc

    def read_blob(self, digest: Digest, max_size: int | None = None) -> bytes:
        with self.open_blob(digest) as fh:
            data = fh.read() if max_size is None else fh.read(max_size + 1)
        if max_size is not None and len(data) > max_size:
            raise StoreError(f"blob {digest} is larger than {max_size} bytes")
        if Digest.from_bytes(data, digest.algorithm) != digest:
            raise StoreError(f"blob {digest} is corrupt in the store (run `dockyard fsck --repair`)")
        return data

    def blob_writer(self, expected: Digest | None = None, size: int | None = None) -> BlobWriter:
        return BlobWriter(self.blobs_dir, self.ingest_dir, expected, size)

    def put_blob(self, data: bytes, expected: Digest | None = None) -> Digest:
        digest = Digest.from_bytes(data)
        if expected is not None and expected != digest:
            from engine.errors import DigestMismatchError

            raise DigestMismatchError(f"content hashes to {digest}, not the expected {expected}")
        if self.has_blob(digest):
            return digest
        with self.blob_writer(digest, len(data)) as writer:
            writer.write(data)
            writer.commit()
        return digest

    def ingest(
        self, source: IO[bytes] | Iterable[bytes], expected: Digest | None = None, size: int | None = None
    ) -> tuple[Digest, int]:
        if expected is not None and self.has_blob(expected):
            return expected, self.blob_size(expected)
        chunks: Iterable[bytes] = _iter_chunks(source) if hasattr(source, "read") else source
        with self.blob_writer(expected, size) as writer:
            for chunk in chunks:
                writer.write(chunk)
            return writer.commit()

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Hold while adding blobs that no index entry references yet, so gc leaves them alone."""
        with file_lock(self.root / ".gc.lock", shared=True):
            yield

    # ---- index --------------------------------------------------------------------------------------

    def _read_index(self) -> list[Descriptor]:
        try:
            raw = self.index_path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise from_os_error(exc, "cannot read the store's index.json") from exc
        data = decode_json(raw, "index.json")
        items = data.get("manifests") or []
        if not isinstance(items, list):
            raise StoreError(f"{self.index_path}: manifests is not a list")
        out = []
        for item in items:
            try:
                out.append(Descriptor.from_json(item, "index.json entry"))
            except InvalidManifestError:
                continue  # an entry we cannot read is skipped, not fatal; fsck reports it
        return out

    def entries(self) -> list[IndexEntry]:
        return [IndexEntry(d) for d in self._read_index()]

    def update_index(self, change: Callable[[list[Descriptor]], list[Descriptor]]) -> None:
        """Read-modify-write index.json under the index lock (atomic replace)."""
        with file_lock(self.root / ".index.lock"):
            current = self._read_index()
            new = change(list(current))
            try:
                atomic_write(self.index_path, _index_bytes(new))
            except OSError as exc:
                raise from_os_error(exc, "cannot update the store's index.json") from exc

    def add_image(
        self, manifest_desc: Descriptor, names: Iterable[Reference] = (), *, image_id: Digest | None = None,
        source_repository: str | None = None,
    ) -> None:
        """Record an image (its blobs must already be stored) under ``names`` (none: untagged)."""
        wanted = [str(n) for n in names]
        extra: dict[str, str] = {}
        if image_id is not None:
            extra[IMAGE_ID] = str(image_id)
        if source_repository:
            extra[SOURCE_REPO] = source_repository
        base = Descriptor(manifest_desc.media_type, manifest_desc.digest, manifest_desc.size,
                          platform=manifest_desc.platform)

        def change(items: list[Descriptor]) -> list[Descriptor]:
            moved_from: set[Digest] = set()
            kept = []
            for item in items:
                name = item.annotations.get(REF_NAME)
                if name in wanted:
                    if item.digest != base.digest:
                        moved_from.add(item.digest)
                    continue
                if not name and item.digest == base.digest:
                    continue  # it gets a name (or a fresh untagged entry) below
                kept.append(item)
            for name in wanted:
                kept.append(base.with_annotations({REF_NAME: name, **extra}))
            if not wanted:
                kept.append(base.with_annotations(extra))
            # A tag that moved leaves its old image untagged (docker's <none>), not lost.
            still = {item.digest for item in kept}
            for digest in moved_from - still:
                old = next(i for i in items if i.digest == digest)
                kept.append(old.with_annotations({k: v for k, v in old.annotations.items() if k != REF_NAME}))
            return kept

        self.update_index(change)

    def tag(self, source: str, target: Reference) -> None:
        image = self.resolve(source)
        self.add_image(image.manifest_descriptor, [target], image_id=image.id)

    def untag(self, ref: Reference) -> None:
        name = str(ref)
        found = False

        def change(items: list[Descriptor]) -> list[Descriptor]:
            nonlocal found
            out = [i for i in items if i.annotations.get(REF_NAME) != name]
            found = len(out) != len(items)
            return out

        self.update_index(change)
        if not found:
            raise ImageNotFoundError(f"no such image: {ref.familiar}")

    # ---- reading images -----------------------------------------------------------------------------

    def load_manifest(self, descriptor: Descriptor) -> Manifest:
        raw = self.read_blob(descriptor.digest, max_size=8 * 1024 * 1024)
        media_type = descriptor.media_type
        if media_type in mt.INDEX_TYPES:
            index = Index.parse(raw, media_type)
            from engine.oci.platform import Platform

            chosen = index.select(Platform.host())
            if chosen is None:
                raise ImageNotFoundError(f"image index {descriptor.digest.short} has no manifest for this platform")
            return self.load_manifest(chosen)
        return Manifest.parse(raw, media_type)

    def load_config(self, manifest: Manifest) -> ImageConfig:
        return ImageConfig.parse(self.read_blob(manifest.config.digest, max_size=32 * 1024 * 1024))

    def _resolved(self, descriptor: Descriptor, entries: list[IndexEntry]) -> ResolvedImage:
        manifest = self.load_manifest(descriptor)
        config = self.load_config(manifest)
        same = [e for e in entries if e.descriptor.digest == descriptor.digest]
        names = tuple(e.name for e in same if e.name)
        sources = tuple(sorted({e.descriptor.annotations[SOURCE_REPO] for e in same
                                if SOURCE_REPO in e.descriptor.annotations}))
        return ResolvedImage(descriptor, manifest, config, names, sources)

    def _image_id_of(self, entry: IndexEntry) -> str | None:
        known = entry.descriptor.annotations.get(IMAGE_ID)
        if known:
            return known
        try:
            return str(self.load_manifest(entry.descriptor).config.digest)
        except EngineError:
            return None

    def resolve(self, name_or_id: str) -> ResolvedImage:
        """Find an image by full or short name, ``name@digest``, image id or manifest digest (prefixes ok)."""
        entries = self.entries()
        text = name_or_id.strip()
        candidate_hex = text[len("sha256:"):] if text.startswith("sha256:") else text
        if 3 <= len(candidate_hex) <= 64 and all(c in "0123456789abcdef" for c in candidate_hex):
            matches: dict[Digest, IndexEntry] = {}
            for entry in entries:
                image_id = self._image_id_of(entry) or ""
                if image_id.split(":")[-1].startswith(candidate_hex) or \
                        entry.descriptor.digest.hex.startswith(candidate_hex):
                    matches.setdefault(entry.descriptor.digest, entry)
            if len(matches) == 1:
                return self._resolved(next(iter(matches.values())).descriptor, entries)
            if len(matches) > 1:
                raise InvalidInputError(f"image id prefix {candidate_hex!r} is ambiguous; give more characters")
        try:
            ref = Reference.parse(text)
        except InvalidReferenceError:
            raise ImageNotFoundError(f"no such image: {text}") from None
        for entry in entries:
            if ref.digest is not None:
                if entry.descriptor.digest == ref.digest and (
                    entry.reference is None or entry.reference.name == ref.name
                    or entry.descriptor.annotations.get(SOURCE_REPO) == ref.name
                ):
                    return self._resolved(entry.descriptor, entries)
            elif entry.name == str(ref) or entry.name == text:
                return self._resolved(entry.descriptor, entries)
        raise ImageNotFoundError(f"no such image: {ref.familiar}")

    def exists(self, name_or_id: str) -> bool:
        try:
            self.resolve(name_or_id)
        except ImageNotFoundError:
            return False
        return True

    def images(self) -> list[ResolvedImage]:
        """Every image in the store once (grouped by manifest digest), newest first."""
        entries = self.entries()
        seen: set[Digest] = set()
        out: list[ResolvedImage] = []
        for entry in entries:
            if entry.descriptor.digest in seen:
                continue
            seen.add(entry.descriptor.digest)
            try:
                out.append(self._resolved(entry.descriptor, entries))
            except EngineError:
                continue  # incomplete images are fsck's business, not a listing's
        out.sort(key=lambda image: image.config.created or "", reverse=True)
        return out

    def remove(self, name_or_id: str, *, force: bool = False) -> list[str]:
        """docker rmi: a name untags; an id removes every name (with ``force`` when several repos)."""
        image = self.resolve(name_or_id)
        text = name_or_id.strip()
        by_name = False
        with contextlib.suppress(InvalidReferenceError):
            ref = Reference.parse(text)
            by_name = str(ref) in image.names and ref.digest is None
        if not by_name and text in image.names and len(image.names) > 1:
            # a name another tool wrote as is (skopeo's ``oci:store:short``): untag exactly that entry
            self.update_index(lambda items: [i for i in items if i.annotations.get(REF_NAME) != text])
            return [f"Untagged: {text}"]
        if by_name:
            ref = Reference.parse(text)
            if len(image.names) > 1:
                self.untag(ref)
                return [f"Untagged: {ref.familiar}"]
        elif len({Reference.parse(n).name for n in image.names if Reference.is_valid(n)}) > 1 and not force:
            raise ConflictError(
                f"image {image.id.short} is referenced in multiple repositories; use -f or remove it by name"
            )
        digest = image.manifest_digest
        self.update_index(lambda items: [i for i in items if i.digest != digest])
        lines = [f"Untagged: {Reference.parse(n).familiar if Reference.is_valid(n) else n}" for n in image.names]
        lines.append(f"Deleted: {image.id}")
        return lines

    # ---- maintenance --------------------------------------------------------------------------------

    def reachable(self) -> set[Digest]:
        out: set[Digest] = set()
        for descriptor in self._read_index():
            out |= self._reachable_from(descriptor)
        return out

    def _reachable_from(self, descriptor: Descriptor) -> set[Digest]:
        out = {descriptor.digest}
        if descriptor.media_type not in mt.MANIFEST_TYPES | mt.INDEX_TYPES:
            return out
        try:
            raw = self.read_blob(descriptor.digest, max_size=8 * 1024 * 1024)
        except EngineError:
            return out
        try:
            if descriptor.media_type in mt.INDEX_TYPES:
                for child in Index.parse(raw, descriptor.media_type).manifests:
                    out |= self._reachable_from(child)
            else:
                manifest = Manifest.parse(raw, descriptor.media_type)
                out.add(manifest.config.digest)
                out.update(layer.digest for layer in manifest.layers)
        except InvalidManifestError:
            pass
        return out

    def all_blobs(self) -> Iterator[Digest]:
        for algorithm in ("sha256", "sha512"):
            directory = self.blobs_dir / algorithm
            if not directory.is_dir():
                continue
            for entry in os.scandir(directory):
                try:
                    yield Digest(algorithm, entry.name)
                except EngineError:
                    continue

    def _temp_files(self) -> list[Path]:
        out = list(self.ingest_dir.glob("*")) if self.ingest_dir.exists() else []
        out += list(self.root.glob(".index.json.tmp-*"))
        return out

    def gc(self, extra_roots: Iterable[Digest] = ()) -> GcReport:
        """Remove blobs no index entry reaches (and leftover temp files); waits for running writers."""
        report = GcReport()
        with file_lock(self.root / ".gc.lock"):
            with file_lock(self.root / ".index.lock", shared=True):
                keep = self.reachable() | set(extra_roots)
            for digest in list(self.all_blobs()):
                if digest in keep:
                    continue
                path = self.blob_path(digest)
                with contextlib.suppress(FileNotFoundError):
                    size = path.stat().st_size
                    path.unlink()
                    report.removed_blobs += 1
                    report.freed_bytes += size
            # Under the index lock too: an index update in flight (rmi and tag need no writing()) owns
            # its .index.json.tmp-* file until it renames it; deleting it made that update fail.
            with file_lock(self.root / ".index.lock"):
                for temp in self._temp_files():
                    with contextlib.suppress(FileNotFoundError):
                        temp.unlink()
                        report.removed_temp_files += 1
        return report

    def fsck(self, *, repair: bool = False) -> FsckReport:
        """Re-hash every blob; find index entries whose image is incomplete; optionally repair."""
        report = FsckReport()
        corrupt: set[Digest] = set()
        for digest in list(self.all_blobs()):
            path = self.blob_path(digest)
            try:
                actual, size = hash_file(path, digest.algorithm)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise from_os_error(exc, f"cannot read blob {digest}") from exc
            report.blobs_checked += 1
            report.bytes_checked += size
            if actual != digest.hex:
                corrupt.add(digest)
                report.corrupt_blobs.append(str(digest))
        bad_entries: set[Digest] = set()
        for descriptor in self._read_index():
            missing = self._missing_for(descriptor, corrupt)
            if missing:
                bad_entries.add(descriptor.digest)
                name = descriptor.annotations.get(REF_NAME) or str(descriptor.digest)
                report.dangling_entries.append(f"{name}: {missing}")
        report.temp_files = [str(p) for p in self._temp_files()]
        if repair and (corrupt or bad_entries):
            for digest in corrupt:
                with contextlib.suppress(FileNotFoundError):
                    self.blob_path(digest).unlink()
            if bad_entries:
                self.update_index(lambda items: [i for i in items if i.digest not in bad_entries])
            report.repaired = True
        return report

    def _missing_for(self, descriptor: Descriptor, corrupt: set[Digest]) -> str | None:
        def problem(digest: Digest, what: str) -> str | None:
            if digest in corrupt:
                return f"{what} {digest} is corrupt"
            if not self.has_blob(digest):
                return f"{what} {digest} is missing"
            return None

        first = problem(descriptor.digest, "manifest")
        if first:
            return first
        try:
            raw = self.read_blob(descriptor.digest, max_size=8 * 1024 * 1024)
            if descriptor.media_type in mt.INDEX_TYPES:
                for child in Index.parse(raw, descriptor.media_type).manifests:
                    if child.media_type in mt.MANIFEST_TYPES and self.has_blob(child.digest):
                        child_problem = self._missing_for(child, corrupt)
                        if child_problem:
                            return child_problem
                return None
            manifest = Manifest.parse(raw, descriptor.media_type)
        except EngineError as exc:
            return f"manifest unreadable: {exc}"
        for digest, what in [(manifest.config.digest, "config")] + [(x.digest, "layer") for x in manifest.layers]:
            issue = problem(digest, what)
            if issue:
                return issue
        return None


def _index_bytes(items: list[Descriptor]) -> bytes:
    return json.dumps(
        {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [i.to_json() for i in items]},
        indent=2,
    ).encode() + b"\n"


def _iter_chunks(fh: Any) -> Iterator[bytes]:
    while chunk := fh.read(CHUNK):
        yield chunk
