"""The host bridge that every bridge-mode container's veth is plugged into (pyroute2)."""

from __future__ import annotations

import errno
import ipaddress
import socket
from typing import Any

from engine.errors import NetworkSetupError
from engine.net._netlink import iproute, is_netlink_error, netlink_error

#: Linux interface names are at most 15 bytes.
IFNAMSIZ = 15


def check_ifname(name: str) -> str:
    if not name or len(name.encode()) > IFNAMSIZ or any(c in name for c in "/ \t\n:") or name in (".", ".."):
        raise NetworkSetupError(
            f"invalid interface name {name!r} (1-{IFNAMSIZ} characters, no '/', ':' or spaces)"
        )
    return name


def _kind(link: Any) -> str | None:
    info = link.get_attr("IFLA_LINKINFO")
    return None if info is None else info.get_attr("IFLA_INFO_KIND")


def _overlaps(ipr: Any, net: ipaddress.IPv4Network, own_index: int | None) -> str | None:
    """The first route of another interface that overlaps ``net`` (a subnet clash), as text."""
    for route in ipr.get_routes(family=socket.AF_INET, table=254):
        dst = route.get("dst")
        if not dst or route.get("oif") == own_index:
            continue  # the default route or our own bridge's route
        other = ipaddress.ip_network(f"{dst}/{route['dst_len']}", strict=False)
        if other.overlaps(net):
            names = ipr.get_links(route.get("oif")) if route.get("oif") else []
            dev = names[0].get("ifname") if names else "?"
            return f"{other} on {dev}"
    return None


def ensure_bridge(name: str, gateway: str, prefixlen: int) -> int:
    """Create the bridge ``name`` with ``gateway/prefixlen`` if needed and bring it up (idempotent).

    Refuses a subnet that another interface already routes (podman's 10.88/16, a VPN, ...), and an
    existing interface of that name that is not a bridge.  No iptables rules are written and
    ip_forward is left alone: containers on one bridge talk at layer 2, and the host reaches them
    through the bridge's own address.  Returns the bridge's interface index.
    """
    check_ifname(name)
    net = ipaddress.IPv4Network(f"{gateway}/{prefixlen}", strict=False)
    what = f"cannot set up bridge {name}"
    with iproute(what) as ipr:
        found = ipr.link_lookup(ifname=name)
        if not found:
            clash = _overlaps(ipr, net, None)
            if clash is not None:
                raise NetworkSetupError(f"{what}: subnet {net} overlaps {clash}; choose another subnet")
            try:
                ipr.link("add", ifname=name, kind="bridge")
            except Exception as exc:
                if not is_netlink_error(exc, errno.EEXIST):  # another process won the race
                    raise
            found = ipr.link_lookup(ifname=name)
            if not found:
                raise NetworkSetupError(f"{what}: the bridge vanished right after creation")
        index = int(found[0])
        link = ipr.get_links(index)[0]
        if _kind(link) != "bridge":
            raise NetworkSetupError(f"{what}: interface {name} exists and is not a bridge")
        addrs = {(a.get("address"), a["prefixlen"]) for a in ipr.get_addr(index=index, family=socket.AF_INET)}
        if (gateway, prefixlen) not in addrs:
            clash = _overlaps(ipr, net, index)
            if clash is not None:
                raise NetworkSetupError(f"{what}: subnet {net} overlaps {clash}; choose another subnet")
            try:
                ipr.addr("add", index=index, address=gateway, prefixlen=prefixlen)
            except Exception as exc:
                if not is_netlink_error(exc, errno.EEXIST):
                    raise
        if not link["flags"] & 1:  # IFF_UP
            ipr.link("set", index=index, state="up")
        return index


def bridge_index(name: str) -> int | None:
    """The bridge's interface index, or None when it does not exist."""
    with iproute(f"cannot look up bridge {name}") as ipr:
        found = ipr.link_lookup(ifname=name)
        return int(found[0]) if found else None


def bridge_ports(name: str) -> list[str]:
    """Names of the interfaces enslaved to the bridge (empty when it does not exist)."""
    with iproute(f"cannot list ports of bridge {name}") as ipr:
        found = ipr.link_lookup(ifname=name)
        if not found:
            return []
        return sorted(str(link.get("ifname")) for link in ipr.get_links() if link.get("master") == found[0])


def delete_bridge(name: str) -> bool:
    """Delete the bridge (its ports are released, not deleted); False when it did not exist."""
    return delete_link(name)


def delete_link(name: str) -> bool:
    """Delete an interface by name (a veth takes its peer with it); False when it did not exist."""
    try:
        with iproute(f"cannot delete interface {name}") as ipr:
            ipr.link("del", ifname=name)
            return True
    except NetworkSetupError as exc:
        cause = exc.__cause__
        if cause is not None and is_netlink_error(cause, errno.ENODEV):
            return False
        raise
    except Exception as exc:  # pragma: no cover - iproute translates
        raise netlink_error(exc, f"cannot delete interface {name}") from exc
