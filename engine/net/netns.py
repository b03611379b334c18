"""Named network namespaces and the veth pair that plugs one into the bridge (pyroute2).

A namespace is bind-mounted at ``/run/netns/<name>`` (``ip netns`` compatible) so it outlives the
process that made it; runc joins it through the runtime spec's
``linux.namespaces: [{"type": "network", "path": <path>}]``.
"""

from __future__ import annotations

import errno
import os
import socket
from typing import Any

from engine.errors import NetworkSetupError
from engine.net._netlink import iproute, netlink_error

NETNS_RUN_DIR = "/run/netns"


def netns_path(name: str) -> str:
    return os.path.join(NETNS_RUN_DIR, name)


def check_netns_name(name: str) -> str:
    if not name or "/" in name or name in (".", "..") or "\0" in name:
        raise NetworkSetupError(f"invalid network namespace name {name!r}")
    return name


def list_netns() -> list[str]:
    """Names under /run/netns (empty when the directory does not exist)."""
    try:
        return sorted(os.listdir(NETNS_RUN_DIR))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise netlink_error(exc, f"cannot list {NETNS_RUN_DIR}") from exc


def create_netns(name: str) -> str:
    """Create the named namespace and return its path; EEXIST becomes NetworkSetupError."""
    check_netns_name(name)
    try:
        from pyroute2 import netns
    except ImportError as exc:  # pragma: no cover - pyroute2 is a dependency
        raise NetworkSetupError("pyroute2 is not installed; bridge networking is unavailable") from exc
    if os.path.lexists(netns_path(name)):
        raise NetworkSetupError(f"network namespace {name} already exists")
    try:
        netns.create(name)
    except Exception as exc:
        raise netlink_error(exc, f"cannot create network namespace {name}") from exc
    return netns_path(name)


def remove_netns(name: str) -> bool:
    """Unmount and delete the named namespace; False when it did not exist.

    The kernel frees the namespace (and the veth end inside it, which takes the host end along) once
    no process is left in it.
    """
    check_netns_name(name)
    path = netns_path(name)
    if not os.path.lexists(path):
        return False
    try:
        from pyroute2 import netns

        netns.remove(name)
    except FileNotFoundError:
        return False
    except OSError as exc:
        if exc.errno == errno.EBUSY:
            raise NetworkSetupError(f"cannot remove network namespace {name}: it is busy") from exc
        raise netlink_error(exc, f"cannot remove network namespace {name}") from exc
    return True


def add_veth(host_ifname: str, netns_name: str, *, bridge_index: int, mac: str, ifname: str = "eth0") -> None:
    """One netlink request: a veth whose host end is enslaved to the bridge and up, and whose peer
    (``ifname``, MAC ``mac``) is created directly inside ``netns_name``.

    Creating the peer in place means a crash can never strand a peer in the host namespace.
    """
    with iproute(f"cannot create veth {host_ifname}") as ipr:
        ipr.link(
            "add", ifname=host_ifname, kind="veth", master=bridge_index, state="up",
            peer={"ifname": ifname, "address": mac, "net_ns_fd": netns_name},
        )


def configure_inside(netns_name: str, *, ip: str, prefixlen: int, gateway: str, ifname: str = "eth0") -> str:
    """Inside the namespace: ``ip/prefixlen`` on ``ifname``, it and ``lo`` up, default route via
    ``gateway``.  Returns the interface's MAC address.
    """
    with iproute(f"cannot configure network namespace {netns_name}", netns=netns_name) as ipr:
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            raise NetworkSetupError(f"network namespace {netns_name} has no interface {ifname}")
        index = found[0]
        lo = ipr.link_lookup(ifname="lo")
        if lo:
            ipr.link("set", index=lo[0], state="up")
        ipr.addr("add", index=index, address=ip, prefixlen=prefixlen)
        ipr.link("set", index=index, state="up")
        ipr.route("add", dst="default", gateway=gateway)
        link: Any = ipr.get_links(index)[0]
        return str(link.get("address"))


def interfaces_inside(netns_name: str) -> list[tuple[str, list[str]]]:
    """``[(ifname, [ipv4/prefix, ...]), ...]`` inside a namespace (diagnostics and tests)."""
    with iproute(f"cannot inspect network namespace {netns_name}", netns=netns_name) as ipr:
        out: list[tuple[str, list[str]]] = []
        for link in ipr.get_links():
            addrs = [
                f"{a.get('address')}/{a['prefixlen']}"
                for a in ipr.get_addr(index=link["index"], family=socket.AF_INET)
            ]
            out.append((str(link.get("ifname")), addrs))
        return out


def link_names(prefix: str = "") -> dict[str, int | None]:
    """Host interfaces whose name starts with ``prefix``: name -> master index (None when unenslaved)."""
    with iproute("cannot list interfaces") as ipr:
        out: dict[str, int | None] = {}
        for link in ipr.get_links():
            name = str(link.get("ifname"))
            if name.startswith(prefix):
                master = link.get("master")
                out[name] = int(master) if master else None
        return out


def link_exists(name: str) -> bool:
    with iproute(f"cannot look up interface {name}") as ipr:
        return bool(ipr.link_lookup(ifname=name))


def mac_for(ip: str) -> str:
    """A stable locally administered MAC derived from the IPv4 address (like docker's 02:42:...)."""
    octets = [int(x) for x in ip.split(".")]
    return "02:64:" + ":".join(f"{o:02x}" for o in octets)

