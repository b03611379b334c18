"""Image archives: ``save`` writes, ``load`` reads docker-archive and OCI-archive tarballs.

What ``save`` writes is the layout docker 25+ writes — an OCI image layout (``oci-layout``,
``index.json``, ``blobs/sha256/...``) — plus, for ``docker-archive``, ``manifest.json`` and
``repositories`` pointing into ``blobs/``.  Blobs are copied from the store as they are (gzip layers),
so the manifest inside the archive is byte-for-byte the stored one; docker's and skopeo's readers
decompress layers themselves and check them against the config's diff_ids.

``load`` reads every variant met in the wild: legacy ``docker save`` (``<id>/layer.tar``, ``<id>.json``),
docker 25's combined layout, OCI archives (tags from ``io.containerd.image.name`` or a full
``org.opencontainers.image.ref.name``), plain or compressed, from a file or a pipe.  Every layer is
streamed once: its decompressed bytes are hashed and checked against the diff_id before its blob is
published; compressed layers are kept as they are, uncompressed ones are gzip-compressed for the store.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import stat
import tarfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO, Literal

from engine.archive.compression import (
    CHUNK,
    Compression,
    detect_compression,
    media_type_for,
    new_compressor,
    open_decompressed,
)
from engine.errors import (
    ArchiveError,
    DigestMismatchError,
    InvalidInputError,
    InvalidManifestError,
    InvalidReferenceError,
    SizeMismatchError,
    StoreError,
    from_os_error,
)
from engine.oci import mediatypes as mt
from engine.oci.digest import Digest
from engine.oci.models import (
    MAX_CONFIG_SIZE,
    MAX_MANIFEST_SIZE,
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    canonical_json,
)
from engine.oci.platform import Platform
from engine.oci.reference import Reference
from engine.store.archive_members import ArchiveMembers, clean_path
from engine.store.layout import REF_NAME, ImageStore, ResolvedImage

ArchiveFormat = Literal["docker-archive", "oci-archive"]
FORMATS: tuple[ArchiveFormat, ...] = ("docker-archive", "oci-archive")
CONTAINERD_NAME = "io.containerd.image.name"
_BLOB_PATH = re.compile(r"blobs/(sha256|sha512)/([0-9a-f]+)")
_MAX_INDEX_DEPTH = 4


@dataclass(frozen=True, slots=True)
class LoadedImage:
    """One image ``load`` put in the store."""

    image_id: Digest
    manifest_digest: Digest
    names: tuple[str, ...]  # full references


# ============================================================================================== save


def save_images(store: ImageStore, names: Sequence[str], out: BinaryIO, fmt: str = "docker-archive") -> None:
    """Write the images ``names`` (names, ids or digests) to ``out`` as one archive (streamed)."""
    if fmt not in FORMATS:
        raise InvalidInputError(f"unknown archive format {fmt!r} (use docker-archive or oci-archive)")
    if not names:
        raise InvalidInputError("save: give at least one image")
    chosen: dict[Digest, tuple[ResolvedImage, list[Reference]]] = {}
    for name in names:
        image = store.resolve(name)
        key = image.manifest.digest
        _, tags = chosen.setdefault(key, (image, []))
        tag = _tag_named(name, image)
        if tag is not None and tag not in tags:
            tags.append(tag)
    try:
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            _write_layout(tar, store, list(chosen.values()), docker=fmt == "docker-archive")
    except tarfile.TarError as exc:
        raise ArchiveError(f"cannot write the archive: {exc}") from exc


def _tag_named(name: str, image: ResolvedImage) -> Reference | None:
    """The tag ``name`` refers to, when it is one of the image's names (not an id or a digest)."""
    try:
        ref = Reference.parse(name.strip())
    except InvalidReferenceError:
        return None
    if ref.digest is None and str(ref) in image.names:
        return ref
    return None


