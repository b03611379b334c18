"""Content digests: ``sha256:<64 hex>`` (and sha512), validated before they touch a path or a URL."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from engine.errors import InvalidDigestError

_HEX_LENGTHS = {"sha256": 64, "sha512": 128}
_HEX = re.compile(r"[0-9a-f]+")


@dataclass(frozen=True, order=True, slots=True)
class Digest:
    """A validated content digest. ``str(d)`` is ``algorithm:hex``."""

    algorithm: str
    hex: str

    def __post_init__(self) -> None:
        expected = _HEX_LENGTHS.get(self.algorithm)
        if expected is None:
            raise InvalidDigestError(f"unsupported digest algorithm {self.algorithm!r} (use sha256 or sha512)")
        if len(self.hex) != expected or not _HEX.fullmatch(self.hex):
            raise InvalidDigestError(
                f"invalid {self.algorithm} digest: expected {expected} lower-case hex characters"
            )

    @classmethod
    def parse(cls, value: str) -> Digest:
        if not isinstance(value, str):
            raise InvalidDigestError(f"invalid digest {value!r}: not a string")
        algorithm, sep, encoded = value.partition(":")
        if not sep or not algorithm or not encoded:
            raise InvalidDigestError(f"invalid digest {value[:100]!r}: expected algorithm:hex")
        try:
            return cls(algorithm, encoded)
        except InvalidDigestError as exc:
            raise InvalidDigestError(f"invalid digest {value[:100]!r}: {exc.message}") from None

    @classmethod
    def from_bytes(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    @classmethod
    def is_valid(cls, value: str) -> bool:
        try:
            cls.parse(value)
        except InvalidDigestError:
            return False
        return True

    @property
    def encoded(self) -> str:
        return self.hex

    @property
    def short(self) -> str:
        """The 12-character id docker shows."""
        return self.hex[:12]

    def hasher(self) -> Any:
        return hashlib.new(self.algorithm)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


class DigestingWriter:
    """Hashes bytes as they pass; used to verify streams without a second read."""

    def __init__(self, algorithm: str = "sha256") -> None:
        self.algorithm = algorithm
        self._hash = hashlib.new(algorithm)
        self.size = 0

    def update(self, chunk: bytes | memoryview) -> None:
        self._hash.update(chunk)
        self.size += len(chunk)

    def digest(self) -> Digest:
        return Digest(self.algorithm, self._hash.hexdigest())
