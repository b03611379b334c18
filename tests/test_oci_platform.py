"""Platform: parsing and normalisation, JSON round trip, matching and choosing from a manifest list."""

from __future__ import annotations

from typing import Any

import pytest

from engine.errors import InvalidPlatformError
from engine.oci.platform import Platform, format_platforms


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("linux/amd64", "linux/amd64"),
        ("linux/x86_64", "linux/amd64"),
        ("linux/x86-64", "linux/amd64"),
        ("linux/amd64/v1", "linux/amd64"),
        ("linux/amd64/v3", "linux/amd64/v3"),
        ("linux/aarch64", "linux/arm64"),
        ("linux/arm64/v8", "linux/arm64"),
        ("linux/arm64/8", "linux/arm64"),
        ("linux/arm64/v8.0", "linux/arm64"),
        ("linux/arm64/v9.0", "linux/arm64/v9"),
        ("linux/arm64/v8.2", "linux/arm64/v8.2"),
        ("linux/arm", "linux/arm/v7"),
        ("linux/arm/7", "linux/arm/v7"),
        ("linux/arm/v6", "linux/arm/v6"),
        ("linux/armhf", "linux/arm/v7"),
        ("linux/armel", "linux/arm/v6"),
        ("linux/armv7l", "linux/arm/v7"),
        ("linux/i386", "linux/386"),
        ("linux/i686", "linux/386"),
        ("linux/ppc64le", "linux/ppc64le"),
        ("linux/s390x", "linux/s390x"),
        ("linux/riscv64", "linux/riscv64"),
        ("LINUX/AMD64", "linux/amd64"),
        ("  linux/arm64  ", "linux/arm64"),
        ("arm64", "linux/arm64"),
        ("x86_64", "linux/amd64"),
        ("windows/amd64", "windows/amd64"),
    ],
)
def test_parse_normalises(spec: str, expected: str) -> None:
    platform = Platform.parse(spec)
    assert str(platform) == expected
    assert Platform.parse(expected) == platform
    assert platform.normalized() == platform


def test_bare_os_takes_the_host_architecture() -> None:
    assert Platform.parse("linux") == Platform("linux", Platform.host().architecture, Platform.host().variant)


@pytest.mark.parametrize("spec", ["", "   ", "linux/", "/amd64", "linux//v7", "linux/arm/v7/x", "linux/a md64",
                                  "linux/amd64;rm"])
def test_parse_rejects_malformed_specs(spec: str) -> None:
    with pytest.raises(InvalidPlatformError, match="expected os/arch"):
        Platform.parse(spec)


def test_host_is_normalised() -> None:
    host = Platform.host()
    assert host.os == "linux"
    assert host.normalized() == host
    assert host.matches(host)


@pytest.mark.parametrize(
    "data",
    [
        {"architecture": "amd64", "os": "linux"},
        {"architecture": "arm64", "os": "linux", "variant": "v8"},
        {"architecture": "arm", "os": "linux"},
        {"architecture": "x86_64", "os": "linux"},
        {"architecture": "amd64", "os": "windows", "os.version": "10.0.17763.1879",
         "os.features": ["win32k"]},
    ],
)
def test_json_round_trip_keeps_what_the_document_says(data: dict[str, Any]) -> None:
    platform = Platform.from_json(data)
    assert platform.to_json() == data
    assert Platform.from_json(platform.to_json()) == platform


def test_json_round_trip_of_parsed_platforms() -> None:
    for spec in ("linux/amd64", "linux/arm/v6", "linux/arm64", "linux/amd64/v2"):
        platform = Platform.parse(spec)
        assert Platform.from_json(platform.to_json()) == platform


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (None, "os and architecture"),
        ([], "os and architecture"),
        ({"os": "linux"}, "os and architecture"),
        ({"architecture": "amd64"}, "os and architecture"),
        ({"architecture": 1, "os": "linux"}, "os and architecture"),
        ({"architecture": "amd64", "os": "linux", "variant": 7}, "variant"),
        ({"architecture": "amd64", "os": "linux", "os.version": 10}, "os.version"),
        ({"architecture": "amd64", "os": "linux", "os.features": "x"}, "os.features"),
        ({"architecture": "amd64", "os": "linux", "os.features": [1]}, "os.features"),
    ],
)
def test_from_json_rejects_bad_objects(data: Any, why: str) -> None:
    with pytest.raises(InvalidPlatformError, match=why):
        Platform.from_json(data)


P = Platform.parse


