"""Where a registry's API lives and over which scheme (pure).

docker's rules: ``docker.io`` (and its legacy names) is served from ``registry-1.docker.io``; loopback
registries (localhost, 127.0.0.0/8, ::1) speak plain HTTP; any other registry needs HTTPS unless the
user listed it as insecure (then HTTPS without verification is tried first, plain HTTP after).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"  # the key docker login writes for Hub
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"})


def normalize_registry(name: str) -> str:
    """``https://index.docker.io/v1/`` -> ``docker.io``; ``HTTP://Host:5000/`` -> ``host:5000``."""
    text = name.strip()
    for prefix in ("https://", "http://"):
        if text.lower().startswith(prefix):
            text = text[len(prefix):]
    text = text.split("/", 1)[0].lower()
    return DOCKER_HUB if text in _HUB_ALIASES else text


def api_host(registry: str) -> str:
    registry = normalize_registry(registry)
    return DOCKER_HUB_API if registry == DOCKER_HUB else registry


def host_only(registry: str) -> str:
    """The host part of ``host[:port]`` (IPv6 brackets removed)."""
    if registry.startswith("["):
        return registry[1:].split("]", 1)[0]
    return registry.rsplit(":", 1)[0] if registry.count(":") == 1 else registry


def is_loopback(registry: str) -> bool:
    host = host_only(normalize_registry(registry))
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class Endpoint:
    """How to reach one registry: ``base`` is ``scheme://host``; ``fallback`` a plain-HTTP retry."""

    registry: str  # as the user names it: docker.io, localhost:5000
    host: str  # the API host
    scheme: str
    verify_tls: bool = True
    fallback_http: bool = False

    @property
    def base(self) -> str:
        return f"{self.scheme}://{self.host}"

    def as_http(self) -> Endpoint:
        return Endpoint(self.registry, self.host, "http", False, False)


def endpoint_for(registry: str, insecure: Iterable[str] = (), *, force_insecure: bool = False) -> Endpoint:
    name = normalize_registry(registry)
    host = api_host(name)
    if is_loopback(name):
        return Endpoint(name, host, "http", False)
    listed = {normalize_registry(r) for r in insecure}
    if force_insecure or name in listed or host_only(name) in listed:
        return Endpoint(name, host, "https", False, fallback_http=True)
    return Endpoint(name, host, "https", True)


def auth_key(registry: str) -> str:
    """The key under ``auths`` docker uses for a registry."""
    name = normalize_registry(registry)
    return DOCKER_HUB_AUTH_KEY if name == DOCKER_HUB else name


def hub_repository(repository: str, registry: str) -> str:
    """Docker Hub's ``library/`` prefix for official images."""
    if normalize_registry(registry) == DOCKER_HUB and "/" not in repository:
        return "library/" + repository
    return repository
