"""Validation of OCI image-spec documents, written by hand (jsonschema is a test-only dependency).

``validate_document(media_type, raw)`` accepts exactly what the image-spec's reference validator
(``schema/validator.go`` at opencontainers/image-spec@13cff54) accepts, which is three checks in a row:

1. **Go decoding.** The bytes must decode into the Go struct for the media type (``v1.Manifest``,
   ``v1.Index``, ``v1.Image``, ``v1.Descriptor``): well-formed JSON, and every field (matched by name
   case-insensitively, as ``encoding/json`` does) of the right Go type; ``null`` is always accepted
   here; ``data`` must be padded standard base64; ``created`` must be an RFC 3339 time.
2. **The JSON schema** of ``schema/*.json`` (draft-04), with ``format`` asserted (``uri`` for
   ``urls``, ``date-time`` for ``created``): required fields, types, media-type and digest patterns,
   ``schemaVersion`` 2, at least one layer, string maps, the platform object, ``rootfs.type``.
3. **The extra checks** of the Go validator: a descriptor's digest passes go-digest (``sha256``,
   ``sha384``, ``sha512`` need 64 / 96 / 128 lower-case hex; other algorithms only need the
   grammar), and every ``config.Env`` entry matches ``^[^=]+=.*$``.

Deliberately stricter than upstream, because the image-spec prose demands it even where its schema
does not: sizes are never negative (the index schema allows any int64); the go-digest check runs
on *every* descriptor (upstream checks only a top-level descriptor document); ``rootfs.diff_ids``
must be digests; invalid UTF-8, a byte-order mark and ``NaN``/``Infinity`` are refused.

Docker schema2 media types are validated by the rules of their OCI counterparts (the image-spec's
backwards-compatibility tests show that real Docker documents pass them); the image layout's
``oci-layout`` file is ``OCI_LAYOUT_HEADER``.

``strict=False`` is what the models (``engine.oci.models``) use for documents they read. It differs
from the strict check in two documented ways only, both for documents that real tools write and
registries serve:

* ``null`` for an optional field means the field is absent (Go encoders write ``"Env": null``;
  ``docker import`` images have it), and
* an image may have no layers: ``layers: []`` and a ``rootfs`` without ``diff_ids`` (a ``FROM scratch``
  image with only metadata; the spec prose says layers SHOULD, not MUST, have an entry).

Digest algorithms: this module judges conformance, so ``sha256+b64:...`` is valid here. Whether
dockyard can *store* a blob is a separate question answered by ``engine.oci.digest.Digest``
(sha256 and sha512 only); the models raise a clear "unsupported digest algorithm" error for the rest.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from engine.errors import InvalidManifestError
from engine.oci import mediatypes as mt

OCI_LAYOUT_HEADER = "application/vnd.oci.layout.header.v1+json"

MEDIA_TYPE_PATTERN = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
)
DIGEST_PATTERN = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
KNOWN_DIGEST_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}
_LOWER_HEX = re.compile(r"[a-f0-9]+")
_ENV_ENTRY = re.compile(r"[^=]+=.*")  # Go's ^[^=]+=.*$ : "." stops at a newline, "$" is end of text
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(?:[Zz]|[+-](\d{2}):(\d{2}))"
)
_URI = re.compile(
    r"[A-Za-z][A-Za-z0-9+.-]*:(?:[A-Za-z0-9._~!$&'()*+,;=:@/?\[\]-]|%[0-9A-Fa-f]{2})*"
    r"(?:#(?:[A-Za-z0-9._~!$&'()*+,;=:@/?-]|%[0-9A-Fa-f]{2})*)?"
)
INT64_MAX = 2**63 - 1
_SCHEMA_SIZE_MAX = 9223372036854776000  # the schemas' (float) bound; Go's int64 is the tighter one

_KIND_BY_MEDIA_TYPE = {
    mt.OCI_DESCRIPTOR: "descriptor",
    mt.OCI_MANIFEST: "manifest",
    mt.DOCKER_MANIFEST: "manifest",
    mt.OCI_INDEX: "index",
    mt.DOCKER_MANIFEST_LIST: "index",
    mt.OCI_CONFIG: "config",
    mt.DOCKER_CONFIG: "config",
    OCI_LAYOUT_HEADER: "layout",
}
_WHAT = {"descriptor": "descriptor", "manifest": "manifest", "index": "index", "config": "image config",
         "layout": "oci-layout file"}

VALIDATED_MEDIA_TYPES = frozenset(_KIND_BY_MEDIA_TYPE)


class _Invalid(Exception):
    """A problem at a path inside the document; turned into InvalidManifestError at the API edge."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}" if path else problem)


