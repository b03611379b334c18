"""A persisted IPv4 address manager for one bridge network.

State lives in one JSON file (``<state_dir>/<network>.ipam.json``); every read-modify-write holds an
exclusive ``fcntl.flock`` on ``<network>.ipam.lock`` and replaces the file atomically (temp file in the
same directory, fsync, ``os.replace``), so concurrent ``dockyard run`` processes never hand out the same
address and a crash never leaves half a file.

Addresses are handed out round-robin after the last one given (like docker), so a just-freed address
is not reused at once while peers may still cache its ARP entry.  The network address, the gateway
(the first host address, ``.1``) and the broadcast address are never handed out.

Each allocation may carry small metadata (container name, hostname, the directory holding the
container's /etc files) that :mod:`engine.net.network` uses to keep peers' /etc/hosts current.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from engine.errors import NetworkSetupError, os_error_message

#: Avoids podman/CNI (10.88.0.0/16), docker (172.17.0.0/16 and the 172.16/12, 192.168/16 pools).
DEFAULT_SUBNET = "10.213.0.0/24"
_VERSION = 1


@dataclass(frozen=True)
class Allocation:
    """One container's address on the network, plus what peers need to list it in /etc/hosts."""

    container_id: str
    ip: str
    name: str | None = None
    hostname: str | None = None
    etc_dir: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"ip": self.ip}
        for key in ("name", "hostname", "etc_dir"):
            value = getattr(self, key)
            if value is not None:
                data[key] = value
        data.update(self.extra)
        return data

    @classmethod
    def from_dict(cls, container_id: str, data: dict[str, Any]) -> Allocation:
        known = {"ip", "name", "hostname", "etc_dir"}
        return cls(
            container_id=container_id,
            ip=str(data["ip"]),
            name=data.get("name"),
            hostname=data.get("hostname"),
            etc_dir=data.get("etc_dir"),
            extra={k: v for k, v in data.items() if k not in known},
        )


def parse_subnet(subnet: str) -> ipaddress.IPv4Network:
    """Parse and sanity-check a bridge subnet (IPv4, /8 to /30, given as its network address)."""
    try:
        net = ipaddress.ip_network(subnet, strict=True)
    except ValueError as exc:
        raise NetworkSetupError(f"invalid subnet {subnet!r}: {exc}") from exc
    if not isinstance(net, ipaddress.IPv4Network):
        raise NetworkSetupError(f"subnet {subnet} is not IPv4 (only IPv4 bridges are supported)")
    if not 8 <= net.prefixlen <= 30:
        raise NetworkSetupError(f"subnet {subnet} must have a prefix length between /8 and /30")
    if net.is_loopback or net.is_link_local or net.is_multicast:
        raise NetworkSetupError(f"subnet {subnet} is loopback, link-local or multicast")
    return net


def gateway_of(net: ipaddress.IPv4Network) -> ipaddress.IPv4Address:
    """The bridge's own address: the first host of the subnet (``.1``)."""
    return net.network_address + 1