def _write_layout(
    tar: tarfile.TarFile, store: ImageStore, images: list[tuple[ResolvedImage, list[Reference]]], *, docker: bool
) -> None:
    _add_dir(tar, "blobs")
    algorithms: set[str] = set()
    written: set[Digest] = set()
    index_entries: list[dict[str, Any]] = []
    docker_manifest: list[dict[str, Any]] = []
    repositories: dict[str, dict[str, str]] = {}
    for image, tags in images:
        manifest = image.manifest
        descriptor = Descriptor(manifest.media_type, manifest.digest, len(manifest.raw))
        blobs = [manifest.config.digest, *(layer.digest for layer in manifest.layers), manifest.digest]
        for digest in blobs:
            if digest in written:
                continue
            if digest.algorithm not in algorithms:
                _add_dir(tar, f"blobs/{digest.algorithm}")
                algorithms.add(digest.algorithm)
            _add_blob(tar, store, digest)
            written.add(digest)
        if tags:
            for tag in tags:
                index_entries.append(descriptor.with_annotations(
                    {CONTAINERD_NAME: str(tag), REF_NAME: tag.tag or "latest"}).to_json())
        else:
            index_entries.append(descriptor.to_json())
        layer_paths = [_blob_name(layer.digest) for layer in manifest.layers]
        docker_manifest.append({
            "Config": _blob_name(manifest.config.digest),
            "RepoTags": [tag.familiar for tag in tags],
            "Layers": layer_paths,
        })
        if manifest.layers:
            for tag in tags:
                repositories.setdefault(tag.familiar_name, {})[tag.tag or "latest"] = manifest.layers[-1].digest.hex
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": index_entries}
    _add_bytes(tar, "index.json", canonical_json(index))
    if docker:
        _add_bytes(tar, "manifest.json", canonical_json(docker_manifest))
    _add_bytes(tar, "oci-layout", canonical_json({"imageLayoutVersion": mt.OCI_LAYOUT_VERSION}))
    if docker:
        _add_bytes(tar, "repositories", canonical_json(repositories))


def _blob_name(digest: Digest) -> str:
    return f"blobs/{digest.algorithm}/{digest.hex}"


