"""Pure tables for a container's /etc/hosts, /etc/hostname and /etc/resolv.conf."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.net.etcfiles import write_etc_files
from engine.net.hosts import HostEntry, peer_entry, render_hostname, render_hosts, render_resolv_conf


def test_hosts_lists_self_and_peers_by_name() -> None:
    text = render_hosts(
        "web1", "10.213.0.2", name="web",
        peers=[peer_entry("10.213.0.3", "db", "db", "abcdef0123456789"), peer_entry("10.213.0.4", None, "cache")],
    )
    lines = text.splitlines()
    assert lines[0] == "127.0.0.1\tlocalhost"
    assert "10.213.0.2\tweb1 web" in lines
    assert "10.213.0.3\tdb abcdef012345" in lines
    assert "10.213.0.4\tcache" in lines
    assert text.endswith("\n")


def test_hosts_skips_peers_shadowing_own_names() -> None:
    text = render_hosts("web", "10.213.0.2", peers=[HostEntry("10.213.0.9", ("web",)), HostEntry("10.213.0.2", ("x",))])
    assert "10.213.0.9" not in text and "\tx" not in text


def test_hosts_without_network_aliases_loopback() -> None:
    text = render_hosts("box", None, extra=[HostEntry("192.0.2.7", ("gw",))])
    assert text.splitlines()[0] == "127.0.0.1\tlocalhost box"
    assert text.splitlines()[-1] == "192.0.2.7\tgw"


@pytest.mark.parametrize(
    ("host", "kwargs", "expected"),
    [
        ("nameserver 192.0.2.53\nsearch example.org\noptions ndots:2\n", {},
         "nameserver 192.0.2.53\nsearch example.org\noptions ndots:2\n"),
        ("nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .\n", {}, "options edns0 trust-ad\nsearch .\n"),
        ("nameserver 127.0.0.1\nnameserver ::1\nnameserver 10.0.0.2\n", {}, "nameserver 10.0.0.2\n"),
        ("# comment\n; other\n\nnameserver fe80::1%eth0\n", {}, "nameserver fe80::1%eth0\n"),
        ("nameserver 127.0.0.53\n", {}, ""),
        ("nameserver 127.0.0.53\n", {"keep_loopback": True}, "nameserver 127.0.0.53\n"),
        ("nameserver 10.0.0.2\nsearch a\n", {"nameservers": ["192.0.2.1"]}, "nameserver 192.0.2.1\nsearch a\n"),
        ("", {}, ""),
    ],
)
def test_resolv_conf(host: str, kwargs: dict[str, object], expected: str) -> None:
    assert render_resolv_conf(host, **kwargs) == expected  # type: ignore[arg-type]


def test_hostname() -> None:
    assert render_hostname("abc") == "abc\n"


def test_write_etc_files_per_mode(tmp_path: Path) -> None:
    resolv = tmp_path / "host-resolv.conf"
    resolv.write_text("nameserver 127.0.0.53\nnameserver 192.0.2.53\n")
    files = write_etc_files(tmp_path / "b", hostname="web", ip="10.213.0.2", host_resolv_conf=resolv)
    assert "10.213.0.2\tweb" in files.hosts.read_text()
    assert files.resolv_conf.read_text() == "nameserver 192.0.2.53\n"
    assert files.hostname.read_text() == "web\n"
    assert [c for _, c in files.mounts()] == ["/etc/hosts", "/etc/hostname", "/etc/resolv.conf"]
    inode = files.hosts.stat().st_ino
    files2 = write_etc_files(tmp_path / "b", hostname="web2", ip="10.213.0.2", host_resolv_conf=resolv)
    assert files2.hosts.stat().st_ino == inode  # rewritten in place: a bind mount keeps seeing it
    none = write_etc_files(tmp_path / "n", hostname="box", mode="none", host_resolv_conf=resolv)
    assert none.resolv_conf.read_text() == ""
    assert "127.0.0.1\tlocalhost box" in none.hosts.read_text()
    host = write_etc_files(tmp_path / "h", hostname="box", mode="host", host_resolv_conf=resolv)
    assert host.resolv_conf.read_text() == "nameserver 127.0.0.53\nnameserver 192.0.2.53\n"