class Ipam:
    """Allocate and free container addresses of one subnet, persisted under ``state_dir``."""

    def __init__(self, state_dir: Path, network: str, subnet: str = DEFAULT_SUBNET) -> None:
        self.subnet = parse_subnet(subnet)
        self.gateway = gateway_of(self.subnet)
        self.state_dir = Path(state_dir)
        self.network = network
        self.state_file = self.state_dir / f"{network}.ipam.json"
        self.lock_file = self.state_dir / f"{network}.ipam.lock"

    @property
    def prefixlen(self) -> int:
        return self.subnet.prefixlen

    # -- public operations (each one takes the lock once) ---------------------------------------

    def allocate(
        self, container_id: str, *, name: str | None = None, hostname: str | None = None,
        etc_dir: str | None = None, extra: dict[str, Any] | None = None,
    ) -> Allocation:
        """Give ``container_id`` an address (the same one again if it already has one).

        ``extra`` (when given) replaces the allocation's extra metadata.
        """
        with self.transaction() as state:
            alloc = self._allocate(state, container_id, name=name, hostname=hostname, etc_dir=etc_dir)
            if extra is not None:
                alloc = replace(alloc, extra=dict(extra))
                state.allocations[container_id] = alloc
            return alloc

    def release(self, container_id: str) -> Allocation | None:
        """Free the container's address; returns what was freed (None when it had none)."""
        with self.transaction() as state:
            return self._release(state, container_id)

    def release_all_except(self, live_ids: Iterable[str]) -> list[Allocation]:
        """Free every allocation whose container is not in ``live_ids`` (gc)."""
        live = set(live_ids)
        with self.transaction() as state:
            dead = [cid for cid in state.allocations if cid not in live]
            return [a for a in (self._release(state, cid) for cid in dead) if a is not None]

    def allocations(self) -> dict[str, Allocation]:
        """A snapshot of all allocations, keyed by container id."""
        with self._locked():
            return dict(self._load().allocations)

    def lookup(self, container_id: str) -> Allocation | None:
        return self.allocations().get(container_id)

    # -- transaction plumbing --------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[_State]:
        """Lock, load, yield the mutable state, and save it if it changed (all or nothing)."""
        with self._locked():
            state = self._load()
            before = state.to_json()
            yield state
            if state.to_json() != before:
                self._save(state)

    def _allocate(
        self, state: _State, container_id: str, *, name: str | None, hostname: str | None,
        etc_dir: str | None,
    ) -> Allocation:
        if not container_id:
            raise NetworkSetupError("cannot allocate an address for an empty container id")
        current = state.allocations.get(container_id)
        if current is not None:
            updated = Allocation(container_id, current.ip, name or current.name,
                                 hostname or current.hostname, etc_dir or current.etc_dir, current.extra)
            state.allocations[container_id] = updated
            return updated
        used = {a.ip for a in state.allocations.values()}
        first = int(self.subnet.network_address) + 2  # .0 is the network, .1 the gateway
        last = int(self.subnet.broadcast_address) - 1
        size = last - first + 1
        start = state.last + 1 if state.last is not None and first <= state.last + 1 <= last else first
        for step in range(size):
            candidate = first + (start - first + step) % size
            ip = str(ipaddress.IPv4Address(candidate))
            if ip not in used:
                alloc = Allocation(container_id, ip, name, hostname, etc_dir)
                state.allocations[container_id] = alloc
                state.last = candidate
                return alloc
        raise NetworkSetupError(f"no free address left in {self.subnet} ({len(used)} containers attached)")

    @staticmethod
    def _release(state: _State, container_id: str) -> Allocation | None:
        return state.allocations.pop(container_id, None)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise NetworkSetupError(os_error_message(exc, "cannot open the IPAM lock")) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing drops the flock

    def _load(self) -> _State:
        try:
            raw = self.state_file.read_bytes()
        except FileNotFoundError:
            return _State(str(self.subnet), None, {})
        except OSError as exc:
            raise NetworkSetupError(os_error_message(exc, "cannot read the IPAM state")) from exc
        try:
            data = json.loads(raw)
            allocs = {cid: Allocation.from_dict(cid, v) for cid, v in data.get("allocations", {}).items()}
            state = _State(str(data["subnet"]), data.get("last"), allocs)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise NetworkSetupError(
                f"IPAM state {self.state_file} is corrupt; remove it to start over"
            ) from exc
        if state.subnet != str(self.subnet):
            if state.allocations:
                raise NetworkSetupError(
                    f"network {self.network} has addresses allocated in {state.subnet}, not {self.subnet}; "
                    "remove its containers before changing the subnet"
                )
            return _State(str(self.subnet), None, {})
        return state

    def _save(self, state: _State) -> None:
        try:
            fd, tmp = tempfile.mkstemp(prefix=".ipam-", dir=self.state_dir)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    fh.write(state.to_json())
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, self.state_file)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            raise NetworkSetupError(os_error_message(exc, "cannot write the IPAM state")) from exc


@dataclass
class _State:
    """The IPAM file's content."""

    subnet: str
    last: int | None
    allocations: dict[str, Allocation]

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": _VERSION,
                "subnet": self.subnet,
                "last": self.last,
                "allocations": {cid: a.to_dict() for cid, a in sorted(self.allocations.items())},
            },
            indent=1,
            sort_keys=True,
        )
