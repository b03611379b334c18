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
    # What uname -m says on 32-bit arm hosts.
    "armv5tel": ("arm", "v5"),
    "armv6l": ("arm", "v6"),
    "armv7l": ("arm", "v7"),
    "armv8l": ("arm", "v8"),
}
_ARM64_VARIANT = re.compile(r"v(8|9)(?:\.(\d))?")

T = TypeVar("T")


def _normalise_arch(arch: str, variant: str | None) -> tuple[str, str | None]:
    arch, default_variant = _ARCH_ALIASES.get(arch, (arch, None))
    variant = variant or default_variant
    if arch == "arm64" and variant in ("8", "v8", "v8.0"):
        variant = None  # arm64 without a variant means v8
    elif arch == "arm64" and variant in ("9", "v9.0"):
        variant = "v9"
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
        """The platform object of a descriptor or config, exactly as written (``to_json`` gives it back).

        Values are not normalised here, so re-serialising never changes a document; ``matches`` and
        ``best_match`` compare normalised forms.
        """
        if not isinstance(data, dict) or not isinstance(data.get("os"), str) or not isinstance(
            data.get("architecture"), str
        ):
            raise InvalidPlatformError("invalid platform object: os and architecture are required strings")
        variant = data.get("variant")
        os_version = data.get("os.version")
        features = data.get("os.features")
        if variant is not None and not isinstance(variant, str):
            raise InvalidPlatformError("invalid platform object: variant must be a string")
        if os_version is not None and not isinstance(os_version, str):
            raise InvalidPlatformError("invalid platform object: os.version must be a string")
        if features is not None and not (
            isinstance(features, list) and all(isinstance(f, str) for f in features)
        ):
            raise InvalidPlatformError("invalid platform object: os.features must be a list of strings")
        return cls(data["os"], data["architecture"], variant or None, os_version or None, tuple(features or ()))

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

    def normalized(self) -> Platform:
        """The canonical spelling: ``x86_64`` -> ``amd64``, ``arm64/v8`` -> ``arm64``, ``arm`` -> ``arm/v7``."""
        arch, variant = _normalise_arch(self.architecture.lower(), (self.variant or "").lower() or None)
        return Platform(self.os.lower(), arch, variant, self.os_version, self.os_features)

    def compatible(self) -> tuple[Platform, ...]:
        """Normalised platforms whose images run where ``self`` is wanted, best first.

        The order containerd's ``platforms.Only`` uses: the platform itself, then lower variants of
        the same architecture (arm/v8 > v7 > v6 > v5, amd64/v3 > v2 > v1, arm64/v9.x > v8.y), then
        the 32-bit relative (amd64 runs 386; arm64 runs arm/v8 and below).
        """
        want = self.normalized()
        os_name, arch, variant = want.os, want.architecture, want.variant
        out = [Platform(os_name, arch, variant)]
        if arch == "amd64":
            level = _variant_number(variant or "v1")
            out += [Platform(os_name, arch, f"v{n}" if n > 1 else None) for n in range(level - 1, 0, -1)]
            out.append(Platform(os_name, "386"))
        elif arch == "arm":
            level = _variant_number(variant or "")
            out += [Platform(os_name, arch, f"v{n}") for n in range(level - 1, 4, -1)]
        elif arch == "arm64":
            parsed = _ARM64_VARIANT.fullmatch(variant or "v8")
            if parsed:
                major, minor = int(parsed.group(1)), int(parsed.group(2) or 0)
                out = []
                if major == 9:
                    out += [Platform(os_name, arch, f"v9.{m}" if m else "v9") for m in range(minor, -1, -1)]
                    minor = min(minor + 5, 9)
                out += [Platform(os_name, arch, f"v8.{m}" if m else None) for m in range(minor, -1, -1)]
                out += Platform(os_name, "arm", "v8").compatible()
        return tuple(out)

    def matches(self, candidate: Platform) -> bool:
        """Can an image built for ``candidate`` run where ``self`` is wanted? (normalised comparison)"""
        return self._rank(candidate) is not None

    def _rank(self, candidate: Platform) -> int | None:
        # Position in compatible(): 0 is an exact fit; None means it does not run here.
        got = candidate.normalized()
        key = (got.os, got.architecture, got.variant)
        for rank, fit in enumerate(self.compatible()):
            if (fit.os, fit.architecture, fit.variant) == key:
                return rank
        return None

    def best_match(self, candidates: Sequence[tuple[Platform, T]]) -> T | None:
        """The value whose platform fits best (see ``compatible``; ties keep input order), or None."""
        fitting = []
        for index, (candidate, value) in enumerate(candidates):
            rank = self._rank(candidate)
            if rank is not None:
                fitting.append((rank, index, value))
        if not fitting:
            return None
        fitting.sort(key=lambda item: (item[0], item[1]))
        return fitting[0][2]

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def _variant_number(variant: str) -> int:
    digits = variant[1:] if variant.startswith("v") else variant
    return int(digits) if digits.isdigit() else 0


def format_platforms(platforms: Iterable[Platform]) -> str:
    return ", ".join(str(p) for p in platforms)
