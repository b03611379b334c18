"""Real bridge + namespaces + veths (root): reachability by IP, /etc/hosts by name, teardown, gc."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.errors import InvalidPortSpecError, NetworkSetupError
from engine.net import bridge, netns
from engine.net.network import Attachment, BridgeNetwork, mappings_to_forward, parse_network_mode
from engine.net.ports import parse_publish
from tests.net_helpers import new_id, run_in_netns, session_network, start_in_netns, stop

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from session_network(tmp_path_factory.mktemp("netstate"))


def _ip_netns_list() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout


def _ip_link() -> str:
    return subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout


def test_attach_two_containers_reach_each_other(net: BridgeNetwork, tmp_path: Path) -> None:
    a_id, b_id = new_id(), new_id()
    a = net.attach(a_id, name="alpha", etc_dir=tmp_path / "a")
    b = net.attach(b_id, name="beta", etc_dir=tmp_path / "b")
    try:
        assert a.netns_path == f"/run/netns/{a.netns_name}" and a.netns_name.endswith(a_id[:12])
        assert a.gateway == net.gateway and a.prefixlen == 24 and a.ip != b.ip
        assert Attachment.from_dict(a.to_dict()) == a
        assert a.runtime_namespace() == {"type": "network", "path": a.netns_path}
        assert a.netns_name in _ip_netns_list() and a.host_veth in _ip_link()
        assert a.host_veth in bridge.bridge_ports(net.bridge)
        inside = dict(netns.interfaces_inside(a.netns_name))
        assert inside["eth0"] == [a.cidr] and "lo" in inside
        route = subprocess.run(["ip", "netns", "exec", a.netns_name, "ip", "route"], capture_output=True, text=True)
        assert f"default via {net.gateway} dev eth0" in route.stdout

        # TCP between the namespaces, by IP
        server = start_in_netns(b.netns_name, "echo", 7000)
        try:
            code = (f"import socket; s = socket.create_connection(({b.ip!r}, 7000), timeout=5); "
                    "s.sendall(b'hello'); print(s.recv(5).decode())")
            assert run_in_netns(a.netns_name, code).stdout.strip() == "hello"
            # and from the host through the bridge
            code_host = __import__("socket").create_connection((b.ip, 7000), timeout=5)
            with code_host:
                code_host.sendall(b"hi")
                assert code_host.recv(2) == b"hi"
        finally:
            stop(server)
        # ping the gateway and the peer (busybox's ping, when present)
        if subprocess.run(["busybox", "ping", "--help"], capture_output=True).returncode in (0, 1):
            for target in (net.gateway, b.ip):
                ping = subprocess.run(["ip", "netns", "exec", a.netns_name, "busybox", "ping", "-c1", "-W2", target],
                                      capture_output=True, text=True)
                assert ping.returncode == 0, ping.stdout + ping.stderr

        # by name: each /etc/hosts lists the other (the runtime bind-mounts these files)
        assert f"{b.ip}\tbeta" in (tmp_path / "a" / "hosts").read_text()
        assert f"{a.ip}\talpha" in (tmp_path / "b" / "hosts").read_text()
    finally:
        net.detach(a_id)
        net.detach(b_id)
    assert f"{a.ip}\t" not in (tmp_path / "b" / "hosts").read_text()


def test_detach_leaves_nothing_and_is_idempotent(net: BridgeNetwork) -> None:
    cid = new_id()
    att = net.attach(cid)
    assert net.detach(cid) is True
    assert att.netns_name not in _ip_netns_list()
    assert att.host_veth not in _ip_link()
    assert cid not in net.allocations()
    assert net.detach(cid) is False


def test_attach_replaces_leftovers_of_the_same_id(net: BridgeNetwork) -> None:
    cid = new_id()
    first = net.attach(cid)
    second = net.attach(cid)  # e.g. a restart after a crash: same address, fresh namespace
    try:
        assert second.ip == first.ip
        assert _ip_netns_list().count(second.netns_name) == 1
    finally:
        net.detach(cid)


def test_gc_removes_leftovers_of_dead_containers_only(net: BridgeNetwork) -> None:
    live, dead = new_id(), new_id()
    live_att = net.attach(live)
    dead_att = net.attach(dead)
    # a crash: the namespace outlived the IPAM entry, and a stray veth is still on the bridge
    net.ipam.release(dead)
    try:
        report = net.gc([live])
        assert dead_att.netns_name in report.netns_removed
        assert dead_att.netns_name not in _ip_netns_list() and dead_att.host_veth not in _ip_link()
        assert live_att.netns_name in _ip_netns_list() and live in net.allocations()
        # an IPAM entry without a namespace (crash between allocate and netns creation)
        net.ipam.allocate("f" * 64)
        assert net.gc([live]).released == ("f" * 64,)
        assert net.gc([live]).empty
    finally:
        net.detach(live)


def test_gc_never_touches_other_networks(net: BridgeNetwork, tmp_path: Path) -> None:
    other = BridgeNetwork(tmp_path, bridge=net.bridge, subnet=net.subnet, netns_prefix=net.netns_prefix + "o-")
    cid = new_id()
    att = net.attach(cid)
    try:
        other.gc([])
        assert att.netns_name in _ip_netns_list()
    finally:
        net.detach(cid)


def test_gc_of_another_state_dir_with_the_same_prefix_leaves_our_namespaces(net: BridgeNetwork,
                                                                             tmp_path: Path) -> None:
    """Two dockyard roots (a user's and a test's) share the netns name prefix; neither gc may take
    the other's namespaces: only those its IPAM knows or whose veth hangs on its own bridge."""
    other = BridgeNetwork(tmp_path / "other-root", bridge=(net.bridge + "q")[:15], subnet="10.214.251.0/24",
                          netns_prefix=net.netns_prefix)
    cid = new_id()
    att = net.attach(cid)
    try:
        report = other.gc([])
        assert att.netns_name not in report.netns_removed
        assert att.netns_name in _ip_netns_list()
    finally:
        net.detach(cid)


