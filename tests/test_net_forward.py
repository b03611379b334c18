"""The port forwarder: binding (in-use errors, free ports), TCP and UDP forwarding, retarget without
failures, stats and the control socket.  Loopback tests run anywhere; the namespace ones need root."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.errors import NetworkSetupError, PortInUseError
from engine.net.forward import BoundPorts, Forwarder, bind_all, control, query_stats, retarget
from engine.net.network import BridgeNetwork
from engine.net.ports import PortMapping, parse_publish
from engine.net.probe import port_answers, wait_for_port
from tests.net_helpers import free_port, new_id, session_network, start_in_netns, start_local, stop


def _fetch_tag(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        data = b""
        while chunk := s.recv(64):
            data += chunk
        return data


def _udp_roundtrip(port: int, payload: bytes, timeout: float = 3.0) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(payload, ("127.0.0.1", port))
        return s.recv(65535)


# ---- binding -------------------------------------------------------------------------------------


def test_port_in_use_fails_before_anything_runs() -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    other = free_port()
    try:
        with pytest.raises(PortInUseError) as info:
            bind_all(parse_publish(f"127.0.0.1:{other}:81") + parse_publish(f"127.0.0.1:{port}:80"))
        assert str(info.value) == f"port 127.0.0.1:{port} is already in use"
        # all or nothing: the first port was released again
        again = bind_all(parse_publish(f"127.0.0.1:{other}:81"))
        again.close()
    finally:
        taken.close()


def test_udp_port_in_use() -> None:
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    try:
        with pytest.raises(PortInUseError, match=f"port 127.0.0.1:{port}/udp is already in use"):
            bind_all(parse_publish(f"127.0.0.1:{port}:53/udp"))
    finally:
        taken.close()


def test_free_ports_and_ranges_are_resolved() -> None:
    base = free_port()
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", base))
    blocker.listen()
    try:
        specs = parse_publish("127.0.0.1::80") + parse_publish(f"127.0.0.1:{base}-{base + 20}:81")
        with bind_all(specs) as bound:
            ms = bound.mappings
            assert all(m.is_concrete for m in ms)
            assert ms[0].host_port != 0 and ms[0].container_port == 80
            assert base < ms[1].host_port <= base + 20 and ms[1].container_port == 81
            assert [s.getsockname()[1] for _, s in bound.entries] == [m.host_port for m in ms]
    finally:
        blocker.close()


def test_unavailable_address_is_a_clear_error() -> None:
    with pytest.raises(NetworkSetupError, match="is not on this host"):
        bind_all([PortMapping("192.0.2.250", 0, 80)])


def test_handoff_and_adopt() -> None:
    with bind_all(parse_publish("127.0.0.1::80")) as bound:
        items = bound.handoff()
        adopted = BoundPorts.adopt(items)
        assert adopted.mappings == bound.mappings
        assert adopted.fds() == bound.fds()


# ---- forwarding on loopback (no root needed) -----------------------------------------------------


@pytest.fixture
def two_backends() -> Iterator[tuple[int, list[Any]]]:
    """Two TCP servers on the same port of 127.0.0.1 and 127.0.0.2, answering 'A' and 'B'."""
    port = free_port()
    a = start_local("tag", port, "A", host="127.0.0.1")
    b = start_local("tag", port, "B", host="127.0.0.2")
    try:
        yield port, [a, b]
    finally:
        stop(a)
        stop(b)


def test_tcp_forward_and_retarget_without_failures(two_backends: tuple[int, list[Any]], tmp_path: Path) -> None:
    port, _ = two_backends
    bound = bind_all(parse_publish(f"127.0.0.1::{port}"))
    host_port = bound.mappings[0].host_port
    results: list[bytes] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def client() -> None:
        while not done.is_set():
            try:
                results.append(_fetch_tag(host_port))
            except OSError as exc:  # pragma: no cover - the assertion below reports it
                errors.append(exc)

    with Forwarder(bound, "127.0.0.1") as fwd:
        fwd.serve_control(str(tmp_path / "ctl.sock"))
        workers = [threading.Thread(target=client) for _ in range(4)]
        for w in workers:
            w.start()
        time.sleep(0.3)
        retarget(str(tmp_path / "ctl.sock"), "127.0.0.2")  # from "another process": the control socket
        time.sleep(0.3)
        n_switch = len(results)
        time.sleep(0.3)
        done.set()
        for w in workers:
            w.join(10)
        target, stats = query_stats(str(tmp_path / "ctl.sock"))
    assert not errors, errors[:3]
    assert b"" not in results
    assert set(results) == {b"A", b"B"}
    assert set(results[n_switch + 8:]) == {b"B"}  # (a few were in flight at the switch)
    assert target == "127.0.0.2"
    assert stats[0].total == len(results) and stats[0].failed == 0
    assert stats[0].bytes_out == len(results)
    assert not (tmp_path / "ctl.sock").exists()


def test_tcp_bulk_transfer_both_ways() -> None:
    port = free_port()
    sink = start_local("sink", port)
    try:
        for zero_copy in (True, False):
            bound = bind_all(parse_publish(f"127.0.0.1::{port}"))
            with Forwarder(bound, "127.0.0.1", zero_copy=zero_copy) as fwd:
                payload = bytes(range(256)) * 40000  # ~10 MB
                with socket.create_connection(("127.0.0.1", bound.mappings[0].host_port), timeout=10) as s:
                    s.sendall(payload)
                    s.shutdown(socket.SHUT_WR)  # half-close travels through the forwarder
                    answer = s.recv(64)
                assert int(answer) == len(payload)
                deadline = time.monotonic() + 5
                while fwd.stats()[0].active and time.monotonic() < deadline:
                    time.sleep(0.01)
                st = fwd.stats()[0]
                assert (st.active, st.total, st.bytes_in, st.bytes_out) == (0, 1, len(payload), len(answer))
    finally:
        stop(sink)


def test_refused_target_counts_as_failed_and_probe_says_no() -> None:
    dead_port = free_port()
    bound = bind_all(parse_publish(f"127.0.0.1::{dead_port}"))
    host_port = bound.mappings[0].host_port
    with Forwarder(bound, "127.0.0.1") as fwd:
        assert port_answers("127.0.0.1", host_port, "tcp", timeout=1.0) is False
        deadline = time.monotonic() + 5
        while fwd.stats()[0].failed == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert fwd.stats()[0].failed >= 1


def test_udp_forward_sessions_and_retarget() -> None:
    port = free_port(socket.SOCK_DGRAM)
    a = start_local("udp-echo", port, "A:", host="127.0.0.1")
    b = start_local("udp-echo", port, "B:", host="127.0.0.2")
    try:
        bound = bind_all(parse_publish(f"127.0.0.1::{port}/udp"))
        host_port = bound.mappings[0].host_port
        with Forwarder(bound, "127.0.0.1", udp_idle_timeout=0.5) as fwd:
            assert _udp_roundtrip(host_port, b"ping") == b"A:ping"
            assert _udp_roundtrip(host_port, b"x" * 60000) == b"A:" + b"x" * 60000
            assert fwd.stats()[0].active == 2  # one session per client socket
            fwd.set_target("127.0.0.2")
            assert _udp_roundtrip(host_port, b"pong") == b"B:pong"
            assert port_answers("127.0.0.1", host_port, "udp", timeout=2)
            deadline = time.monotonic() + 5
            while fwd.stats()[0].active and time.monotonic() < deadline:
                time.sleep(0.05)
            st = fwd.stats()[0]
            assert st.active == 0 and st.total == 4
            assert st.bytes_in == 4 + 60000 + 4
    finally:
        stop(a)
        stop(b)


def test_control_socket_protocol(tmp_path: Path) -> None:
    bound = bind_all(parse_publish("127.0.0.1::80"))
    path = str(tmp_path / "c.sock")
    with Forwarder(bound, "127.0.0.1") as fwd:
        fwd.serve_control(path)
        assert control(path, {"op": "ping"}) == {"ok": True}
        answer = control(path, {"op": "stats"})
        assert answer["target"] == "127.0.0.1" and answer["ports"][0]["mapping"]["container_port"] == 80
        with pytest.raises(NetworkSetupError, match="invalid target address"):
            retarget(path, "not-an-ip")
        with pytest.raises(NetworkSetupError, match="unknown op"):
            control(path, {"op": "explode"})
        assert fwd.handle_request(b"[1]") == {"ok": False, "error": "request is not a JSON object"}
        assert fwd.target == "127.0.0.1"
    with pytest.raises(NetworkSetupError, match="cannot reach the port forwarder"):
        control(path, {"op": "ping"})


def test_probe_on_plain_ports() -> None:
    port = free_port()
    assert port_answers("127.0.0.1", port, "tcp", timeout=0.5) is False
    server = start_local("echo", port)
    try:
        assert port_answers("127.0.0.1", port, "tcp", timeout=1.0) is True
        assert wait_for_port("127.0.0.1", port, timeout=2)
    finally:
        stop(server)
    assert port_answers("127.0.0.1", free_port(socket.SOCK_DGRAM), "udp", timeout=0.3) is False


# ---- through a real namespace (root) -------------------------------------------------------------


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from session_network(tmp_path_factory.mktemp("fwdstate"))


@pytest.mark.root
def test_forward_into_namespaces_tcp_udp_and_swap(net: BridgeNetwork) -> None:
    old_id, new_id_ = new_id(), new_id()
    old = net.attach(old_id)
    new = net.attach(new_id_)
    procs = []
    try:
        procs.append(start_in_netns(old.netns_name, "blob", 8000, str(20 * 1024 * 1024)))
        procs.append(start_in_netns(old.netns_name, "udp-echo", 5353, "old:"))
        procs.append(start_in_netns(new.netns_name, "tag", 8000, "new"))
        bound = bind_all(parse_publish("127.0.0.1::8000") + parse_publish("127.0.0.1::5353/udp"))
        tcp_port, udp_port = (m.host_port for m in bound.mappings)
        with Forwarder(bound, old.ip) as fwd:
            assert wait_for_port("127.0.0.1", tcp_port, timeout=5)
            got = 0
            with socket.create_connection(("127.0.0.1", tcp_port), timeout=10) as s:
                while chunk := s.recv(1 << 20):
                    got += len(chunk)
            assert got == 20 * 1024 * 1024
            assert _udp_roundtrip(udp_port, b"q") == b"old:q"
            fwd.set_target(new.ip)  # the swap: same listening sockets, new container
            assert _fetch_tag(tcp_port) == b"new"
            assert fwd.stats()[0].bytes_out >= got + 3  # (+ whatever the readiness probe got)
    finally:
        for p in procs:
            stop(p)
        net.detach(old_id)
        net.detach(new_id_)