@pytest.mark.parametrize(
    ("want", "candidate", "runs"),
    [
        ("linux/amd64", "linux/amd64", True),
        ("linux/amd64", "linux/x86_64", True),
        ("linux/amd64", "linux/386", True),
        ("linux/amd64", "linux/amd64/v2", False),
        ("linux/amd64/v3", "linux/amd64/v2", True),
        ("linux/amd64/v3", "linux/amd64", True),
        ("linux/amd64/v2", "linux/amd64/v3", False),
        ("linux/amd64", "linux/arm64", False),
        ("linux/amd64", "windows/amd64", False),
        ("linux/arm64", "linux/arm64/v8", True),
        ("linux/arm64/v8", "linux/arm64", True),
        ("linux/arm64", "linux/arm/v8", True),
        ("linux/arm64", "linux/arm/v7", True),
        ("linux/arm64", "linux/arm/v5", True),
        ("linux/arm64", "linux/arm64/v9", False),
        ("linux/arm64/v9", "linux/arm64", True),
        ("linux/arm64/v8.2", "linux/arm64/v8.1", True),
        ("linux/arm64/v8.1", "linux/arm64/v8.2", False),
        ("linux/arm/v7", "linux/arm", True),
        ("linux/arm/v7", "linux/arm/v6", True),
        ("linux/arm/v7", "linux/arm/v5", True),
        ("linux/arm/v6", "linux/arm/v7", False),
        ("linux/arm/v7", "linux/arm/v8", False),
        ("linux/arm/v8", "linux/arm/v7", True),
        ("linux/arm", "linux/arm64", False),
        ("linux/386", "linux/amd64", False),
        ("linux/ppc64le", "linux/ppc64le", True),
        ("linux/s390x", "linux/ppc64le", False),
    ],
)
def test_matches(want: str, candidate: str, runs: bool) -> None:
    assert P(want).matches(P(candidate)) is runs


def test_matches_normalises_document_platforms() -> None:
    want = P("linux/arm64")
    assert want.matches(Platform.from_json({"architecture": "aarch64", "os": "linux", "variant": "v8"}))
    assert P("linux/arm/v7").matches(Platform.from_json({"architecture": "arm", "os": "linux"}))
    assert P("linux/amd64").matches(Platform.from_json({"architecture": "x86_64", "os": "Linux"}))


def _pick(want: str, candidates: list[str]) -> str | None:
    return P(want).best_match([(Platform.from_json(dict(zip(("os", "architecture", "variant"),
                                                            c.split("/"), strict=False))), c)
                               for c in candidates])


@pytest.mark.parametrize(
    ("want", "candidates", "chosen"),
    [
        ("linux/amd64", ["linux/arm64", "linux/amd64", "linux/386"], "linux/amd64"),
        ("linux/amd64", ["linux/386", "linux/amd64"], "linux/amd64"),
        ("linux/amd64", ["linux/arm64", "linux/386"], "linux/386"),
        ("linux/amd64", ["linux/amd64/v2", "linux/amd64/v3"], None),
        ("linux/amd64/v3", ["linux/amd64", "linux/amd64/v2", "linux/amd64/v4"], "linux/amd64/v2"),
        ("linux/arm64", ["linux/arm/v7", "linux/arm64/v8", "linux/amd64"], "linux/arm64/v8"),
        ("linux/arm64", ["linux/arm/v6", "linux/arm/v7"], "linux/arm/v7"),
        ("linux/arm/v7", ["linux/arm/v5", "linux/arm/v6", "linux/arm64"], "linux/arm/v6"),
        ("linux/arm/v7", ["linux/arm/v8"], None),
        ("linux/arm/v7", ["linux/arm"], "linux/arm"),
        ("linux/s390x", ["linux/amd64", "linux/arm64"], None),
        ("linux/amd64", [], None),
        # Equally good candidates: the first one listed wins.
        ("linux/amd64", ["linux/x86_64", "linux/amd64"], "linux/x86_64"),
    ],
)
def test_best_match(want: str, candidates: list[str], chosen: str | None) -> None:
    assert _pick(want, candidates) == chosen


def test_compatible_lists_best_first() -> None:
    assert [str(p) for p in P("linux/arm64").compatible()] == [
        "linux/arm64", "linux/arm/v8", "linux/arm/v7", "linux/arm/v6", "linux/arm/v5"]
    assert [str(p) for p in P("linux/amd64/v3").compatible()] == [
        "linux/amd64/v3", "linux/amd64/v2", "linux/amd64", "linux/386"]
    assert [str(p) for p in P("linux/arm64/v9.1").compatible()][:4] == [
        "linux/arm64/v9.1", "linux/arm64/v9", "linux/arm64/v8.6", "linux/arm64/v8.5"]
    assert [str(p) for p in P("linux/riscv64").compatible()] == ["linux/riscv64"]


def test_format_platforms() -> None:
    assert format_platforms([P("linux/amd64"), P("linux/arm/v7")]) == "linux/amd64, linux/arm/v7"
