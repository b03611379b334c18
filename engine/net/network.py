"""A bridge network: bridge + IPAM + one netns/veth per container + their /etc files.

Typical use by the runtime (one ``BridgeNetwork`` per process is fine; all state is on disk)::

    net = BridgeNetwork(config.net_dir, bridge=config.bridge_name, subnet=config.subnet)
    att = net.attach(container_id, name="web", hostname="web", etc_dir=container_dir / "etc")
    # runtime spec: {"type": "network", "path": att.netns_path}; bind-mount att.etc.mounts()
    ...
    net.detach(container_id)            # on rm (idempotent)
    net.gc(live_container_ids)          # dockyard gc: leftovers of crashed containers

With a pool (engine/net/pool.py) ``run`` first takes a ready attachment: ``cid = net.claim()`` picks the
container id, and ``attach(cid, ...)`` then only writes the /etc files (no netlink, no pyroute2).

Only namespaces named ``<netns_prefix><id12>`` and veths named ``<veth_prefix><id12>`` on this
bridge are ever touched, so a second network (a test session's) never disturbs another.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import InvalidPortSpecError, NetworkSetupError
from engine.net import bridge as _bridge
from engine.net import netns as _netns
from engine.net import pool as _pool
from engine.net.etcfiles import EtcFiles, NetworkMode, write_etc_files, write_in_place
from engine.net.hosts import HostEntry, peer_entry, render_hosts
from engine.net.ipam import DEFAULT_SUBNET, Allocation, Ipam
from engine.net.ports import PortMapping

if TYPE_CHECKING:
    from engine.config import EngineConfig

DEFAULT_BRIDGE = "dockyard0"
DEFAULT_NETNS_PREFIX = "dockyard-"
DEFAULT_VETH_PREFIX = "dy"
NETWORK_MODES: tuple[NetworkMode, ...] = ("bridge", "host", "none")
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def parse_network_mode(text: str) -> NetworkMode:
    """``--network`` value: bridge (default), host or none."""
    mode = text.strip().lower() or "bridge"
    if mode == "default":
        mode = "bridge"
    if mode not in NETWORK_MODES:
        raise NetworkSetupError(f"unknown network mode {text!r} (use bridge, host or none)")
    return mode


def mappings_to_forward(mode: NetworkMode, mappings: Sequence[PortMapping]) -> list[PortMapping]:
    """The mappings that need a forwarder in ``mode``: all for bridge, none for host (the container
    already listens on the host's addresses), and an error for none when any were asked for."""
    if mode == "none" and mappings:
        raise InvalidPortSpecError(
            f"cannot publish {mappings[0]}: a container with --network none has no network; "
            "use --network bridge"
        )
    return list(mappings) if mode == "bridge" else []


@dataclass(frozen=True)
class Attachment:
    """A container's place on a bridge network (plain strings: store it in the container record)."""

    container_id: str
    network: str
    netns_name: str
    netns_path: str
    ip: str
    prefixlen: int
    gateway: str
    host_veth: str
    mac: str
    etc: EtcFiles | None = None

    @property
    def cidr(self) -> str:
        return f"{self.ip}/{self.prefixlen}"

    def runtime_namespace(self) -> dict[str, str]:
        """The entry for the runtime spec's ``linux.namespaces``."""
        return {"type": "network", "path": self.netns_path}

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "container_id": self.container_id, "network": self.network, "netns_name": self.netns_name,
            "netns_path": self.netns_path, "ip": self.ip, "prefixlen": self.prefixlen,
            "gateway": self.gateway, "host_veth": self.host_veth, "mac": self.mac,
        }
        if self.etc is not None:
            data["etc"] = {"hosts": str(self.etc.hosts), "hostname": str(self.etc.hostname),
                           "resolv_conf": str(self.etc.resolv_conf)}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Attachment:
        etc = data.get("etc")
        return cls(
            container_id=str(data["container_id"]), network=str(data["network"]),
            netns_name=str(data["netns_name"]), netns_path=str(data["netns_path"]), ip=str(data["ip"]),
            prefixlen=int(data["prefixlen"]), gateway=str(data["gateway"]), host_veth=str(data["host_veth"]),
            mac=str(data["mac"]),
            etc=(EtcFiles(Path(etc["hosts"]), Path(etc["hostname"]), Path(etc["resolv_conf"]))
                 if etc else None),
        )


@dataclass(frozen=True)
class NetGcReport:
    """What ``gc`` removed."""

    netns_removed: tuple[str, ...] = ()
    links_removed: tuple[str, ...] = ()
    released: tuple[str, ...] = ()  # container ids whose address was freed

    @property
    def empty(self) -> bool:
        return not (self.netns_removed or self.links_removed or self.released)


