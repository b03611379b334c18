"""Write a container's /etc/hosts, /etc/hostname and /etc/resolv.conf into a host directory.

The runtime bind-mounts the three files into the container.  Files are rewritten in place (same
inode), so a bind-mounted /etc/hosts sees later updates (a peer joining or leaving the network).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from engine.errors import NetworkSetupError, os_error_message
from engine.net.hosts import HostEntry, render_hostname, render_hosts, render_resolv_conf

NetworkMode = Literal["bridge", "host", "none"]
HOST_RESOLV_CONF = Path("/etc/resolv.conf")
HOST_HOSTS = Path("/etc/hosts")


@dataclass(frozen=True)
class EtcFiles:
    """Host paths to bind-mount at /etc/hosts, /etc/hostname and /etc/resolv.conf."""

    hosts: Path
    hostname: Path
    resolv_conf: Path

    def mounts(self) -> list[tuple[Path, str]]:
        """``[(host_path, container_path), ...]`` for the runtime spec's bind mounts."""
        return [
            (self.hosts, "/etc/hosts"),
            (self.hostname, "/etc/hostname"),
            (self.resolv_conf, "/etc/resolv.conf"),
        ]


def write_in_place(path: Path, text: str) -> None:
    """Replace ``path``'s content without changing its inode (a bind mount keeps seeing it)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        raise NetworkSetupError(os_error_message(exc, f"cannot write {path}")) from exc


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def write_etc_files(
    etc_dir: Path, *, hostname: str, mode: NetworkMode = "bridge", ip: str | None = None,
    name: str | None = None, peers: Iterable[HostEntry] = (), dns: Iterable[str] = (),
    extra_hosts: Iterable[HostEntry] = (), host_resolv_conf: Path = HOST_RESOLV_CONF,
) -> EtcFiles:
    """Write the three files for ``mode`` and return their paths.

    * bridge: own ip + peers by name; resolv.conf without the host's loopback nameservers.
    * host:   the host's /etc/hosts plus the hostname; the host's resolv.conf unchanged.
    * none:   localhost only (hostname on 127.0.0.1); no nameservers.
    """
    try:
        etc_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NetworkSetupError(os_error_message(exc, f"cannot create {etc_dir}")) from exc
    files = EtcFiles(etc_dir / "hosts", etc_dir / "hostname", etc_dir / "resolv.conf")
    host_resolv = _read(host_resolv_conf)
    if mode == "host":
        hosts = _read(HOST_HOSTS)
        hosts = (hosts if hosts.endswith("\n") or not hosts else hosts + "\n") + "".join(
            e.line() + "\n" for e in extra_hosts
        )
        resolv = render_resolv_conf(host_resolv, nameservers=dns, keep_loopback=True)
    elif mode == "none":
        hosts = render_hosts(hostname, None, name=name, extra=extra_hosts)
        resolv = render_resolv_conf("", nameservers=dns)
    else:
        hosts = render_hosts(hostname, ip, name=name, peers=peers, extra=extra_hosts)
        resolv = render_resolv_conf(host_resolv, nameservers=dns)
    write_in_place(files.hosts, hosts)
    write_in_place(files.hostname, render_hostname(hostname))
    write_in_place(files.resolv_conf, resolv)
    return files
