"""Pure tables for docker's -p / -P forms (engine.net.ports)."""

from __future__ import annotations

import pytest

from engine.errors import InvalidPortSpecError
from engine.net.ports import (
    ExposedPort,
    PortMapping,
    check_conflicts,
    parse_exposed,
    parse_publish,
    parse_publish_all,
    publish_all,
)

M = PortMapping


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("80", [M("0.0.0.0", 0, 80, "tcp")]),
        ("8080:80", [M("0.0.0.0", 8080, 80, "tcp")]),
        ("127.0.0.1:8080:80", [M("127.0.0.1", 8080, 80, "tcp")]),
        ("127.0.0.1::80", [M("127.0.0.1", 0, 80, "tcp")]),
        ("[::1]:8080:80", [M("::1", 8080, 80, "tcp")]),
        ("::1:8080:80", [M("::1", 8080, 80, "tcp")]),
        ("[::]:53:53/udp", [M("::", 53, 53, "udp")]),
        ("8080:80/udp", [M("0.0.0.0", 8080, 80, "udp")]),
        ("8080:80/tcp", [M("0.0.0.0", 8080, 80, "tcp")]),
        ("8080:80/UDP", [M("0.0.0.0", 8080, 80, "udp")]),
        ("80/udp", [M("0.0.0.0", 0, 80, "udp")]),
        ("8080-8081:80-81", [M("0.0.0.0", 8080, 80), M("0.0.0.0", 8081, 81)]),
        ("127.0.0.1:8080-8081:80-81/udp", [M("127.0.0.1", 8080, 80, "udp"), M("127.0.0.1", 8081, 81, "udp")]),
        ("80-82", [M("0.0.0.0", 0, 80), M("0.0.0.0", 0, 81), M("0.0.0.0", 0, 82)]),
        ("8000-9000:80", [M("0.0.0.0", 8000, 80, "tcp", host_port_max=9000)]),
        ("65535:1", [M("0.0.0.0", 65535, 1)]),
        ("0:80", [M("0.0.0.0", 0, 80)]),
    ],
)
def test_parse_publish(spec: str, expected: list[PortMapping]) -> None:
    assert parse_publish(spec) == expected


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("", "empty port spec"),
        ("8080:", "missing container port"),
        ("/udp", "missing container port"),
        ("8080:80/sctp", "protocol 'sctp' is not supported"),
        ("8080:80/", "protocol"),
        ("http:80", "host port 'http' is not a number"),
        ("8080:0", "out of range"),
        ("70000:80", "out of range"),
        ("8080:80-81", "differ in length"),
        ("8080-8082:80-81", "differ in length"),
        ("8081-8080:80-81", "reversed"),
        ("1-2000:1-2000", "larger than"),
        ("999.1.1.1:80:80", "invalid host IP address"),
        ("localhost:80:80", "invalid host IP address"),
        ("[::1:80:80", "unterminated IPv6"),
        ("[]:80:80", "empty IPv6"),
        ("80 :80", "whitespace"),
        ("-1:80", "not a number"),
    ],
)
def test_parse_publish_errors(spec: str, fragment: str) -> None:
    with pytest.raises(InvalidPortSpecError) as info:
        parse_publish(spec)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("mapping", "text"),
    [
        (M("0.0.0.0", 8080, 80), "0.0.0.0:8080->80/tcp"),
        (M("127.0.0.1", 5353, 53, "udp"), "127.0.0.1:5353->53/udp"),
        (M("::1", 8080, 80), "[::1]:8080->80/tcp"),
        (M("0.0.0.0", 8000, 80, host_port_max=8010), "0.0.0.0:8000-8010->80/tcp"),
    ],
)
def test_str_like_docker(mapping: PortMapping, text: str) -> None:
    assert str(mapping) == text


def test_mapping_validates_and_round_trips() -> None:
    m = M("127.0.0.1", 8080, 80, "udp")
    assert PortMapping.from_dict(m.to_dict()) == m
    ranged = M("0.0.0.0", 8000, 80, host_port_max=8010)
    assert PortMapping.from_dict(ranged.to_dict()) == ranged
    assert not ranged.is_concrete and m.is_concrete
    assert ranged.with_host_port(8004) == M("0.0.0.0", 8004, 80)
    with pytest.raises(InvalidPortSpecError):
        M("0.0.0.0", 8080, 80, "sctp")  # type: ignore[arg-type]
    with pytest.raises(InvalidPortSpecError):
        M("nope", 8080, 80)
    with pytest.raises(InvalidPortSpecError):
        PortMapping.from_dict({"host_ip": "0.0.0.0"})


@pytest.mark.parametrize(
    ("exposed", "expected"),
    [
        (["80/tcp"], [ExposedPort(80, "tcp")]),
        ({"53/udp": {}, "53/tcp": {}}, [ExposedPort(53, "tcp"), ExposedPort(53, "udp")]),
        (["8000-8002/tcp", "8001"], [ExposedPort(8000, "tcp"), ExposedPort(8001, "tcp"), ExposedPort(8002, "tcp")]),
        ([], []),
    ],
)
def test_parse_exposed(exposed: list[str], expected: list[ExposedPort]) -> None:
    assert parse_exposed(exposed) == expected


def test_parse_exposed_errors() -> None:
    with pytest.raises(InvalidPortSpecError, match="sctp"):
        parse_exposed(["80/sctp"])
    with pytest.raises(InvalidPortSpecError, match="not a number"):
        parse_exposed(["http/tcp"])


def test_publish_all_uses_free_host_ports() -> None:
    assert publish_all({"80/tcp": {}, "53/udp": {}}) == [M("0.0.0.0", 0, 53, "udp"), M("0.0.0.0", 0, 80, "tcp")]
    assert publish_all(["80"], host_ip="127.0.0.1") == [M("127.0.0.1", 0, 80)]
    assert str(ExposedPort(80, "tcp")) == "80/tcp"


def test_conflicting_host_ports_are_refused() -> None:
    with pytest.raises(InvalidPortSpecError, match="8080/tcp is published twice"):
        parse_publish_all(["8080:80", "127.0.0.1:8080:81"])
    # same number, different protocol or different specific addresses: fine
    assert len(parse_publish_all(["8080:80", "8080:80/udp", "80", "81"])) == 4
    check_conflicts([M("127.0.0.1", 8080, 80), M("127.0.0.2", 8080, 80)])
