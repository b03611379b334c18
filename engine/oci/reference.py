"""Image references with docker's normalisation.

``busybox`` -> ``docker.io/library/busybox:latest``; ``localhost:5000/a/b@sha256:...`` keeps its
registry; a name carries a tag, a digest or both (``name:tag@digest``, as docker records it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from engine.errors import InvalidDigestError, InvalidReferenceError
from engine.oci.digest import Digest

DEFAULT_REGISTRY = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
DEFAULT_TAG = "latest"
_LEGACY_HUB = ("index.docker.io", "registry-1.docker.io")
MAX_NAME_LENGTH = 255

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*")
_DOMAIN_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(
    rf"(?:{_DOMAIN_LABEL}(?:\.{_DOMAIN_LABEL})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
)
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")  # docker's \w is ASCII only
_IDENTIFIER = re.compile(r"[a-f0-9]{64}")
_LOOPBACK = re.compile(r"^(localhost|127(?:\.\d{1,3}){3}|\[::1\])(?::\d+)?$")


@dataclass(frozen=True, slots=True)
class Reference:
    registry: str
    repository: str
    tag: str | None = None
    digest: Digest | None = None

    @classmethod
    def parse(cls, value: str, *, default_tag: bool = True) -> Reference:
        """Parse and normalise a reference; a missing tag and digest becomes ``:latest``."""
        if not isinstance(value, str) or not value:
            raise InvalidReferenceError("invalid reference: empty name")
        if _IDENTIFIER.fullmatch(value):
            raise InvalidReferenceError(
                f"invalid reference {value!r}: a 64-character hex string is an image id, not a repository name"
            )
        text = value
        digest: Digest | None = None
        if "@" in text:
            text, _, digest_text = text.partition("@")
            try:
                digest = Digest.parse(digest_text)
            except InvalidDigestError as exc:
                raise InvalidReferenceError(f"invalid reference {value!r}: {exc.message}") from None
        tag: str | None = None
        slash = text.rfind("/")
        colon = text.rfind(":")
        if colon > slash:
            text, tag = text[:colon], text[colon + 1 :]
            if not _TAG.fullmatch(tag):
                raise InvalidReferenceError(f"invalid reference {value!r}: invalid tag {tag!r}")
        if not text:
            raise InvalidReferenceError(f"invalid reference {value!r}: empty repository name")
        registry, repository = _split_registry(text)
        if registry in _LEGACY_HUB:
            registry = DEFAULT_REGISTRY
        if not _DOMAIN.fullmatch(registry):
            raise InvalidReferenceError(f"invalid reference {value!r}: invalid registry {registry!r}")
        if repository.lower() != repository:
            raise InvalidReferenceError(f"invalid reference {value!r}: repository name must be lowercase")
        if registry == DEFAULT_REGISTRY and "/" not in repository:
            repository = "library/" + repository
        for component in repository.split("/"):
            if not _COMPONENT.fullmatch(component):
                raise InvalidReferenceError(
                    f"invalid reference {value!r}: invalid repository name component {component!r}"
                )
        if len(repository) + len(registry) + 1 > MAX_NAME_LENGTH:
            raise InvalidReferenceError(f"invalid reference {value[:60]!r}...: name longer than 255 characters")
        if tag is None and digest is None and default_tag:
            tag = DEFAULT_TAG
        return cls(registry, repository, tag, digest)

    @classmethod
    def is_valid(cls, value: str) -> bool:
        try:
            cls.parse(value)
        except InvalidReferenceError:
            return False
        return True

    @property
    def name(self) -> str:
        """``registry/repository`` without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def familiar_name(self) -> str:
        """The short form docker prints: ``busybox``, ``user/app``, ``localhost:5000/app``."""
        if self.registry == DEFAULT_REGISTRY:
            repo = self.repository
            return repo[len("library/") :] if repo.startswith("library/") else repo
        return self.name

    @property
    def familiar(self) -> str:
        return self.familiar_name + self._suffix()

    @property
    def api_registry(self) -> str:
        """The host the registry API is served from (Docker Hub's differs from its name)."""
        return DOCKER_HUB_API if self.registry == DEFAULT_REGISTRY else self.registry

    @property
    def is_loopback(self) -> bool:
        return bool(_LOOPBACK.match(self.registry))

    @property
    def is_localhost(self) -> bool:
        """Same as ``is_loopback`` (the name API.md uses)."""
        return self.is_loopback

    @property
    def identifier(self) -> str:
        """What to ask the registry for: the digest when pinned, else the tag."""
        if self.digest is not None:
            return str(self.digest)
        return self.tag or DEFAULT_TAG

    def with_tag(self, tag: str) -> Reference:
        if not _TAG.fullmatch(tag):
            raise InvalidReferenceError(f"invalid tag {tag!r}")
        return replace(self, tag=tag, digest=None)

    def with_digest(self, digest: Digest) -> Reference:
        return replace(self, digest=digest)

    def without_digest(self) -> Reference:
        return replace(self, digest=None, tag=self.tag or DEFAULT_TAG)

    def _suffix(self) -> str:
        out = f":{self.tag}" if self.tag else ""
        if self.digest is not None:
            out += f"@{self.digest}"
        return out

    def __str__(self) -> str:
        return self.name + self._suffix()


def _split_registry(name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    if not sep:
        return DEFAULT_REGISTRY, name
    if ("." in first or ":" in first or first == "localhost") or first.lower() != first:
        return first, rest
    return DEFAULT_REGISTRY, name
