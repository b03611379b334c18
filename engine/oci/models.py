"""OCI / Docker schema2 documents: descriptor, image manifest, image index, image config.

Every parsed document keeps the exact bytes it came from (``raw``) and the whole decoded object
(``data``, unknown fields included), so re-serialising never changes a digest. Typed properties read
from ``data``. New documents are made with ``build()``, which writes canonical compact JSON.

``parse()`` and ``Descriptor.from_json`` first run ``engine.oci.validate`` (the OCI schemas plus the
reference validator's checks) with ``strict=False`` -- see that module for the two relaxations real
images need -- and then ask what dockyard itself needs on top: digests it can store (sha256, sha512).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.errors import InvalidDigestError, InvalidManifestError, InvalidPlatformError
from engine.oci import mediatypes as mt
from engine.oci.digest import Digest
from engine.oci.platform import Platform
from engine.oci.validate import decode_document, validate_descriptor, validate_object

MAX_MANIFEST_SIZE = 8 * 1024 * 1024
MAX_CONFIG_SIZE = 32 * 1024 * 1024


def canonical_json(obj: Any) -> bytes:
    """Compact JSON with keys in the order given; what dockyard writes for new documents."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def decode_json(raw: bytes, what: str) -> dict[str, Any]:
    data = decode_document(raw, what)
    if not isinstance(data, dict):
        raise InvalidManifestError(f"invalid {what}: expected a JSON object")
    return data


def _require(cond: bool, what: str, problem: str) -> None:
    if not cond:
        raise InvalidManifestError(f"invalid {what}: {problem}")


