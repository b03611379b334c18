"""``dockyard import``: a root filesystem tarball (plain, gzip or zstd) becomes a one-layer image."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from engine.archive.compression import new_compressor, open_decompressed
from engine.errors import InvalidInputError, from_os_error
from engine.oci import mediatypes as mt
from engine.oci.digest import Digest
from engine.oci.models import Descriptor, ImageConfig, Manifest
from engine.oci.platform import Platform
from engine.oci.reference import Reference
from engine.store.blobs import CHUNK
from engine.store.layout import ImageStore, ResolvedImage

_LIST_FIELDS = {"CMD": "Cmd", "ENTRYPOINT": "Entrypoint"}


# The order Go's image-spec v1 structs marshal in.  skopeo (containers/image) re-marshals the config
# when it converts a Docker manifest to OCI (docker-archive: -> oci:), so a config written in any other
# shape would get a new digest (a new image id) on that trip.
_GO_RUN_CONFIG_ORDER = ("User", "ExposedPorts", "Env", "Entrypoint", "Cmd", "Volumes", "WorkingDir", "Labels",
                        "StopSignal", "ArgsEscaped")


def now_rfc3339() -> str:
    """UTC now as Go's RFC3339Nano prints it (trailing zeros of the fraction dropped)."""
    now = _dt.datetime.now(_dt.UTC)
    fraction = f"{now.microsecond:06d}".rstrip("0")
    return now.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "") + "Z"


def _go_platform(platform: Platform) -> dict[str, Any]:
    fields = platform.to_json()
    order = ("architecture", "variant", "os", "os.version", "os.features")
    return {key: fields[key] for key in order if key in fields}


def _go_ordered(run_config: dict[str, Any]) -> dict[str, Any]:
    known = {key: run_config[key] for key in _GO_RUN_CONFIG_ORDER if key in run_config}
    return known | {key: value for key, value in run_config.items() if key not in known}


def apply_changes(config: dict[str, Any], changes: Sequence[str]) -> dict[str, Any]:
    """Apply docker-import ``--change`` instructions (CMD, ENTRYPOINT, ENV, WORKDIR, USER, EXPOSE,
    LABEL, VOLUME, STOPSIGNAL) to a run config; returns a new dict."""
    out = dict(config)
    for change in changes:
        keyword, _, rest = change.strip().partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword in _LIST_FIELDS:
            out[_LIST_FIELDS[keyword]] = _exec_or_shell(rest, keyword)
        elif keyword == "ENV":
            env = [e for e in out.get("Env") or []]
            for key, value in _pairs(rest, keyword):
                env = [e for e in env if e.split("=", 1)[0] != key] + [f"{key}={value}"]
            out["Env"] = env
        elif keyword == "LABEL":
            out["Labels"] = {**(out.get("Labels") or {}), **dict(_pairs(rest, keyword))}
        elif keyword in ("WORKDIR", "USER", "STOPSIGNAL"):
            if not rest:
                raise InvalidInputError(f"--change {keyword} needs a value")
            out[{"WORKDIR": "WorkingDir", "USER": "User", "STOPSIGNAL": "StopSignal"}[keyword]] = rest
        elif keyword == "EXPOSE":
            ports = dict(out.get("ExposedPorts") or {})
            for port in rest.split():
                ports[port if "/" in port else f"{port}/tcp"] = {}
            out["ExposedPorts"] = ports
        elif keyword == "VOLUME":
            volumes = dict(out.get("Volumes") or {})
            paths = json.loads(rest) if rest.startswith("[") else rest.split()
            for path in paths:
                volumes[str(path)] = {}
            out["Volumes"] = volumes
        else:
            raise InvalidInputError(f"--change: {keyword or change!r} is not supported by import")
    return out


def _exec_or_shell(rest: str, keyword: str) -> list[str]:
    if rest.startswith("["):
        try:
            value = json.loads(rest)
        except ValueError:
            value = None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    if not rest:
        raise InvalidInputError(f"--change {keyword} needs a command")
    return ["/bin/sh", "-c", rest]


def _pairs(rest: str, keyword: str) -> list[tuple[str, str]]:
    import shlex

    try:
        words = shlex.split(rest)
    except ValueError as exc:
        raise InvalidInputError(f"--change {keyword}: {exc}") from None
    if len(words) >= 2 and "=" not in words[0]:
        return [(words[0], " ".join(words[1:]))]
    out = []
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise InvalidInputError(f"--change {keyword}: expected KEY=VALUE, got {word!r}")
        out.append((key, value))
    return out


def store_layer_from_tar(store: ImageStore, source: IO[bytes]) -> tuple[Descriptor, Digest]:
    """Compress a (possibly compressed) layer tar into the store: returns (blob descriptor, diff id)."""
    _, reader = open_decompressed(source)  # type: ignore[arg-type]
    diff_hash = hashlib.sha256()
    compressor = new_compressor("gzip")
    with store.blob_writer() as writer:
        while chunk := reader.read(CHUNK):
            diff_hash.update(chunk)
            out = compressor.compress(chunk)
            if out:
                writer.write(out)
        writer.write(compressor.flush())
        digest, size = writer.commit()
    return Descriptor(mt.OCI_LAYER_GZIP, digest, size), Digest("sha256", diff_hash.hexdigest())


def import_rootfs(
    store: ImageStore, tarball: Path | IO[bytes], reference: Reference | None, *,
    changes: Sequence[str] = (), message: str = "", platform: Platform | None = None,
) -> ResolvedImage:
    """Import a rootfs tarball as a single-layer image tagged ``reference`` (untagged when None)."""
    platform = platform or Platform.host()
    run_config = _go_ordered(apply_changes({}, changes))
    with store.writing():
        try:
            if isinstance(tarball, Path):
                with open(tarball, "rb") as fh:
                    layer, diff_id = store_layer_from_tar(store, fh)
            else:
                layer, diff_id = store_layer_from_tar(store, tarball)
        except OSError as exc:
            raise from_os_error(exc, f"cannot import {tarball}") from exc
        created = now_rfc3339()
        source = str(tarball) if isinstance(tarball, Path) else "-"
        history: dict[str, Any] = {"created": created, "created_by": f"dockyard import {source}"}
        if message:
            history["comment"] = message
        config_doc: dict[str, Any] = {
            "created": created,
            **_go_platform(platform),
            "config": run_config,
            "rootfs": {"type": "layers", "diff_ids": [str(diff_id)]},
            "history": [history],
        }
        config = ImageConfig.build(config_doc)
        store.put_blob(config.raw)
        manifest = Manifest.build(Descriptor(mt.OCI_CONFIG, config.digest, len(config.raw)), [layer])
        store.put_blob(manifest.raw)
        store.add_image(manifest.descriptor(), [reference] if reference else [], image_id=config.digest)
    return store.resolve(str(reference) if reference else config.digest.hex)
