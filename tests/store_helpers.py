"""Small images and archives built in-process for the store tests (no network, no busybox needed)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from engine.oci.reference import Reference
from engine.store.importer import import_rootfs
from engine.store.layout import ImageStore, ResolvedImage


def layer_tar(files: Mapping[str, bytes | None]) -> bytes:
    """An uncompressed layer: path -> content (None makes a directory). Deterministic bytes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.mtime = 0
            if content is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            else:
                info.size = len(content)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def import_files(store: ImageStore, name: str | None, files: Mapping[str, bytes | None]) -> ResolvedImage:
    """A one-layer image made with the store's own importer."""
    return import_rootfs(store, io.BytesIO(layer_tar(files)), Reference.parse(name) if name else None,
                         changes=['CMD ["sh"]'])


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def config_for(layers: Sequence[bytes]) -> bytes:
    """An image config whose diff_ids are the sha256 of the given uncompressed layers."""
    return json.dumps({
        "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [sha(layer) for layer in layers]},
        "history": [{"created_by": f"layer {i}"} for i in range(len(layers))],
    }).encode()


def write_tar(path: Path, entries: Mapping[str, bytes | tuple[str, str]]) -> Path:
    """A tar of name -> bytes, or name -> ("symlink"|"hardlink", target)."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in entries.items():
            info = tarfile.TarInfo(name)
            if isinstance(content, tuple):
                info.type = tarfile.SYMTYPE if content[0] == "symlink" else tarfile.LNKTYPE
                info.linkname = content[1]
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return path


def legacy_docker_archive(path: Path, layers: Sequence[bytes], tags: Sequence[str] = ("localhost/legacy:1",),
                          *, config: bytes | None = None, manifest: Any = None) -> Path:
    """A pre-25 ``docker save``: <id>/layer.tar (plain), <config hex>.json, manifest.json, repositories."""
    config = config if config is not None else config_for(layers)
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    entries: dict[str, bytes | tuple[str, str]] = {config_name: config}
    paths = []
    for layer in layers:
        layer_id = hashlib.sha256(b"id" + layer).hexdigest()
        entries[f"{layer_id}/VERSION"] = b"1.0"
        entries[f"{layer_id}/json"] = b"{}"
        entries[f"{layer_id}/layer.tar"] = layer
        paths.append(f"{layer_id}/layer.tar")
    if manifest is None:
        manifest = [{"Config": config_name, "RepoTags": list(tags), "Layers": paths}]
    entries["manifest.json"] = json.dumps(manifest).encode()
    entries["repositories"] = b"{}"
    return write_tar(path, entries)


def oci_archive(path: Path, layers: Sequence[bytes], annotations: Mapping[str, str] | None = None, *,
                compress: bool = True) -> tuple[Path, str, str]:
    """An OCI archive (oci-layout, index.json, blobs) with one image; returns (path, config id, manifest digest)."""
    config = config_for(layers)
    blobs: dict[str, bytes] = {sha(config): config}
    layer_descs = []
    for layer in layers:
        blob = gzip.compress(layer, mtime=0) if compress else layer
        blobs[sha(blob)] = blob
        media = "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if compress else "")
        layer_descs.append({"mediaType": media, "digest": sha(blob), "size": len(blob)})
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(config),
                   "size": len(config)},
        "layers": layer_descs,
    }).encode()
    blobs[sha(manifest)] = manifest
    entry: dict[str, Any] = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha(manifest),
                             "size": len(manifest)}
    if annotations:
        entry["annotations"] = dict(annotations)
    entries: dict[str, bytes | tuple[str, str]] = {
        "oci-layout": b'{"imageLayoutVersion":"1.0.0"}',
        "index.json": json.dumps({"schemaVersion": 2, "manifests": [entry]}).encode(),
    }
    for digest, blob in blobs.items():
        entries["blobs/sha256/" + digest.split(":")[1]] = blob
    write_tar(path, entries)
    return path, sha(config), sha(manifest)


def tar_directory(directory: Path, dest: Path) -> Path:
    """Pack a directory (an OCI layout written by another tool) into an archive."""
    with tarfile.open(dest, "w") as tar:
        for entry in sorted(directory.rglob("*")):
            tar.add(entry, arcname=str(entry.relative_to(directory)), recursive=False)
    return dest
