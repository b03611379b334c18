"""Events for the TUI's port pane: a port got bound (``engine.events.PortBound``), traffic counters."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from engine.events import Event, PortBound
from engine.net.forward import PortStats
from engine.net.ports import PortMapping


@dataclass(frozen=True, slots=True)
class PortTraffic(Event):
    """Counters of one mapping (connections for TCP, client sessions for UDP; bytes each way)."""

    container_id: str
    host_ip: str
    host_port: int
    container_port: int
    protocol: str
    active: int
    total: int
    bytes_in: int
    bytes_out: int
    failed: int = 0


def port_bound_events(container_id: str, mappings: Iterable[PortMapping]) -> list[PortBound]:
    """One ``PortBound`` per concrete mapping (after :func:`engine.net.forward.bind_all`)."""
    return [PortBound(container_id, m.host_ip, m.host_port, m.container_port, m.protocol) for m in mappings]


def traffic_events(container_id: str, stats: Iterable[PortStats]) -> list[PortTraffic]:
    """``PortTraffic`` events from :meth:`Forwarder.stats` or :func:`engine.net.forward.query_stats`."""
    return [
        PortTraffic(container_id, s.mapping.host_ip, s.mapping.host_port, s.mapping.container_port,
                    s.mapping.protocol, s.active, s.total, s.bytes_in, s.bytes_out, s.failed)
        for s in stats
    ]