# --------------------------------------------------------------------------------------------------
# public API


def validate_document(media_type: str, raw: bytes, *, strict: bool = True) -> None:
    """Raise InvalidManifestError unless ``raw`` is a valid document of ``media_type``."""
    kind = _kind(media_type)
    validate_object(media_type, decode_document(raw, _WHAT[kind]), strict=strict)


def validate_object(media_type: str, obj: Any, *, strict: bool = True, what: str | None = None) -> None:
    """Like ``validate_document`` for a document already decoded with ``decode_document``."""
    kind = _kind(media_type)
    label = what or _WHAT[kind]
    try:
        if kind == "layout":
            _check_layout(obj)
            return
        _go_decode(_GO_ROOT[kind], obj, "")
        {"descriptor": _schema_descriptor, "manifest": _schema_manifest, "index": _schema_index,
         "config": _schema_config}[kind](obj, "", not strict)
    except _Invalid as exc:
        raise InvalidManifestError(f"invalid {label}: {exc}") from None


def validate_descriptor(obj: Any, *, strict: bool = True, what: str = "descriptor") -> None:
    """Validate a decoded content descriptor (schema + go-digest), e.g. an ``index.json`` entry."""
    validate_object(mt.OCI_DESCRIPTOR, obj, strict=strict, what=what)


def decode_document(raw: bytes, what: str = "document") -> Any:
    """Decode JSON as strictly as Go does (UTF-8, no BOM, no NaN/Infinity); errors are one line."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidManifestError(f"invalid {what}: not UTF-8 (byte {exc.start})") from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise InvalidManifestError(f"invalid {what}: not valid JSON ({exc.msg} at line {exc.lineno} "
                                   f"column {exc.colno})") from None
    except ValueError as exc:
        raise InvalidManifestError(f"invalid {what}: not valid JSON ({exc})") from None
    except RecursionError:
        raise InvalidManifestError(f"invalid {what}: JSON nested too deeply") from None


def digest_problem(value: str) -> str | None:
    """Why ``value`` is not a valid descriptor digest (schema pattern + go-digest), or None."""
    if not DIGEST_PATTERN.fullmatch(value):
        return f"{value[:100]!r} is not a digest (algorithm:encoded)"
    algorithm, _, encoded = value.partition(":")
    expected = KNOWN_DIGEST_LENGTHS.get(algorithm)
    if expected is not None and (len(encoded) != expected or not _LOWER_HEX.fullmatch(encoded)):
        return f"{algorithm} digest must be {expected} lower-case hex characters"
    return None


def is_media_type(value: Any) -> bool:
    return isinstance(value, str) and MEDIA_TYPE_PATTERN.fullmatch(value) is not None


def is_rfc3339(value: str) -> bool:
    """An RFC 3339 date-time that Go's time.Parse(time.RFC3339, ...) also accepts."""
    m = _RFC3339.fullmatch(value)
    if m is None:
        return False
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    if not 1 <= month <= 12 or not 1 <= day <= _days_in_month(year, month):
        return False
    if hour > 23 or minute > 59 or second > 59:
        return False
    offset_ok = m.group(7) is None or (int(m.group(7)) <= 23 and int(m.group(8)) <= 59)
    return offset_ok


def is_absolute_uri(value: str) -> bool:
    """An RFC 3986 URI with a scheme (what the schemas' ``"format": "uri"`` asks for)."""
    return _URI.fullmatch(value) is not None