def test_subnet_clash_is_refused(net: BridgeNetwork, tmp_path: Path) -> None:
    clash = BridgeNetwork(tmp_path, bridge=(net.bridge + "x")[:15], subnet=net.subnet)
    with pytest.raises(NetworkSetupError, match="overlaps"):
        clash.ensure()
    assert bridge.bridge_index(clash.bridge) is None


def test_ensure_is_idempotent_and_refuses_non_bridges(net: BridgeNetwork, tmp_path: Path) -> None:
    assert net.ensure() == net.ensure()
    with pytest.raises(NetworkSetupError, match="is not a bridge"):
        bridge.ensure_bridge("lo", "10.214.250.1", 24)


def test_bad_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(NetworkSetupError):
        BridgeNetwork(tmp_path, bridge="a-very-long-bridge-name")
    with pytest.raises(NetworkSetupError):
        BridgeNetwork(tmp_path, veth_prefix="toolong")
    with pytest.raises(NetworkSetupError, match="invalid container id"):
        BridgeNetwork(tmp_path).netns_name("../etc")


def test_network_modes() -> None:
    assert parse_network_mode("bridge") == "bridge" and parse_network_mode("HOST") == "host"
    assert parse_network_mode("none") == "none" and parse_network_mode("default") == "bridge"
    with pytest.raises(NetworkSetupError, match="unknown network mode"):
        parse_network_mode("container:x")
    maps = parse_publish("8080:80")
    assert mappings_to_forward("bridge", maps) == maps
    assert mappings_to_forward("host", maps) == []
    assert mappings_to_forward("none", []) == []
    with pytest.raises(InvalidPortSpecError, match="--network none has no network"):
        mappings_to_forward("none", maps)
