"""Port-pane events built from mappings and forwarder counters."""

from __future__ import annotations

from engine.events import Event, PortBound
from engine.net.events import PortTraffic, port_bound_events, traffic_events
from engine.net.forward import PortStats
from engine.net.ports import PortMapping


def test_events_from_mappings_and_stats() -> None:
    m = PortMapping("127.0.0.1", 8080, 80, "tcp")
    assert port_bound_events("c1", [m]) == [PortBound("c1", "127.0.0.1", 8080, 80, "tcp")]
    (ev,) = traffic_events("c1", [PortStats(m, active=2, total=5, bytes_in=10, bytes_out=20, failed=1)])
    assert isinstance(ev, Event)
    assert ev == PortTraffic("c1", "127.0.0.1", 8080, 80, "tcp", 2, 5, 10, 20, 1)
    assert PortStats.from_dict(PortStats(m, 1, 2, 3, 4, 5).to_dict()) == PortStats(m, 1, 2, 3, 4, 5)
