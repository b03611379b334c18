"""Render a container's /etc/hosts, /etc/hostname and /etc/resolv.conf (pure, no I/O)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

LOCALHOST_LINES = (
    "127.0.0.1\tlocalhost",
    "::1\tlocalhost ip6-localhost ip6-loopback",
    "fe00::0\tip6-localnet",
    "ff00::0\tip6-mcastprefix",
    "ff02::1\tip6-allnodes",
    "ff02::2\tip6-allrouters",
)


@dataclass(frozen=True)
class HostEntry:
    """One /etc/hosts line: an address and its names (the first is the canonical one)."""

    ip: str
    names: tuple[str, ...]

    def line(self) -> str:
        return f"{self.ip}\t{' '.join(self.names)}"


def _names(*candidates: str | None) -> tuple[str, ...]:
    out: list[str] = []
    for name in candidates:
        if name and name not in out:
            out.append(name)
    return tuple(out)


def peer_entry(ip: str, name: str | None, hostname: str | None, container_id: str | None = None) -> HostEntry:
    """The line a peer container contributes: its name, its hostname and its short id."""
    short = container_id[:12] if container_id else None
    return HostEntry(ip, _names(name, hostname, short))


def render_hosts(
    hostname: str, ip: str | None = None, *, name: str | None = None, peers: Iterable[HostEntry] = (),
    extra: Iterable[HostEntry] = (),
) -> str:
    """/etc/hosts: localhost lines, this container (``ip``: name and hostname), then the peers by name.

    With no ``ip`` (``--network none``) the hostname is an alias of 127.0.0.1 so it still resolves.
    ``extra`` is ``--add-host`` style entries, written last.
    """
    lines = list(LOCALHOST_LINES)
    if ip:
        lines.append(HostEntry(ip, _names(hostname, name)).line())
    else:
        lines[0] = f"127.0.0.1\tlocalhost {' '.join(_names(hostname, name))}"
    own = {hostname, name}
    for peer in sorted(peers, key=lambda p: (p.names, p.ip)):
        names = tuple(n for n in peer.names if n not in own)
        if names and peer.ip != ip:
            lines.append(HostEntry(peer.ip, names).line())
    lines.extend(e.line() for e in extra)
    return "\n".join(lines) + "\n"


def render_hostname(hostname: str) -> str:
    return hostname + "\n"


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def render_resolv_conf(
    host_resolv_conf: str, *, nameservers: Iterable[str] = (), keep_loopback: bool = False,
) -> str:
    """/etc/resolv.conf from the host's: keeps search/domain/options, drops loopback nameservers.

    A container cannot reach the host's 127.x or ::1 (systemd-resolved's 127.0.0.53, dnsmasq's
    127.0.0.1), so those lines go.  When nothing is left, the file has no nameserver at all (no public
    resolver is made up).  ``nameservers`` (``--dns``) replace the host's when given.
    ``keep_loopback`` is for ``--network host``, where the host's loopback is the container's.
    """
    explicit = [ns for ns in nameservers if ns]
    out: list[str] = []
    kept: list[str] = []
    for raw in host_resolv_conf.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        words = line.split()
        if words[0] == "nameserver":
            if len(words) >= 2 and not explicit and (keep_loopback or not _is_loopback(words[1])):
                kept.append(words[1])
            continue
        if words[0] in ("search", "domain", "options", "sortlist"):
            out.append(" ".join(words))
    servers = explicit or kept
    return "".join(f"{line}\n" for line in [*(f"nameserver {ns}" for ns in servers), *out])