def _info(name: str, size: int = 0, *, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o755 if directory else 0o644
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    return info


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    tar.addfile(_info(name + "/", directory=True))


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    tar.addfile(_info(name, len(data)), io.BytesIO(data))


def _add_blob(tar: tarfile.TarFile, store: ImageStore, digest: Digest) -> None:
    size = store.blob_size(digest)
    with store.open_blob(digest) as fh:
        reader = _Tee(fh, None, digest.algorithm)
        try:
            tar.addfile(_info(_blob_name(digest), size), io.BufferedReader(reader, CHUNK))
        except OSError as exc:  # tarfile raises OSError("unexpected end of data") for a short file
            raise StoreError(f"blob {digest} changed while it was being saved: {exc}") from exc
        if reader.hash.hexdigest() != digest.hex:
            raise StoreError(f"blob {digest} is corrupt in the store (run `dockyard fsck --repair`)")


# ============================================================================================== load


@dataclass
class _LayerPlan:
    path: str
    known: Descriptor | None  # what the archive promises about the blob (digest, size, media type)


@dataclass
class _ImagePlan:
    config_path: str
    config_digest: Digest | None  # when the archive names the config by its digest
    layers: list[_LayerPlan]
    names: list[Reference] = field(default_factory=list)
    manifest: Manifest | None = None  # the archive's own manifest (OCI layouts): kept when unchanged
    where: str = ""


def load_archive(
    store: ImageStore, source: BinaryIO, *, label: str = "archive",
    on_image: Callable[[LoadedImage], None] | None = None,
) -> list[LoadedImage]:
    """Load every image of a docker-archive or OCI archive (file or pipe, plain or compressed)."""
    with store.writing(), ArchiveMembers(source, label=label, spool_dir=store.ingest_dir) as members:
        plans = plan_archive(members)
        staged = [(_ingest_image(store, members, plan), plan) for plan in plans]
        out = []
        for (descriptor, config_digest), plan in staged:
            store.add_image(descriptor, plan.names, image_id=config_digest)
            loaded = LoadedImage(config_digest, descriptor.digest, tuple(str(n) for n in plan.names))
            if on_image is not None:
                on_image(loaded)
            out.append(loaded)
        return out


def plan_archive(members: ArchiveMembers) -> list[_ImagePlan]:
    """What the archive holds: one plan per image (no blob is read beyond manifests)."""
    label = members.label
    has_index = members.exists("index.json")
    if members.exists("manifest.json"):
        oci_plans: list[_ImagePlan] = []
        if has_index:
            with contextlib.suppress(InvalidManifestError, ArchiveError, InvalidReferenceError):
                oci_plans = _plan_oci(members)  # docker 25: the same images, with their exact manifests
        return _plan_docker(members, oci_plans)
    if has_index:
        plans = _plan_oci(members)
        if not plans:
            raise ArchiveError(f"{label}: index.json lists no container image")
        return plans
    if members.exists("repositories") or any(n.endswith("/layer.tar") for n in members.names()):
        raise ArchiveError(f"{label}: no manifest.json: a legacy (docker < 1.10) archive is not supported")
    raise ArchiveError(f"{label}: not an image archive (no manifest.json or index.json)")


def _json(members: ArchiveMembers, path: str, what: str) -> Any:
    raw = members.read(path, what, MAX_MANIFEST_SIZE)
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidManifestError(f"{members.label}: {what} is not valid JSON ({exc})") from None


def _path_digest(path: str) -> Digest | None:
    match = _BLOB_PATH.fullmatch(path)
    if match is None:
        return None
    try:
        return Digest(match.group(1), match.group(2))
    except InvalidInputError:
        return None


def _plan_docker(members: ArchiveMembers, oci_plans: list[_ImagePlan]) -> list[_ImagePlan]:
    label = members.label
    data = _json(members, "manifest.json", "manifest.json")
    if not isinstance(data, list) or not data:
        raise InvalidManifestError(f"{label}: manifest.json must be a non-empty list of images")
    plans = []
    for number, entry in enumerate(data, 1):
        where = f"manifest.json entry {number}"
        if not isinstance(entry, dict):
            raise InvalidManifestError(f"{label}: {where} is not an object")
        config = entry.get("Config")
        layers = entry.get("Layers")
        tags = entry.get("RepoTags")
        if not isinstance(config, str) or not config:
            raise InvalidManifestError(f"{label}: {where} has no Config path")
        if not isinstance(layers, list) or not all(isinstance(p, str) for p in layers):
            raise InvalidManifestError(f"{label}: {where}: Layers must be a list of paths")
        if tags is not None and (not isinstance(tags, list) or not all(isinstance(t, str) for t in tags)):
            raise InvalidManifestError(f"{label}: {where}: RepoTags must be a list of names")
        config_path = clean_path(config, f"{where} Config")
        layer_paths = [clean_path(p, f"{where} layer") for p in layers]
        names = []
        for tag in tags or []:
            try:
                names.append(Reference.parse(tag))
            except InvalidReferenceError as exc:
                raise InvalidReferenceError(f"{label}: {where}: {exc}") from None
        plan = _ImagePlan(config_path, _path_digest(config_path),
                          [_LayerPlan(p, _known_from_path(members, p)) for p in layer_paths], names, where=where)
        for oci in oci_plans:
            if oci.config_path == config_path and [lp.path for lp in oci.layers] == layer_paths:
                plan.manifest, plan.layers = oci.manifest, oci.layers
                plan.names += [n for n in oci.names if n not in plan.names]
                break
        plans.append(plan)
    return plans


def _known_from_path(members: ArchiveMembers, path: str) -> Descriptor | None:
    digest = _path_digest(path)
    if digest is None:
        return None
    return Descriptor(mt.OCI_LAYER, digest, members.size(path, "layer"))


def _plan_oci(members: ArchiveMembers) -> list[_ImagePlan]:
    label = members.label
    raw = members.read("index.json", "index.json", MAX_MANIFEST_SIZE)
    try:
        index = Index.parse(raw, mt.OCI_INDEX)
    except InvalidManifestError as exc:
        raise InvalidManifestError(f"{label}: index.json: {exc}") from None
    by_digest: dict[Digest, _ImagePlan] = {}
    for number, descriptor in enumerate(index.manifests, 1):
        where = f"index.json entry {number}"
        manifest = _manifest_for(members, descriptor, where, 0)
        if manifest is None:
            continue  # not an image (an artifact, a signature, ...): nothing to load
        plan = by_digest.get(manifest.digest)
        if plan is None:
            plan = _plan_from_manifest(members, manifest, where)
            by_digest[manifest.digest] = plan
        name = _name_from_annotations(descriptor.annotations)
        if name is not None and name not in plan.names:
            plan.names.append(name)
    return list(by_digest.values())


def _name_from_annotations(annotations: Any) -> Reference | None:
    for key in (CONTAINERD_NAME, REF_NAME):
        value = annotations.get(key)
        if not value:
            continue
        if key == REF_NAME and not any(c in value for c in "/:@"):
            continue  # a bare tag ("latest", "v1"): it names no repository
        with contextlib.suppress(InvalidReferenceError):
            return Reference.parse(value)
    return None


def _read_blob(members: ArchiveMembers, descriptor: Descriptor, what: str, limit: int) -> bytes:
    path = _blob_name(descriptor.digest)
    data = members.read(path, what, limit)
    actual = Digest.from_bytes(data, descriptor.digest.algorithm)
    if actual != descriptor.digest:
        raise DigestMismatchError(f"{members.label}: {what} {path} hashes to {actual}")
    if len(data) != descriptor.size:
        raise SizeMismatchError(f"{members.label}: {what} {path} is {len(data)} bytes, not {descriptor.size}")
    return data


def _declared(raw: bytes, kinds: frozenset[str]) -> str | None:
    """The media type a (digest-verified) document declares for itself, when it is one of ``kinds``.

    It wins over the descriptor's: go-containerregistry and skopeo read layouts whose index says OCI
    for a Docker manifest, and so do we.
    """
    with contextlib.suppress(ValueError, UnicodeDecodeError, AttributeError):
        declared = json.loads(raw).get("mediaType")
        if declared in kinds:
            return str(declared)
    return None


def _manifest_for(members: ArchiveMembers, descriptor: Descriptor, where: str, depth: int) -> Manifest | None:
    label = members.label
    if descriptor.media_type in mt.MANIFEST_TYPES:
        raw = _read_blob(members, descriptor, f"{where}: manifest", MAX_MANIFEST_SIZE)
        try:
            return Manifest.parse(raw, _declared(raw, mt.MANIFEST_TYPES) or descriptor.media_type)
        except InvalidManifestError as exc:
            raise InvalidManifestError(f"{label}: {where}: {exc}") from None
    if descriptor.media_type in mt.INDEX_TYPES and depth < _MAX_INDEX_DEPTH:
        raw = _read_blob(members, descriptor, f"{where}: image index", MAX_MANIFEST_SIZE)
        try:
            child_index = Index.parse(raw, _declared(raw, mt.INDEX_TYPES) or descriptor.media_type)
        except InvalidManifestError as exc:
            raise InvalidManifestError(f"{label}: {where}: {exc}") from None
        chosen = child_index.select(Platform.host())
        if chosen is None:
            images = [m for m in child_index.manifests if m.media_type in mt.MANIFEST_TYPES | mt.INDEX_TYPES]
            if len(images) != 1 or images[0].platform is not None:
                raise ArchiveError(f"{label}: {where}: the image index has no manifest for {Platform.host()}")
            chosen = images[0]
        return _manifest_for(members, chosen, where, depth + 1)
    return None


def _plan_from_manifest(members: ArchiveMembers, manifest: Manifest, where: str) -> _ImagePlan:
    label = members.label
    if manifest.config.media_type not in mt.CONFIG_TYPES:
        raise InvalidManifestError(
            f"{label}: {where} is not a container image (config media type {manifest.config.media_type})"
        )
    layers = []
    for layer in manifest.layers:
        if layer.media_type not in mt.LAYER_TYPES:
            raise InvalidManifestError(f"{label}: {where}: unsupported layer media type {layer.media_type}")
        layers.append(_LayerPlan(_blob_name(layer.digest), layer))
    return _ImagePlan(_blob_name(manifest.config.digest), manifest.config.digest, layers, manifest=manifest,
                      where=where)


def _ingest_image(store: ImageStore, members: ArchiveMembers, plan: _ImagePlan) -> tuple[Descriptor, Digest]:
    label = members.label
    raw = members.read(plan.config_path, f"{plan.where} config", MAX_CONFIG_SIZE)
    digest = Digest.from_bytes(raw)
    if plan.config_digest is not None and Digest.from_bytes(raw, plan.config_digest.algorithm) != plan.config_digest:
        raise DigestMismatchError(f"{label}: config {plan.config_path} hashes to {digest}")
    try:
        config = ImageConfig.parse(raw)
    except InvalidManifestError as exc:
        raise InvalidManifestError(f"{label}: {plan.where}: {exc}") from None
    diff_ids = config.diff_ids
    if len(diff_ids) != len(plan.layers):
        raise InvalidManifestError(
            f"{label}: {plan.where}: {len(plan.layers)} layers but the config lists {len(diff_ids)} diff_ids"
        )
    original = plan.manifest
    docker_types = original is not None and original.is_docker
    layers = [
        ingest_layer(store, members, layer, diff_id, docker_types=docker_types)
        for layer, diff_id in zip(plan.layers, diff_ids, strict=True)
    ]
    store.put_blob(raw)
    if original is not None and [d.digest for d in layers] == [d.digest for d in original.layers]:
        manifest = original
    else:
        config_desc = original.config if original is not None else Descriptor(mt.OCI_CONFIG, digest, len(raw))
        manifest = Manifest.build(config_desc, layers, media_type=original.media_type if original else mt.OCI_MANIFEST,
                                  annotations=original.annotations if original else None)
    store.put_blob(manifest.raw)
    return Descriptor(manifest.media_type, manifest.digest, len(manifest.raw)), config.digest


class _Tee(io.RawIOBase):
    """Passes a stream's bytes on, hashing them and copying them to ``sink``."""

    def __init__(self, inner: IO[bytes], sink: Callable[[bytes], None] | None, algorithm: str = "sha256") -> None:
        self._inner = inner
        self._sink = sink
        self.hash = hashlib.new(algorithm)
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._inner.read(min(len(buffer), CHUNK))
        n = len(data)
        if n:
            memoryview(buffer).cast("B")[:n] = data
            self.hash.update(data)
            self.size += n
            if self._sink is not None:
                self._sink(data)
        return n

    def drain(self) -> None:
        scratch = bytearray(CHUNK)
        while self.readinto(scratch):
            pass


def ingest_layer(
    store: ImageStore, members: ArchiveMembers, layer: _LayerPlan, diff_id: Digest, *, docker_types: bool = False
) -> Descriptor:
    """Store one layer of the archive, checking it decompresses to ``diff_id`` before it is published.

    gzip and zstd layers are stored as they are; plain (and bzip2/xz) layers are gzip-compressed.
    """
    label = members.label
    what = "layer"
    with members.open(layer.path, what) as fh:
        compression = detect_compression(fh.read(6))
    keep = compression in (Compression.GZIP, Compression.ZSTD)
    known = layer.known
    if known is not None and known.digest.algorithm != "sha256":
        known = None
    with store.blob_writer(known.digest if keep and known else None, known.size if keep and known else None) as writer:
        with members.open(layer.path, what) as fh:
            tee = _Tee(fh, writer.write if keep else None)
            _, reader = open_decompressed(tee)  # type: ignore[arg-type]
            diff = hashlib.sha256()
            compressor = None if keep else new_compressor(Compression.GZIP)
            while chunk := reader.read(CHUNK):
                diff.update(chunk)
                if compressor is not None and (out := compressor.compress(chunk)):
                    writer.write(out)
            if compressor is not None:
                writer.write(compressor.flush())
            tee.drain()
        actual = Digest("sha256", diff.hexdigest())
        if actual != diff_id:
            raise DigestMismatchError(
                f"{label}: layer {layer.path} decompresses to {actual}, but the image config's diff_id is {diff_id}"
            )
        if known is not None and not keep and tee.hash.hexdigest() != known.digest.hex:
            raise DigestMismatchError(f"{label}: layer {layer.path} hashes to sha256:{tee.hash.hexdigest()}, "
                                      f"not {known.digest}")
        digest, size = writer.commit()
    if keep and known is not None and known.media_type in mt.LAYER_TYPES and \
            mt.layer_compression(known.media_type) == compression.value:
        media_type = known.media_type
    else:
        media_type = media_type_for(compression if keep else Compression.GZIP, docker=docker_types)
    return Descriptor(media_type, digest, size)


def loaded_lines(images: Iterable[LoadedImage]) -> list[str]:
    """What ``docker load`` prints: one line per tag, the id for an untagged image."""
    lines = []
    for image in images:
        if image.names:
            for name in image.names:
                lines.append(f"Loaded image: {Reference.parse(name).familiar}")
        else:
            lines.append(f"Loaded image ID: {image.image_id}")
    return lines


# ============================================================================================ export


def export_image(store: ImageStore, name: str, out: BinaryIO) -> int:
    """Write the flattened filesystem of image ``name`` (whiteouts applied) as one tar; returns its size."""
    from engine.archive.flatten import flatten_layers

    image = store.resolve(name)
    with contextlib.ExitStack() as stack:
        streams = [stack.enter_context(store.open_blob(layer.digest)) for layer in image.manifest.layers]
        stats = flatten_layers(streams, out)  # type: ignore[arg-type]
    return stats.size


# ============================================================================================= files


def write_output(dest: Path, write: Callable[[BinaryIO], Any]) -> None:
    """Run ``write`` on a temp file next to ``dest`` and rename it into place only when it succeeded.

    A destination that exists and is not a regular file (``/dev/null``, a FIFO) is written directly.
    """
    try:
        special = dest.exists() and not stat.S_ISREG(dest.stat().st_mode)
    except OSError as exc:
        raise from_os_error(exc, f"cannot write {dest}") from exc
    if special:
        try:
            with open(dest, "wb") as fh:
                write(fh)
        except OSError as exc:
            raise from_os_error(exc, f"cannot write {dest}") from exc
        return
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except OSError as exc:
        raise from_os_error(exc, f"cannot write {dest}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def open_input(path: Path) -> BinaryIO:
    """Open an archive to load, with a one-line error for a missing or unreadable path."""
    try:
        if path.is_dir():
            raise InvalidInputError(f"{path} is a directory, not an archive file")
        return open(path, "rb")
    except FileNotFoundError:
        raise InvalidInputError(f"{path}: no such file") from None
    except OSError as exc:
        raise InvalidInputError(f"cannot open {path}: {exc.strerror or exc}") from None
