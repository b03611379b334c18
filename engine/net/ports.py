"""Port mapping values and the parsers for docker's ``-p`` / ``-P`` forms (pure, no I/O).

Grammar of ``-p`` (docker's)::

    [[ip:][hostPort[-hostEnd]]:]containerPort[-containerEnd][/tcp|/udp]

* ``80``                  container port 80 on a free host port of 0.0.0.0
* ``8080:80``             0.0.0.0:8080 -> 80
* ``127.0.0.1:8080:80``   only the loopback address
* ``127.0.0.1::80``       loopback, free host port
* ``[::1]:8080:80``       IPv6 addresses go in brackets (a bare ``::1:8080:80`` is accepted too)
* ``8080-8081:80-81``     ranges of the same length map pairwise
* ``8000-9000:80``        a host range with one container port: the first free port of the range
* ``80-81``               each container port on its own free host port
* ``/udp``, ``/tcp``      protocol; tcp when omitted

A host port of 0 means "pick a free port when binding"; :mod:`engine.net.forward` reports the real one.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, cast

from engine.errors import InvalidPortSpecError

Protocol = Literal["tcp", "udp"]
PROTOCOLS: tuple[Protocol, ...] = ("tcp", "udp")
ANY_IPV4 = "0.0.0.0"
MAX_PORT = 65535
#: A range larger than this is refused (docker has no limit, but 60000 listeners is never meant).
MAX_RANGE = 1024


@dataclass(frozen=True, order=True)
class PortMapping:
    """One published port: ``host_ip:host_port -> container_port/protocol``.

    ``host_port == 0`` asks for a free port at bind time; ``host_port_max`` (when set) allows any
    port of ``host_port..host_port_max`` (docker's ``8000-9000:80``).  After binding, mappings are
    always concrete (``host_port != 0``, ``host_port_max is None``).
    """

    host_ip: str
    host_port: int
    container_port: int
    protocol: Protocol = "tcp"
    host_port_max: int | None = None

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise InvalidPortSpecError(f"protocol {self.protocol!r} is not supported (use tcp or udp)")
        _check_port(self.container_port, "container port", allow_zero=False)
        _check_port(self.host_port, "host port", allow_zero=True)
        if self.host_port_max is not None:
            _check_port(self.host_port_max, "host port", allow_zero=False)
            if self.host_port_max < self.host_port:
                raise InvalidPortSpecError(
                    f"host port range {self.host_port}-{self.host_port_max} is reversed"
                )
        _parse_ip(self.host_ip)

    @property
    def is_ipv6(self) -> bool:
        return ":" in self.host_ip

    @property
    def is_concrete(self) -> bool:
        """True when the host port is decided (no 0, no range)."""
        return self.host_port != 0 and self.host_port_max is None

    @property
    def host_address(self) -> str:
        """``127.0.0.1:8080`` / ``[::1]:8080`` (the host side only)."""
        ip = f"[{self.host_ip}]" if self.is_ipv6 else self.host_ip
        if self.host_port_max is not None:
            return f"{ip}:{self.host_port}-{self.host_port_max}"
        return f"{ip}:{self.host_port}"

    def __str__(self) -> str:
        return f"{self.host_address}->{self.container_port}/{self.protocol}"

    def with_host_port(self, port: int) -> PortMapping:
        """The concrete mapping once ``port`` has been bound."""
        return PortMapping(self.host_ip, port, self.container_port, self.protocol)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "host_ip": self.host_ip,
            "host_port": self.host_port,
            "container_port": self.container_port,
            "protocol": self.protocol,
        }
        if self.host_port_max is not None:
            data["host_port_max"] = self.host_port_max
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PortMapping:
        try:
            hmax = data.get("host_port_max")
            return cls(
                str(data["host_ip"]),
                int(data["host_port"]),
                int(data["container_port"]),
                cast(Protocol, str(data.get("protocol", "tcp"))),
                None if hmax is None else int(hmax),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidPortSpecError(f"invalid port mapping record {dict(data)!r}") from exc


class ExposedPort(NamedTuple):
    """An image's ``ExposedPorts`` entry, e.g. ``80/tcp``."""

    port: int
    protocol: Protocol

    def __str__(self) -> str:
        return f"{self.port}/{self.protocol}"


def _check_port(port: int, what: str, *, allow_zero: bool) -> None:
    low = 0 if allow_zero else 1
    if not isinstance(port, int) or isinstance(port, bool) or not low <= port <= MAX_PORT:
        raise InvalidPortSpecError(f"{what} {port!r} is out of range ({low}-{MAX_PORT})")


def _parse_ip(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError as exc:
        raise InvalidPortSpecError(f"invalid host IP address {text!r}") from exc


def _parse_protocol(text: str, spec: str) -> Protocol:
    proto = text.strip().lower()
    if proto not in PROTOCOLS:
        raise InvalidPortSpecError(
            f"invalid port spec {spec!r}: protocol {text!r} is not supported (tcp or udp)"
        )
    return proto


def _parse_range(text: str, what: str, spec: str, *, allow_zero: bool = False) -> tuple[int, int]:
    start_s, sep, end_s = text.partition("-")
    try:
        if not start_s.isdigit() or (sep and not end_s.isdigit()):
            raise ValueError
        start = int(start_s)
        end = int(end_s) if sep else start
    except ValueError:
        raise InvalidPortSpecError(
            f"invalid port spec {spec!r}: {what} {text!r} is not a number or range"
        ) from None
    low = 0 if allow_zero and not sep else 1
    for value in (start, end):
        if not low <= value <= MAX_PORT:
            raise InvalidPortSpecError(
                f"invalid port spec {spec!r}: {what} {value} is out of range (1-{MAX_PORT})"
            )
    if end < start:
        raise InvalidPortSpecError(f"invalid port spec {spec!r}: {what} range {text} is reversed")
    if end - start + 1 > MAX_RANGE:
        raise InvalidPortSpecError(
            f"invalid port spec {spec!r}: {what} range {text} is larger than {MAX_RANGE}"
        )
    return start, end


def _split_address(body: str, spec: str) -> tuple[str, str, str]:
    """Split ``[ip:][host:]container`` into its three (possibly empty) parts."""
    if body.startswith("["):
        close = body.find("]")
        if close < 0 or body[close + 1 : close + 2] != ":":
            raise InvalidPortSpecError(f"invalid port spec {spec!r}: unterminated IPv6 address")
        ip = body[1:close]
        rest = body[close + 2 :]
        host, sep, container = rest.partition(":")
        if not sep or ":" in container:
            raise InvalidPortSpecError(f"invalid port spec {spec!r}: expected [ip]:hostPort:containerPort")
        if not ip:
            raise InvalidPortSpecError(f"invalid port spec {spec!r}: empty IPv6 address")
        return ip, host, container
    parts = body.split(":")
    if len(parts) == 1:
        return "", "", parts[0]
    if len(parts) == 2:
        return "", parts[0], parts[1]
    # ip:host:container, where a bare IPv6 address contains colons itself (docker accepts that too).
    return ":".join(parts[:-2]), parts[-2], parts[-1]


def parse_publish(spec: str) -> list[PortMapping]:
    """Parse one ``-p`` value into its mappings (ranges expand to one mapping per port)."""
    text = spec.strip()
    if not text:
        raise InvalidPortSpecError("empty port spec")
    if any(ch.isspace() for ch in text):
        raise InvalidPortSpecError(f"invalid port spec {spec!r}: contains whitespace")
    body, slash, proto_s = text.rpartition("/") if "/" in text else (text, "", "tcp")
    protocol = _parse_protocol(proto_s, spec) if slash else "tcp"
    if not body:
        raise InvalidPortSpecError(f"invalid port spec {spec!r}: missing container port")
    ip_s, host_s, container_s = _split_address(body, spec)
    if not container_s:
        raise InvalidPortSpecError(f"invalid port spec {spec!r}: missing container port")
    host_ip = _parse_ip(ip_s) if ip_s else ANY_IPV4
    c_start, c_end = _parse_range(container_s, "container port", spec)
    c_count = c_end - c_start + 1
    if not host_s:
        return [PortMapping(host_ip, 0, port, protocol) for port in range(c_start, c_end + 1)]
    h_start, h_end = _parse_range(host_s, "host port", spec, allow_zero=True)
    h_count = h_end - h_start + 1
    if h_count == c_count:
        return [PortMapping(host_ip, h_start + i, c_start + i, protocol) for i in range(c_count)]
    if c_count == 1:
        return [PortMapping(host_ip, h_start, c_start, protocol, host_port_max=h_end)]
    raise InvalidPortSpecError(
        f"invalid port spec {spec!r}: host range {host_s} and container range {container_s} differ in length"
    )


def parse_publish_all(specs: Iterable[str]) -> list[PortMapping]:
    """Parse several ``-p`` values and refuse a host port published twice."""
    out: list[PortMapping] = []
    for spec in specs:
        out.extend(parse_publish(spec))
    check_conflicts(out)
    return out


def check_conflicts(mappings: Iterable[PortMapping]) -> None:
    """Refuse two concrete mappings of the same host port and protocol on overlapping addresses."""
    seen: dict[tuple[int, str], list[str]] = {}
    for m in mappings:
        if not m.is_concrete:
            continue
        ips = seen.setdefault((m.host_port, m.protocol), [])
        for other in ips:
            if other == m.host_ip or ANY_IPV4 in (other, m.host_ip) or "::" in (other, m.host_ip):
                raise InvalidPortSpecError(f"host port {m.host_port}/{m.protocol} is published twice")
        ips.append(m.host_ip)


def parse_exposed(exposed: Iterable[str]) -> list[ExposedPort]:
    """Parse an image config's ``ExposedPorts`` keys (``"80/tcp"``, ``"53/udp"``, ``"8000-8002"``).

    Returns the ports sorted and without duplicates.  A dict may be passed as is (its keys are used).
    """
    found: set[ExposedPort] = set()
    for key in exposed:
        text = str(key).strip()
        port_s, slash, proto_s = text.partition("/")
        protocol = _parse_protocol(proto_s, text) if slash else "tcp"
        start, end = _parse_range(port_s, "exposed port", text)
        found.update(ExposedPort(p, protocol) for p in range(start, end + 1))
    return sorted(found)


def publish_all(exposed: Iterable[str], host_ip: str = ANY_IPV4) -> list[PortMapping]:
    """``-P``: every exposed port on a free host port (``host_port == 0`` until bound)."""
    ip = _parse_ip(host_ip)
    return [PortMapping(ip, 0, e.port, e.protocol) for e in parse_exposed(exposed)]