def _str_map(value: Any, what: str, field_name: str) -> dict[str, str]:
    if value is None:
        return {}
    _require(
        isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()),
        what,
        f"{field_name} must be an object of strings",
    )
    return dict(value)


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: Digest
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)
    platform: Platform | None = None
    urls: tuple[str, ...] = ()
    artifact_type: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any, what: str = "descriptor") -> Descriptor:
        validate_descriptor(data, strict=False, what=what)
        media_type = data.get("mediaType")
        _require(isinstance(media_type, str) and bool(media_type), what, "mediaType must be a string")
        size = data.get("size")
        _require(isinstance(size, int) and not isinstance(size, bool) and size >= 0, what,
                 "size must be a non-negative integer")
        digest_text = data.get("digest")
        _require(isinstance(digest_text, str), what, "digest must be a string")
        try:
            digest = Digest.parse(digest_text)
        except InvalidDigestError as exc:
            raise InvalidManifestError(f"invalid {what}: {exc.message}") from None
        platform = None
        if data.get("platform") is not None:
            try:
                platform = Platform.from_json(data["platform"])
            except InvalidPlatformError as exc:
                raise InvalidManifestError(f"invalid {what}: {exc.message}") from None
        urls = data.get("urls") or []
        _require(isinstance(urls, list) and all(isinstance(u, str) for u in urls), what,
                 "urls must be a list of strings")
        artifact_type = data.get("artifactType")
        _require(artifact_type is None or isinstance(artifact_type, str), what, "artifactType must be a string")
        known = {"mediaType", "size", "digest", "platform", "urls", "annotations", "artifactType"}
        return cls(
            media_type=media_type,
            digest=digest,
            size=size,
            annotations=_str_map(data.get("annotations"), what, "annotations"),
            platform=platform,
            urls=tuple(urls),
            artifact_type=artifact_type,
            extra={k: v for k, v in data.items() if k not in known},
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": str(self.digest), "size": self.size}
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            out["platform"] = self.platform.to_json()
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        out.update(self.extra)
        return out

    def with_annotations(self, annotations: Mapping[str, str]) -> Descriptor:
        return Descriptor(self.media_type, self.digest, self.size, dict(annotations), self.platform,
                          self.urls, self.artifact_type, self.extra)

    @classmethod
    def for_bytes(cls, media_type: str, data: bytes) -> Descriptor:
        return cls(media_type, Digest.from_bytes(data), len(data))


def _envelope(raw: bytes, what: str, media_type: str | None, default: str,
              allowed: frozenset[str]) -> tuple[dict[str, Any], str]:
    """The checks a manifest and an index share: size cap, JSON object, schemaVersion 2, media type."""
    _require(len(raw) <= MAX_MANIFEST_SIZE, what, f"larger than {MAX_MANIFEST_SIZE} bytes")
    data = decode_json(raw, what)
    _require(data.get("schemaVersion") == 2, what, "schemaVersion must be 2")
    declared = data.get("mediaType")
    _require(declared is None or isinstance(declared, str), what, "mediaType must be a string")
    kind = declared or media_type or default
    _require(kind in allowed, what, f"unexpected mediaType {kind!r}")
    return data, kind


@dataclass(frozen=True, slots=True)
class Manifest:
    """An image manifest (OCI or Docker schema2)."""

    raw: bytes
    data: Mapping[str, Any]
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: Mapping[str, str]
    subject: Descriptor | None = None

    @classmethod
    def parse(cls, raw: bytes, media_type: str | None = None) -> Manifest:
        data, kind = _envelope(raw, "manifest", media_type, mt.OCI_MANIFEST, mt.MANIFEST_TYPES)
        _require(media_type is None or data.get("mediaType") is None or media_type == data.get("mediaType")
                 or media_type not in mt.MANIFEST_TYPES, "manifest",
                 f"mediaType {data.get('mediaType')!r} does not match {media_type!r}")
        validate_object(kind, data, strict=False, what="manifest")
        config = Descriptor.from_json(data.get("config"), "manifest config descriptor")
        layers_data = data.get("layers")
        _require(isinstance(layers_data, list), "manifest", "layers must be a list")
        assert isinstance(layers_data, list)
        layers = tuple(Descriptor.from_json(item, "manifest layer descriptor") for item in layers_data)
        subject = Descriptor.from_json(data["subject"], "subject") if data.get("subject") else None
        return cls(raw, data, kind, config, layers, _str_map(data.get("annotations"), "manifest",
                                                             "annotations"), subject)

    @classmethod
    def build(
        cls,
        config: Descriptor,
        layers: Sequence[Descriptor],
        *,
        media_type: str = mt.OCI_MANIFEST,
        annotations: Mapping[str, str] | None = None,
    ) -> Manifest:
        obj: dict[str, Any] = {"schemaVersion": 2, "mediaType": media_type, "config": config.to_json(),
                               "layers": [layer.to_json() for layer in layers]}
        if annotations:
            obj["annotations"] = dict(annotations)
        return cls.parse(canonical_json(obj), media_type)

    @property
    def digest(self) -> Digest:
        return Digest.from_bytes(self.raw)

    def descriptor(self, annotations: Mapping[str, str] | None = None) -> Descriptor:
        return Descriptor(self.media_type, self.digest, len(self.raw), dict(annotations or {}))

    @property
    def is_docker(self) -> bool:
        return self.media_type == mt.DOCKER_MANIFEST


@dataclass(frozen=True, slots=True)
class Index:
    """An image index (OCI) or manifest list (Docker)."""

    raw: bytes
    data: Mapping[str, Any]
    media_type: str
    manifests: tuple[Descriptor, ...]
    annotations: Mapping[str, str]

    @classmethod
    def parse(cls, raw: bytes, media_type: str | None = None) -> Index:
        data, kind = _envelope(raw, "index", media_type, mt.OCI_INDEX, mt.INDEX_TYPES)
        validate_object(kind, data, strict=False, what="index")
        items = data.get("manifests")
        _require(isinstance(items, list), "index", "manifests must be a list")
        assert isinstance(items, list)
        manifests = tuple(Descriptor.from_json(item, "index manifest descriptor") for item in items)
        return cls(raw, data, kind, manifests, _str_map(data.get("annotations"), "index", "annotations"))

    @classmethod
    def build(
        cls, manifests: Sequence[Descriptor], *, media_type: str = mt.OCI_INDEX,
        annotations: Mapping[str, str] | None = None,
    ) -> Index:
        obj: dict[str, Any] = {"schemaVersion": 2, "mediaType": media_type,
                               "manifests": [m.to_json() for m in manifests]}
        if annotations:
            obj["annotations"] = dict(annotations)
        return cls.parse(canonical_json(obj), media_type)

    @property
    def digest(self) -> Digest:
        return Digest.from_bytes(self.raw)

    def select(self, platform: Platform) -> Descriptor | None:
        """The manifest for ``platform`` (best match), or None."""
        candidates = [(d.platform, d) for d in self.manifests
                      if d.platform is not None and d.media_type in mt.MANIFEST_TYPES]
        return platform.best_match(candidates)


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    created: str | None = None
    created_by: str | None = None
    author: str | None = None
    comment: str | None = None
    empty_layer: bool = False

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.created is not None:
            out["created"] = self.created
        if self.created_by is not None:
            out["created_by"] = self.created_by
        if self.author is not None:
            out["author"] = self.author
        if self.comment is not None:
            out["comment"] = self.comment
        if self.empty_layer:
            out["empty_layer"] = True
        return out


@dataclass(frozen=True, slots=True)
class ImageConfig:
    """An image configuration (the document whose digest is the image id)."""

    raw: bytes
    data: Mapping[str, Any]

    @classmethod
    def parse(cls, raw: bytes) -> ImageConfig:
        _require(len(raw) <= MAX_CONFIG_SIZE, "image config", f"larger than {MAX_CONFIG_SIZE} bytes")
        data = decode_json(raw, "image config")
        what = "image config"
        validate_object(mt.OCI_CONFIG, data, strict=False, what=what)
        _require(isinstance(data.get("architecture"), str), what, "architecture must be a string")
        _require(isinstance(data.get("os"), str), what, "os must be a string")
        rootfs = data.get("rootfs")
        _require(isinstance(rootfs, dict), what, "rootfs must be an object")
        assert isinstance(rootfs, dict)
        _require(rootfs.get("type") == "layers", what, "rootfs.type must be 'layers'")
        diff_ids = rootfs.get("diff_ids") or []  # absent: an image without layers
        _require(isinstance(diff_ids, list), what, "rootfs.diff_ids must be a list")
        assert isinstance(diff_ids, list)
        for item in diff_ids:
            _require(isinstance(item, str) and Digest.is_valid(item), what, f"invalid diff_id {item!r}")
        config = data.get("config")
        _require(config is None or isinstance(config, dict), what, "config must be an object")
        if isinstance(config, dict):
            _validate_run_config(config, what)
        history = data.get("history")
        _require(history is None or (isinstance(history, list) and all(isinstance(h, dict) for h in history)),
                 what, "history must be a list of objects")
        created = data.get("created")
        _require(created is None or isinstance(created, str), what, "created must be a string")
        return cls(raw, data)

    @classmethod
    def build(cls, data: Mapping[str, Any]) -> ImageConfig:
        return cls.parse(canonical_json(dict(data)))

    @property
    def digest(self) -> Digest:
        return Digest.from_bytes(self.raw)

    @property
    def id(self) -> Digest:
        return self.digest

    @property
    def config(self) -> Mapping[str, Any]:
        value = self.data.get("config")
        return value if isinstance(value, dict) else {}

    @property
    def diff_ids(self) -> tuple[Digest, ...]:
        return tuple(Digest.parse(d) for d in self.data["rootfs"].get("diff_ids") or ())

    @property
    def history(self) -> tuple[HistoryEntry, ...]:
        out = []
        for item in self.data.get("history") or []:
            out.append(HistoryEntry(
                created=_opt_str(item.get("created")), created_by=_opt_str(item.get("created_by")),
                author=_opt_str(item.get("author")), comment=_opt_str(item.get("comment")),
                empty_layer=bool(item.get("empty_layer", False)),
            ))
        return tuple(out)

    @property
    def created(self) -> str | None:
        return _opt_str(self.data.get("created"))

    @property
    def author(self) -> str | None:
        return _opt_str(self.data.get("author"))

    @property
    def platform(self) -> Platform:
        return Platform.from_json({k: v for k, v in self.data.items()
                                   if k in ("os", "architecture", "variant", "os.version", "os.features")})

    @property
    def env(self) -> tuple[str, ...]:
        return tuple(self.config.get("Env") or ())

    @property
    def entrypoint(self) -> tuple[str, ...] | None:
        value = self.config.get("Entrypoint")
        return tuple(value) if value is not None else None

    @property
    def cmd(self) -> tuple[str, ...] | None:
        value = self.config.get("Cmd")
        return tuple(value) if value is not None else None

    @property
    def working_dir(self) -> str:
        return str(self.config.get("WorkingDir") or "")

    @property
    def user(self) -> str:
        return str(self.config.get("User") or "")

    @property
    def exposed_ports(self) -> tuple[str, ...]:
        return tuple((self.config.get("ExposedPorts") or {}).keys())

    @property
    def volumes(self) -> tuple[str, ...]:
        return tuple((self.config.get("Volumes") or {}).keys())

    @property
    def labels(self) -> Mapping[str, str]:
        return dict(self.config.get("Labels") or {})

    @property
    def stop_signal(self) -> str | None:
        return _opt_str(self.config.get("StopSignal"))

    @property
    def healthcheck(self) -> Mapping[str, Any] | None:
        value = self.config.get("Healthcheck")
        return value if isinstance(value, dict) else None

    def with_config(self, **changes: Any) -> ImageConfig:
        """A new config with fields of ``config`` replaced (None removes a field)."""
        data = json.loads(self.raw)
        run_config = dict(data.get("config") or {})
        for key, value in changes.items():
            if value is None:
                run_config.pop(key, None)
            else:
                run_config[key] = value
        data["config"] = run_config
        return ImageConfig.build(data)


_RUN_CONFIG_LISTS = ("Env", "Entrypoint", "Cmd", "Shell", "OnBuild")
_RUN_CONFIG_MAPS = ("ExposedPorts", "Volumes", "Labels")


def _validate_run_config(config: Mapping[str, Any], what: str) -> None:
    for key in _RUN_CONFIG_LISTS:
        value = config.get(key)
        _require(value is None or (isinstance(value, list) and all(isinstance(v, str) for v in value)),
                 what, f"config.{key} must be a list of strings")
    for entry in config.get("Env") or []:
        _require("=" in entry and not entry.startswith("="), what, f"config.Env entry {entry!r} is not KEY=VALUE")
    for key in _RUN_CONFIG_MAPS:
        value = config.get(key)
        _require(value is None or isinstance(value, dict), what, f"config.{key} must be an object")
    labels = config.get("Labels") or {}
    _require(all(isinstance(v, str) for v in labels.values()), what, "config.Labels values must be strings")
    for key in ("User", "WorkingDir", "StopSignal"):
        value = config.get(key)
        _require(value is None or isinstance(value, str), what, f"config.{key} must be a string")


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def parse_document(raw: bytes, media_type: str | None = None) -> Manifest | Index:
    """Parse a manifest or an index, deciding by the declared or given media type."""
    data = decode_json(raw, "manifest")
    declared = data.get("mediaType") if isinstance(data.get("mediaType"), str) else None
    kind = declared or media_type
    if kind in mt.INDEX_TYPES or (kind is None and "manifests" in data):
        return Index.parse(raw, kind)
    return Manifest.parse(raw, kind)


