"""Platforms (os/arch/variant) and the matching rules docker and containerd use for manifest lists."""

from __future__ import annotations

import platform as _platform
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from engine.errors import InvalidPlatformError

_COMPONENT = re.compile(r"[a-z0-9_.-]+")

# Normalisation as containerd's platforms package does it.
_ARCH_ALIASES = {
    "x86_64": ("amd64", None),
    "x86-64": ("amd64", None),
    "amd64": ("amd64", None),
    "i386": ("386", None),
    "i686": ("386", None),
    "aarch64": ("arm64", None),
    "arm64": ("arm64", None),
    "armhf": ("arm", "v7"),
    "armel": ("arm", "v6"),
    "arm": ("arm", None),
}

T = TypeVar("T")


def _normalise_arch(arch: str, variant: str | None) -> tuple[str, str | None]:
    arch, default_variant = _ARCH_ALIASES.get(arch, (arch, None))
    variant = variant or default_variant
    if arch == "arm64" and variant in ("8", "v8"):
        variant = None  # arm64 without a variant means v8
    elif arch == "arm":
        if variant is None:
            variant = "v7"
        elif variant in ("5", "6", "7", "8"):
            variant = "v" + variant
    elif arch == "amd64" and variant == "v1":
        variant = None
    return arch, variant


@dataclass(frozen=True, slots=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None
    os_version: str | None = None
    os_features: tuple[str, ...] = field(default=())

    @classmethod
    def parse(cls, spec: str) -> Platform:
        """Parse ``os/arch[/variant]`` (``linux/arm64/v8``) or a bare ``arch``; normalised."""
        parts = spec.strip().lower().split("/")
        if not spec.strip() or len(parts) > 3 or any(not _COMPONENT.fullmatch(p) for p in parts):
            raise InvalidPlatformError(f"invalid platform {spec!r}: expected os/arch[/variant]")
        if len(parts) == 1:
            if parts[0] in ("linux", "windows", "darwin", "freebsd"):
                os_name, arch = parts[0], Platform.host().architecture
            else:
                os_name, arch = "linux", parts[0]
            variant = None
        else:
            os_name, arch = parts[0], parts[1]
            variant = parts[2] if len(parts) == 3 else None
        arch, variant = _normalise_arch(arch, variant)
        return cls(os_name, arch, variant)

    @classmethod
    def from_json(cls, data: Any) -> Platform:
        if not isinstance(data, dict) or not isinstance(data.get("os"), str) or not isinstance(
            data.get("architecture"), str
        ):
            raise InvalidPlatformError("invalid platform object: os and architecture are required strings")
        variant = data.get("variant")
        features = data.get("os.features") or ()
        arch, variant = _normalise_arch(data["architecture"], variant if isinstance(variant, str) else None)
        return cls(
            data["os"],
            arch,
            variant,
            data.get("os.version") if isinstance(data.get("os.version"), str) else None,
            tuple(str(f) for f in features) if isinstance(features, list) else (),
        )

    @classmethod
    def host(cls) -> Platform:
        arch, variant = _normalise_arch(_platform.machine().lower(), None)
        return cls("linux", arch, variant)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            out["variant"] = self.variant
        if self.os_version:
            out["os.version"] = self.os_version
        if self.os_features:
            out["os.features"] = list(self.os_features)
        return out

    def matches(self, candidate: Platform) -> bool:
        """Can an image built for ``candidate`` run where ``self`` is wanted?"""
        if self.os != candidate.os or self.architecture != candidate.architecture:
            return False
        if self.variant is None or candidate.variant is None:
            return self.variant == candidate.variant or self.architecture != "arm"
        if self.architecture == "arm":
            # A v7 host runs v6 and v5 images too.
            return candidate.variant <= self.variant
        return self.variant == candidate.variant

    def _rank(self, candidate: Platform) -> int:
        # Lower is better: an exact variant first, then the closest lower arm variant.
        if candidate.variant == self.variant:
            return 0
        if self.architecture == "arm" and candidate.variant and self.variant:
            return 1 + (int(self.variant[1:] or 0) - int(candidate.variant[1:] or 0))
        return 10

    def best_match(self, candidates: Sequence[tuple[Platform, T]]) -> T | None:
        """The value whose platform fits best, or None when none fits."""
        fitting = [(self._rank(p), i, v) for i, (p, v) in enumerate(candidates) if self.matches(p)]
        if not fitting:
            return None
        fitting.sort(key=lambda item: (item[0], item[1]))
        return fitting[0][2]

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def format_platforms(platforms: Iterable[Platform]) -> str:
    return ", ".join(str(p) for p in platforms)