def is_padded_base64(value: str) -> bool:
    """Go's ``[]byte`` JSON decoding: standard alphabet, padded; CR and LF are skipped."""
    try:
        base64.b64decode(value.replace("\r", "").replace("\n", ""), validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


# --------------------------------------------------------------------------------------------------
# helpers


def _kind(media_type: str) -> str:
    kind = _KIND_BY_MEDIA_TYPE.get(media_type)
    if kind is None:
        raise InvalidManifestError(f"cannot validate documents of media type {media_type!r}")
    return kind


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "a number"
    if isinstance(value, float):
        return "a non-integer number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# --------------------------------------------------------------------------------------------------
# 1. Go decoding: does the JSON fit the Go struct? (null always fits; unknown keys are ignored)

_GoType = Callable[[Any, str], None]


def _go_string(value: Any, path: str) -> None:
    if value is not None and not isinstance(value, str):
        raise _Invalid(path, f"must be a string, not {_type_name(value)}")


def _go_int64(value: Any, path: str) -> None:
    if value is not None and not (_is_int(value) and -INT64_MAX - 1 <= value <= INT64_MAX):
        raise _Invalid(path, f"must be a 64-bit integer, not {_type_name(value)}")


def _go_bool(value: Any, path: str) -> None:
    if value is not None and not isinstance(value, bool):
        raise _Invalid(path, f"must be true or false, not {_type_name(value)}")


def _go_bytes(value: Any, path: str) -> None:
    _go_string(value, path)
    if isinstance(value, str) and not is_padded_base64(value):
        raise _Invalid(path, "must be padded standard base64")


def _go_time(value: Any, path: str) -> None:
    _go_string(value, path)
    if isinstance(value, str) and not is_rfc3339(value):
        raise _Invalid(path, f"{value[:60]!r} is not an RFC 3339 date-time")


def _go_empty_struct(value: Any, path: str) -> None:
    if value is not None and not isinstance(value, dict):
        raise _Invalid(path, f"must be an object, not {_type_name(value)}")


def _go_list(item: _GoType) -> _GoType:
    def check(value: Any, path: str) -> None:
        if value is None:
            return
        if not isinstance(value, list):
            raise _Invalid(path, f"must be an array, not {_type_name(value)}")
        for i, element in enumerate(value):
            item(element, _join(path, i))
    return check


def _go_map(item: _GoType) -> _GoType:
    def check(value: Any, path: str) -> None:
        _go_empty_struct(value, path)
        for key, element in (value or {}).items():
            item(element, _join(path, key))
    return check


def _go_struct(fields: Mapping[str, _GoType]) -> _GoType:
    folded = {name.casefold(): check for name, check in fields.items()}

    def check(value: Any, path: str) -> None:
        _go_empty_struct(value, path)
        for key, element in (value or {}).items():
            field_check = folded.get(key.casefold())
            if field_check is not None:
                field_check(element, _join(path, key))
    return check


def _go_decode(struct: _GoType, obj: Any, path: str) -> None:
    if not isinstance(obj, dict):  # Go can decode null into a struct, but every schema wants an object
        raise _Invalid(path, f"expected a JSON object, not {_type_name(obj)}")
    struct(obj, path)


_GO_STRINGS = _go_list(_go_string)
_GO_PLATFORM = _go_struct({
    "architecture": _go_string, "os": _go_string, "os.version": _go_string, "os.features": _GO_STRINGS,
    "variant": _go_string,
})
_GO_DESCRIPTOR = _go_struct({
    "mediaType": _go_string, "digest": _go_string, "size": _go_int64, "urls": _GO_STRINGS,
    "annotations": _go_map(_go_string), "data": _go_bytes, "platform": _GO_PLATFORM,
    "artifactType": _go_string,
})
_GO_ROOT: dict[str, _GoType] = {
    "descriptor": _GO_DESCRIPTOR,
    "manifest": _go_struct({
        "schemaVersion": _go_int64, "mediaType": _go_string, "artifactType": _go_string,
        "config": _GO_DESCRIPTOR, "layers": _go_list(_GO_DESCRIPTOR), "subject": _GO_DESCRIPTOR,
        "annotations": _go_map(_go_string),
    }),
    "index": _go_struct({
        "schemaVersion": _go_int64, "mediaType": _go_string, "artifactType": _go_string,
        "manifests": _go_list(_GO_DESCRIPTOR), "subject": _GO_DESCRIPTOR,
        "annotations": _go_map(_go_string),
    }),
    "config": _go_struct({
        "created": _go_time, "author": _go_string, "architecture": _go_string, "os": _go_string,
        "os.version": _go_string, "os.features": _GO_STRINGS, "variant": _go_string,
        "config": _go_struct({
            "User": _go_string, "ExposedPorts": _go_map(_go_empty_struct), "Env": _GO_STRINGS,
            "Entrypoint": _GO_STRINGS, "Cmd": _GO_STRINGS, "Volumes": _go_map(_go_empty_struct),
            "WorkingDir": _go_string, "Labels": _go_map(_go_string), "StopSignal": _go_string,
            "ArgsEscaped": _go_bool,
        }),
        "rootfs": _go_struct({"type": _go_string, "diff_ids": _GO_STRINGS}),
        "history": _go_list(_go_struct({
            "created": _go_time, "created_by": _go_string, "author": _go_string, "comment": _go_string,
            "empty_layer": _go_bool,
        })),
    }),
}


# --------------------------------------------------------------------------------------------------
# 2 + 3. The JSON schemas (exact key names) and the validator's extra checks
#
# Every function takes (value, path, relaxed); ``relaxed`` is ``not strict``.


def _object(value: Any, path: str, required: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Invalid(path, f"must be an object, not {_type_name(value)}")
    for name in required:
        if name not in value:
            raise _Invalid(_join(path, name), "is required")
    return value


def _fields(obj: dict[str, Any], path: str, relaxed: bool, required: tuple[str, ...] = ()) -> list[
        tuple[str, Any, str]]:
    """(name, value, path) of the present fields; in relaxed mode an optional null is absent."""
    return [(name, value, _join(path, name)) for name, value in obj.items()
            if not (relaxed and value is None and name not in required)]


def _string(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise _Invalid(path, f"must be a string, not {_type_name(value)}")
    return value


def _media_type(value: Any, path: str) -> None:
    if not MEDIA_TYPE_PATTERN.fullmatch(_string(value, path)):
        raise _Invalid(path, f"{value[:140]!r} is not a media type (type/subtype)")


def _size(value: Any, path: str) -> None:
    if not _is_int(value):
        raise _Invalid(path, f"must be an integer, not {_type_name(value)}")
    if value < 0 or value > min(INT64_MAX, _SCHEMA_SIZE_MAX):
        raise _Invalid(path, f"{value} is not a size in bytes (0 to 2^63-1)")


def _digest(value: Any, path: str) -> None:
    problem = digest_problem(_string(value, path))
    if problem:
        raise _Invalid(path, problem)


def _string_list(value: Any, path: str) -> list[str]:
    if not isinstance(value, list):
        raise _Invalid(path, f"must be an array of strings, not {_type_name(value)}")
    for i, item in enumerate(value):
        _string(item, _join(path, i))
    return value


def _string_map(value: Any, path: str) -> None:
    if not isinstance(value, dict):
        raise _Invalid(path, f"must be an object of strings, not {_type_name(value)}")
    for key, item in value.items():
        _string(item, _join(path, key))


def _object_map(value: Any, path: str) -> None:
    if not isinstance(value, dict):
        raise _Invalid(path, f"must be an object whose values are objects, not {_type_name(value)}")
    for key, item in value.items():
        if not isinstance(item, dict):
            raise _Invalid(_join(path, key), f"must be an object, not {_type_name(item)}")


def _urls(value: Any, path: str) -> None:
    for i, url in enumerate(_string_list(value, path)):
        if not is_absolute_uri(url):
            raise _Invalid(_join(path, i), f"{url[:100]!r} is not an absolute URI")


def _platform(value: Any, path: str, relaxed: bool) -> None:
    obj = _object(value, path, ("architecture", "os"))
    for name, item, where in _fields(obj, path, relaxed, ("architecture", "os")):
        if name in ("architecture", "os", "os.version", "variant"):
            _string(item, where)
        elif name == "os.features":
            _string_list(item, where)


def _schema_descriptor(value: Any, path: str, relaxed: bool, *, index_entry: bool = False) -> None:
    required = ("mediaType", "size", "digest")
    obj = _object(value, path, required)
    for name, item, where in _fields(obj, path, relaxed, required):
        if name in ("mediaType", "artifactType"):
            _media_type(item, where)
        elif name == "size":
            _size(item, where)
        elif name == "digest":
            _digest(item, where)
        elif name == "urls":
            _urls(item, where)
        elif name == "data":
            _string(item, where)  # padded base64: checked while Go-decoding
        elif name == "annotations":
            _string_map(item, where)
        elif name == "platform" and index_entry:
            _platform(item, where, relaxed)


def _schema_version(value: Any, path: str) -> None:
    if not _is_int(value) or value != 2:
        raise _Invalid(path, f"must be 2, not {json.dumps(value)[:40]}")


def _schema_manifest(value: Any, path: str, relaxed: bool) -> None:
    required = ("schemaVersion", "config", "layers")
    obj = _object(value, path, required)
    for name, item, where in _fields(obj, path, relaxed, required):
        if name == "schemaVersion":
            _schema_version(item, where)
        elif name in ("mediaType", "artifactType"):
            _media_type(item, where)
        elif name in ("config", "subject"):
            _schema_descriptor(item, where, relaxed)
        elif name == "layers":
            if not isinstance(item, list):
                raise _Invalid(where, f"must be an array of descriptors, not {_type_name(item)}")
            if not item and not relaxed:
                raise _Invalid(where, "must have at least one layer")
            for i, layer in enumerate(item):
                _schema_descriptor(layer, _join(where, i), relaxed)
        elif name == "annotations":
            _string_map(item, where)


def _schema_index(value: Any, path: str, relaxed: bool) -> None:
    required = ("schemaVersion", "manifests")
    obj = _object(value, path, required)
    for name, item, where in _fields(obj, path, relaxed, required):
        if name == "schemaVersion":
            _schema_version(item, where)
        elif name in ("mediaType", "artifactType"):
            _media_type(item, where)
        elif name == "subject":
            _schema_descriptor(item, where, relaxed)
        elif name == "manifests":
            if not isinstance(item, list):
                raise _Invalid(where, f"must be an array of descriptors, not {_type_name(item)}")
            for i, entry in enumerate(item):
                _schema_descriptor(entry, _join(where, i), relaxed, index_entry=True)
        elif name == "annotations":
            _string_map(item, where)


def _schema_config(value: Any, path: str, relaxed: bool) -> None:
    required = ("architecture", "os", "rootfs")
    obj = _object(value, path, required)
    for name, item, where in _fields(obj, path, relaxed, required):
        if name in ("author", "architecture", "variant", "os", "os.version"):
            _string(item, where)
        elif name == "created":
            _date_time(item, where)
        elif name == "os.features":
            _string_list(item, where)
        elif name == "config":
            _run_config(item, where, relaxed)
        elif name == "rootfs":
            _rootfs(item, where, relaxed)
        elif name == "history":
            if not isinstance(item, list):
                raise _Invalid(where, f"must be an array of objects, not {_type_name(item)}")
            for i, entry in enumerate(item):
                _history(entry, _join(where, i), relaxed)
    # The Go validator's extra check, on whatever decoded into config.Env (any key spelling).
    config = obj.get("config")
    if isinstance(config, dict):
        for key, env in config.items():
            if key.casefold() == "env" and isinstance(env, list):
                for i, entry in enumerate(env):
                    if isinstance(entry, str) and not _ENV_ENTRY.fullmatch(entry):
                        raise _Invalid(_join(_join(path, "config"), key) + f"[{i}]",
                                       f"{entry[:60]!r} is not NAME=VALUE")


def _date_time(value: Any, path: str) -> None:
    if not is_rfc3339(_string(value, path)):
        raise _Invalid(path, f"{value[:60]!r} is not an RFC 3339 date-time")


def _run_config(value: Any, path: str, relaxed: bool) -> None:
    obj = _object(value, path, ())
    for name, item, where in _fields(obj, path, relaxed):
        if name in ("User", "WorkingDir", "StopSignal"):
            _string(item, where)
        elif name == "Env":
            _string_list(item, where)
        elif name in ("Entrypoint", "Cmd"):
            if item is not None:
                _string_list(item, where)
        elif name == "ExposedPorts":
            _object_map(item, where)
        elif name == "Volumes":
            if item is not None:
                _object_map(item, where)
        elif name == "Labels":
            if item is not None:
                _string_map(item, where)
        elif name == "ArgsEscaped" and not isinstance(item, bool):
            raise _Invalid(where, f"must be true or false, not {_type_name(item)}")


def _rootfs(value: Any, path: str, relaxed: bool) -> None:
    required = ("type",) if relaxed else ("diff_ids", "type")
    obj = _object(value, path, required)
    for name, item, where in _fields(obj, path, relaxed, required):
        if name == "type":
            if item != "layers":
                raise _Invalid(where, f"must be \"layers\", not {json.dumps(item)[:40]}")
        elif name == "diff_ids":
            for i, diff_id in enumerate(_string_list(item, where)):
                _digest(diff_id, _join(where, i))


def _history(value: Any, path: str, relaxed: bool) -> None:
    obj = _object(value, path, ())
    for name, item, where in _fields(obj, path, relaxed):
        if name == "created":
            _date_time(item, where)
        elif name in ("author", "created_by", "comment"):
            _string(item, where)
        elif name == "empty_layer" and not isinstance(item, bool):
            raise _Invalid(where, f"must be true or false, not {_type_name(item)}")


def _check_layout(value: Any) -> None:
    obj = _object(value, "", ("imageLayoutVersion",))
    version = obj["imageLayoutVersion"]
    if version != mt.OCI_LAYOUT_VERSION:
        raise _Invalid("imageLayoutVersion", f"must be \"{mt.OCI_LAYOUT_VERSION}\", not {json.dumps(version)[:40]}")