class BridgeNetwork:
    """One bridge with its subnet; state (IPAM) under ``state_dir``."""

    def __init__(
        self, state_dir: Path, *, bridge: str = DEFAULT_BRIDGE, subnet: str = DEFAULT_SUBNET,
        netns_prefix: str = DEFAULT_NETNS_PREFIX, veth_prefix: str = DEFAULT_VETH_PREFIX,
        pool_size: int | None = None,
    ) -> None:
        self.bridge = _bridge.check_ifname(bridge)
        if not 1 <= len(veth_prefix) <= 3:
            raise NetworkSetupError(f"veth prefix {veth_prefix!r} must be 1-3 characters (names hold 15)")
        _netns.check_netns_name(netns_prefix + "x")
        self.netns_prefix = netns_prefix
        self.veth_prefix = veth_prefix
        self.ipam = Ipam(Path(state_dir), bridge, subnet)
        #: ready attachments to keep (:mod:`engine.net.pool`); None: ``DOCKYARD_NET_POOL`` or the default
        self.pool_size = _pool.default_pool_size() if pool_size is None else max(0, pool_size)

    @classmethod
    def from_config(cls, config: EngineConfig) -> BridgeNetwork:
        """The network named by the engine config (``net_dir``, ``bridge_name``, ``subnet``)."""
        return cls(config.net_dir, bridge=config.bridge_name, subnet=config.subnet)

    def describe(self) -> dict[str, Any]:
        """JSON-able constructor arguments (for a helper process)."""
        return {"state_dir": str(self.ipam.state_dir), "bridge": self.bridge, "subnet": self.subnet,
                "netns_prefix": self.netns_prefix, "veth_prefix": self.veth_prefix, "pool_size": self.pool_size}

    @classmethod
    def from_description(cls, data: dict[str, Any]) -> BridgeNetwork:
        return cls(Path(data["state_dir"]), bridge=str(data["bridge"]), subnet=str(data["subnet"]),
                   netns_prefix=str(data["netns_prefix"]), veth_prefix=str(data["veth_prefix"]),
                   pool_size=int(data["pool_size"]))

    @property
    def subnet(self) -> str:
        return str(self.ipam.subnet)

    @property
    def gateway(self) -> str:
        return str(self.ipam.gateway)

    # -- names ------------------------------------------------------------------------------------

    @staticmethod
    def _check_id(container_id: str) -> str:
        if not _ID_RE.fullmatch(container_id):
            raise NetworkSetupError(f"invalid container id {container_id!r}")
        return container_id

    def netns_name(self, container_id: str) -> str:
        return f"{self.netns_prefix}{self._check_id(container_id)[:12]}"

    def veth_name(self, container_id: str) -> str:
        return f"{self.veth_prefix}{self._check_id(container_id)[:12]}"

    def netns_path(self, container_id: str) -> str:
        return _netns.netns_path(self.netns_name(container_id))

    # -- lifecycle --------------------------------------------------------------------------------

    def ensure(self) -> int:
        """Create/bring up the bridge (idempotent); returns its interface index."""
        return _bridge.ensure_bridge(self.bridge, self.gateway, self.ipam.prefixlen)

    def attach(
        self, container_id: str, *, name: str | None = None, hostname: str | None = None,
        etc_dir: Path | None = None, dns: Iterable[str] = (), extra_hosts: Iterable[HostEntry] = (),
    ) -> Attachment:
        """Give the container an address, a namespace ``<prefix><id12>`` with ``eth0`` on the bridge
        (default route via the gateway, ``lo`` up) and, with ``etc_dir``, its /etc files; peers'
        /etc/hosts learn its name.  An id handed out by :meth:`claim` takes its ready pool entry (no
        netlink at all).  Otherwise a leftover namespace/veth of the same id is replaced.  On any
        failure everything made so far is undone and NetworkSetupError is raised.
        """
        ns_name = self.netns_name(container_id)
        veth = self.veth_name(container_id)
        hostname = hostname or container_id[:12]
        try:
            adopted = self._adopt(container_id, name=name, hostname=hostname, etc_dir=etc_dir, dns=dns,
                                  extra_hosts=extra_hosts)
        except BaseException:
            with contextlib.suppress(Exception):
                self.drop_entry(container_id)
            raise
        if adopted is not None:
            return adopted
        bridge_index = self.ensure()
        self._remove_leftovers(ns_name, veth)
        alloc = self._allocate(container_id, name=name, hostname=hostname,
                               etc_dir=str(etc_dir) if etc_dir is not None else None)
        try:
            path, mac = self.plug(container_id, alloc.ip, bridge_index)
            etc: EtcFiles | None = None
            if etc_dir is not None:
                etc = write_etc_files(
                    etc_dir, hostname=hostname, mode="bridge", ip=alloc.ip, name=name,
                    peers=self._peer_entries(container_id, self.ipam.allocations()), dns=dns,
                    extra_hosts=extra_hosts,
                )
            self.refresh_hosts(exclude=container_id)
        except BaseException:
            with contextlib.suppress(Exception):
                self._remove_leftovers(ns_name, veth)
            with contextlib.suppress(Exception):
                self.ipam.release(container_id)
            raise
        return Attachment(container_id, self.bridge, ns_name, path, alloc.ip, self.ipam.prefixlen,
                          self.gateway, veth, mac, etc)

    def plug(self, container_id: str, ip: str, bridge_index: int) -> tuple[str, str]:
        """Netlink: the namespace, its veth on the bridge, ``ip`` and the default route inside.

        Returns ``(namespace path, MAC of eth0)``.
        """
        ns_name = self.netns_name(container_id)
        path = _netns.create_netns(ns_name)
        _netns.add_veth(self.veth_name(container_id), ns_name, bridge_index=bridge_index, mac=_netns.mac_for(ip))
        mac = _netns.configure_inside(ns_name, ip=ip, prefixlen=self.ipam.prefixlen, gateway=self.gateway)
        return path, mac

    def _allocate(self, container_id: str, *, name: str | None, hostname: str | None,
                  etc_dir: str | None) -> Allocation:
        try:
            return self.ipam.allocate(container_id, name=name, hostname=hostname, etc_dir=etc_dir, extra={})
        except NetworkSetupError:
            if not _pool.release_ready(self):  # the pool's spare addresses go back to containers
                raise
            return self.ipam.allocate(container_id, name=name, hostname=hostname, etc_dir=etc_dir, extra={})

    def _adopt(
        self, container_id: str, *, name: str | None, hostname: str, etc_dir: Path | None,
        dns: Iterable[str], extra_hosts: Iterable[HostEntry],
    ) -> Attachment | None:
        """Turn the claimed pool entry ``container_id`` into the container's attachment (file I/O only);
        None when the id was not claimed from the pool (or the entry went away meanwhile)."""
        with self.ipam.transaction() as state:
            current = state.allocations.get(container_id)
            if current is None or _pool.pool_state(current) != _pool.CLAIMED:
                return None
            alloc = Allocation(container_id, current.ip, name, hostname,
                               str(etc_dir) if etc_dir is not None else None,
                               {k: v for k, v in current.extra.items() if k != _pool.POOL_KEY})
            state.allocations[container_id] = alloc
            allocs = dict(state.allocations)
            etc: EtcFiles | None = None
            if etc_dir is not None:
                etc = write_etc_files(
                    etc_dir, hostname=hostname, mode="bridge", ip=alloc.ip, name=name,
                    peers=self._peer_entries(container_id, allocs), dns=dns, extra_hosts=extra_hosts,
                )
            self._rewrite_hosts(allocs, exclude=container_id)
        ns_name = self.netns_name(container_id)
        return Attachment(container_id, self.bridge, ns_name, _netns.netns_path(ns_name), alloc.ip,
                          self.ipam.prefixlen, self.gateway, self.veth_name(container_id), _netns.mac_for(alloc.ip),
                          etc)

    # -- the pool (engine/net/pool.py) -----------------------------------------------------------

    def claim(self) -> tuple[str, int] | None:
        """A ready pool entry's id for a new container (pass it to :meth:`attach`) and how many ready
        entries are left; None when the pool is empty.  File I/O only."""
        return _pool.claim(self)

    def fill(self, size: int | None = None) -> int:
        """Top the pool up (netlink); returns the number of entries made."""
        return _pool.fill(self, size)

    def fill_in_background(self) -> None:
        """Top the pool up in a detached low-priority process (no-op when full); never raises."""
        _pool.fill_in_background(self)

    def drop_entry(self, container_id: str) -> None:
        """Remove an attachment that no container's /etc/hosts lists (a pool entry): netlink + IPAM."""
        self._remove_leftovers(self.netns_name(container_id), self.veth_name(container_id))
        self.ipam.release(container_id)

    def detach(self, container_id: str) -> bool:
        """Delete the container's veth and namespace and free its address (idempotent).

        Returns True when anything was there to remove.
        """
        removed = self._remove_leftovers(self.netns_name(container_id), self.veth_name(container_id))
        released = self.ipam.release(container_id) is not None
        if released:
            self.refresh_hosts()
        return removed or released

    def gc(self, live_container_ids: Iterable[str], *, keep_pool: bool = True) -> NetGcReport:
        """Remove namespaces, veths and addresses of containers not in ``live_container_ids``.

        Call it with every container that still exists (running or not): an existing stopped
        container keeps its address.  Only this network's prefixes and bridge are considered.
        Ready pool entries (and pending ones while their filler runs) are kept unless ``keep_pool``
        is off; claimed entries whose container never appeared, stale and dead pending ones go.
        """
        live = set(live_container_ids)
        if keep_pool:
            live |= _pool.live_entries(self)
        live12 = {cid[:12] for cid in live}
        index = _bridge.bridge_index(self.bridge)
        ours_links = {link: master for link, master in _netns.link_names(self.veth_prefix).items()
                      if index is not None and master == index}
        # Only namespaces this network made: its IPAM knows them, or their veth hangs on its bridge.
        # Another state directory's (or another bridge's) containers share the name prefix.
        ours12 = {cid[:12] for cid in self.ipam.allocations()} | {
            link[len(self.veth_prefix):] for link in ours_links}
        netns_removed: list[str] = []
        for ns in _netns.list_netns():
            id12 = ns[len(self.netns_prefix):]
            if ns.startswith(self.netns_prefix) and id12 in ours12 and id12 not in live12:
                with contextlib.suppress(NetworkSetupError):
                    if _netns.remove_netns(ns):
                        netns_removed.append(ns)
        links_removed: list[str] = []
        for link in ours_links:
            if link[len(self.veth_prefix):] not in live12 and _bridge.delete_link(link):
                links_removed.append(link)
        released = [a.container_id for a in self.ipam.release_all_except(live)]
        if released:
            self.refresh_hosts()
        return NetGcReport(tuple(netns_removed), tuple(links_removed), tuple(released))

    def destroy(self) -> None:
        """Remove every attachment of this network (pool included), its bridge and its IPAM state
        (tests, ``network rm``).  Waits for a running pool filler, which then finds no bridge."""
        with _pool.locked(self):
            self.gc((), keep_pool=False)
            _bridge.delete_bridge(self.bridge)
            for path in (self.ipam.state_file, self.ipam.lock_file):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            _pool.remove_lock(self)

    # -- peers ------------------------------------------------------------------------------------

    def allocations(self) -> dict[str, Allocation]:
        """The containers' allocations (pool entries are not containers)."""
        return {cid: a for cid, a in self.ipam.allocations().items() if _pool.pool_state(a) is None}

    @staticmethod
    def _peer_entries(container_id: str, allocs: dict[str, Allocation]) -> list[HostEntry]:
        return [peer_entry(a.ip, a.name, a.hostname, cid) for cid, a in allocs.items()
                if cid != container_id and _pool.pool_state(a) is None]

    def peers(self, container_id: str) -> list[HostEntry]:
        """/etc/hosts entries of the other containers on this network."""
        return self._peer_entries(container_id, self.allocations())

    def refresh_hosts(self, exclude: str | None = None) -> None:
        """Rewrite (in place) the /etc/hosts of every container on the network that has an etc_dir."""
        with self.ipam.transaction() as state:  # serialises concurrent refreshes
            self._rewrite_hosts(dict(state.allocations), exclude)

    def _rewrite_hosts(self, allocs: dict[str, Allocation], exclude: str | None) -> None:
        for cid, alloc in allocs.items():
            if cid == exclude or not alloc.etc_dir or _pool.pool_state(alloc) is not None:
                continue
            hosts = Path(alloc.etc_dir) / "hosts"
            if not hosts.exists():
                continue
            text = render_hosts(alloc.hostname or cid[:12], alloc.ip, name=alloc.name,
                                peers=self._peer_entries(cid, allocs))
            with contextlib.suppress(NetworkSetupError):
                write_in_place(hosts, text)

    # -- internals --------------------------------------------------------------------------------

    @staticmethod
    def _remove_leftovers(ns_name: str, veth: str) -> bool:
        removed = _netns.remove_netns(ns_name)
        # With no process left in the namespace its eth0 (and so the host end) is gone already; a
        # namespace still held by a process keeps it, so delete the host end explicitly.
        if _netns.link_exists(veth):
            removed = _bridge.delete_link(veth) or removed
        return removed
