"""A userspace port forwarder: host ``ip:port`` -> ``target_ip:container_port``, TCP and UDP.

Two steps, so a taken port fails ``run`` before the container starts::

    ports = bind_all(mappings)                 # PortInUseError("port 127.0.0.1:8080 is already in use")
    ports.mappings                             # concrete: host port 0 replaced by the port the kernel chose
    fwd = Forwarder(ports, target_ip).start()  # threads; listeners stay open for the forwarder's life
    fwd.serve_control("/run/.../ports.sock")   # optional: stats / retarget from other processes
    fwd.set_target(new_ip)                     # zero-downtime swap: new connections go to new_ip
    fwd.stop()

With no target (``Forwarder(ports, None)``, or ``set_target(None)``) the forwarder still accepts, and
resets each connection at once (UDP datagrams are dropped): a client of a port whose container is not
there yet fails fast instead of waiting in the listen backlog until its own timeout.

The bound sockets can be handed to another process (the container monitor) with
``ports.handoff()`` -> ``subprocess.Popen(..., pass_fds=ports.fds())`` -> ``BoundPorts.adopt(items)``.

TCP: one selector thread accepts; each connection gets two blocking pump threads (one per
direction) that move data with ``os.splice`` through a pipe (zero-copy; falls back to ``recv_into``
with a large buffer where splice is unavailable).  Half-closes are propagated with ``shutdown``.
UDP: each client address gets its own connected socket to the target (a session) that expires after
``udp_idle_timeout`` seconds without traffic; replies go back from the listening socket.

Retargeting changes where *new* TCP connections go (existing ones finish against the old target)
and drops UDP sessions, so the next datagram of every client reaches the new target.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import ipaddress
import json
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.errors import NetworkSetupError, PortInUseError, os_error_message
from engine.net.ports import PortMapping

SPLICE_CHUNK = 1 << 20
COPY_BUFFER = 256 * 1024
LISTEN_BACKLOG = 4096
UDP_MAX_DATAGRAM = 65535
_HAVE_SPLICE = hasattr(os, "splice")


# ---- binding ---------------------------------------------------------------------------------------


def _family(ip: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in ip else socket.AF_INET


def _describe(m: PortMapping, port: int | None = None) -> str:
    ip = f"[{m.host_ip}]" if m.is_ipv6 else m.host_ip
    suffix = "/udp" if m.protocol == "udp" else ""
    return f"{ip}:{m.host_port if port is None else port}{suffix}"


def _bind_one(m: PortMapping, port: int) -> socket.socket:
    kind = socket.SOCK_STREAM if m.protocol == "tcp" else socket.SOCK_DGRAM
    sock = socket.socket(_family(m.host_ip), kind)
    try:
        if m.protocol == "tcp":
            # Lets us bind over TIME_WAIT leftovers; a port somebody listens on still fails.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if m.is_ipv6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((m.host_ip, port))
        if m.protocol == "tcp":
            sock.listen(LISTEN_BACKLOG)
    except BaseException:
        sock.close()
        raise
    return sock


def _bind_error(exc: OSError, m: PortMapping, port: int) -> NetworkSetupError:
    where = _describe(m, port)
    if exc.errno == errno.EADDRINUSE:
        return PortInUseError(f"port {where} is already in use")
    if exc.errno == errno.EADDRNOTAVAIL:
        return NetworkSetupError(f"cannot bind {where}: address {m.host_ip} is not on this host")
    if exc.errno == errno.EACCES:
        return NetworkSetupError(f"cannot bind {where}: permission denied (ports below 1024 need root)")
    return NetworkSetupError(os_error_message(exc, f"cannot bind {where}"))


class BoundPorts:
    """Listening sockets for a set of concrete mappings (owns the sockets; close() or hand them off)."""

    def __init__(self, entries: Sequence[tuple[PortMapping, socket.socket]]) -> None:
        self._entries = list(entries)

    @property
    def mappings(self) -> list[PortMapping]:
        """The concrete mappings (host port 0 and ranges replaced by the bound port)."""
        return [m for m, _ in self._entries]

    @property
    def entries(self) -> list[tuple[PortMapping, socket.socket]]:
        return list(self._entries)

    def fds(self) -> list[int]:
        """File descriptors to pass to a child process (``Popen(pass_fds=...)``)."""
        return [s.fileno() for _, s in self._entries]

    def handoff(self) -> list[dict[str, Any]]:
        """JSON-able description for :meth:`adopt` in a process that inherited :meth:`fds`."""
        return [{**m.to_dict(), "fd": s.fileno()} for m, s in self._entries]

    @classmethod
    def adopt(cls, items: Iterable[Mapping[str, Any]]) -> BoundPorts:
        """Rebuild from :meth:`handoff` output in the process that inherited the descriptors."""
        entries: list[tuple[PortMapping, socket.socket]] = []
        for item in items:
            try:
                sock = socket.socket(fileno=int(item["fd"]))
            except (OSError, KeyError, ValueError) as exc:
                raise NetworkSetupError(f"cannot adopt listening socket {dict(item)!r}") from exc
            entries.append((PortMapping.from_dict(item), sock))
        return cls(entries)

    def close(self) -> None:
        for _, sock in self._entries:
            with contextlib.suppress(OSError):
                sock.close()

    def __enter__(self) -> BoundPorts:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def bind_all(mappings: Iterable[PortMapping]) -> BoundPorts:
    """Bind every mapping's host side now (all or nothing).

    Raises PortInUseError naming the first taken port (nothing stays bound).  Host port 0 gets a
    free port; a host range (``8000-8010:80``) gets its first free port.
    """
    entries: list[tuple[PortMapping, socket.socket]] = []
    try:
        for m in mappings:
            if m.host_port_max is None:
                try:
                    sock = _bind_one(m, m.host_port)
                except OSError as exc:
                    raise _bind_error(exc, m, m.host_port) from exc
            else:
                sock = _bind_first_free(m)
            entries.append((m.with_host_port(sock.getsockname()[1]), sock))
    except BaseException:
        for _, sock in entries:
            sock.close()
        raise
    return BoundPorts(entries)


def _bind_first_free(m: PortMapping) -> socket.socket:
    assert m.host_port_max is not None
    for port in range(max(m.host_port, 1), m.host_port_max + 1):
        try:
            return _bind_one(m, port)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise _bind_error(exc, m, port) from exc
    raise PortInUseError(f"no free port in {m.host_address} ({m.protocol})")


# ---- statistics ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PortStats:
    """Traffic through one mapping: connections (TCP) or sessions (UDP), and bytes each way."""

    mapping: PortMapping
    active: int = 0
    total: int = 0
    bytes_in: int = 0  # client -> container
    bytes_out: int = 0  # container -> client
    failed: int = 0  # connections the target refused / did not answer

    def to_dict(self) -> dict[str, Any]:
        return {"mapping": self.mapping.to_dict(), "active": self.active, "total": self.total,
                "bytes_in": self.bytes_in, "bytes_out": self.bytes_out, "failed": self.failed}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PortStats:
        return cls(PortMapping.from_dict(data["mapping"]), int(data["active"]), int(data["total"]),
                   int(data["bytes_in"]), int(data["bytes_out"]), int(data["failed"]))


class _Counters:
    __slots__ = ("active", "bytes_in", "bytes_out", "failed", "lock", "total")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active = self.total = self.bytes_in = self.bytes_out = self.failed = 0

    def add_in(self, n: int) -> None:
        with self.lock:
            self.bytes_in += n

    def add_out(self, n: int) -> None:
        with self.lock:
            self.bytes_out += n

    def opened(self) -> None:
        with self.lock:
            self.active += 1
            self.total += 1

    def closed(self, *, failed: bool = False) -> None:
        with self.lock:
            self.active -= 1
            self.failed += failed

    def snapshot(self, m: PortMapping) -> PortStats:
        with self.lock:
            return PortStats(m, self.active, self.total, self.bytes_in, self.bytes_out, self.failed)


# ---- TCP pumps -------------------------------------------------------------------------------------


def _pump_splice(src: socket.socket, dst: socket.socket, count: Callable[[int], None]) -> None:
    r, w = os.pipe2(os.O_CLOEXEC)
    try:
        with contextlib.suppress(OSError):
            fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, SPLICE_CHUNK)
        src_fd, dst_fd = src.fileno(), dst.fileno()
        while True:
            n = os.splice(src_fd, w, SPLICE_CHUNK, flags=os.SPLICE_F_MOVE)
            if n == 0:
                return
            count(n)
            while n > 0:
                n -= os.splice(r, dst_fd, n, flags=os.SPLICE_F_MOVE)
    finally:
        os.close(r)
        os.close(w)


def _pump_copy(src: socket.socket, dst: socket.socket, count: Callable[[int], None]) -> None:
    buf = bytearray(COPY_BUFFER)
    view = memoryview(buf)
    while True:
        n = src.recv_into(buf)
        if n == 0:
            return
        count(n)
        dst.sendall(view[:n])


class _Connection:
    """One proxied TCP connection: two pumps; the last one to finish closes both sockets."""

    def __init__(self, client: socket.socket, upstream: socket.socket, counters: _Counters,
                 splice: bool, on_done: Callable[[_Connection], None]) -> None:
        self.client = client
        self.upstream = upstream
        self.counters = counters
        self.splice = splice
        self._on_done = on_done
        self._left = 2
        self._lock = threading.Lock()

    def run(self) -> None:
        other = threading.Thread(target=self._direction, args=(self.upstream, self.client, False),
                                 name="dockyard-fwd-out", daemon=True)
        other.start()
        self._direction(self.client, self.upstream, True)

    def _direction(self, src: socket.socket, dst: socket.socket, inbound: bool) -> None:
        count = self.counters.add_in if inbound else self.counters.add_out
        try:
            if self.splice:
                _pump_splice(src, dst, count)
            else:
                _pump_copy(src, dst, count)
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
        except OSError:
            self.abort()  # reset / broken pipe: wake the other direction
        finally:
            with self._lock:
                self._left -= 1
                last = self._left == 0
            if last:
                self.client.close()
                self.upstream.close()
                self._on_done(self)

    def abort(self) -> None:
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _reset(client: socket.socket) -> None:
    """Close with an RST: the client sees the port refuse rather than an empty answer or a hang."""
    with contextlib.suppress(OSError):
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    client.close()


# ---- UDP sessions ----------------------------------------------------------------------------------


class _UdpSession:
    __slots__ = ("client", "last", "listener", "sock", "target")

    def __init__(self, sock: socket.socket, listener: socket.socket, client: Any, target: str) -> None:
        self.sock = sock
        self.listener = listener
        self.client = client
        self.target = target
        self.last = time.monotonic()


# ---- the forwarder ---------------------------------------------------------------------------------


class Forwarder:
    """Forwards every bound port to ``target_ip:<container_port>`` until :meth:`stop`.

    ``target_ip=None`` is the "no target" mode: connections are accepted and reset at once, datagrams
    dropped, until :meth:`set_target` names an address.
    """

    def __init__(
        self, ports: BoundPorts, target_ip: str | None, *, udp_idle_timeout: float = 60.0,
        connect_timeout: float = 5.0, zero_copy: bool | None = None,
    ) -> None:
        self._ports = ports
        self._target = self._check_ip(target_ip) if target_ip is not None else None
        self.udp_idle_timeout = udp_idle_timeout
        self.connect_timeout = connect_timeout
        self.zero_copy = _HAVE_SPLICE if zero_copy is None else (zero_copy and _HAVE_SPLICE)
        self._counters = {id(sock): _Counters() for _, sock in ports.entries}
        self._lock = threading.Lock()
        self._connections: set[_Connection] = set()
        self._sessions: dict[tuple[int, Any], _UdpSession] = {}
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._flush_udp = False
        self._control: socket.socket | None = None
        self._control_path: str | None = None

    # -- public ---------------------------------------------------------------------------------------

    @property
    def target(self) -> str | None:
        """Where new connections go; ``None`` while there is no target (connections are refused)."""
        return self._target

    @property
    def mappings(self) -> list[PortMapping]:
        return self._ports.mappings

    def start(self) -> Forwarder:
        if self._thread is not None:
            return self
        for m, sock in self._ports.entries:
            sock.setblocking(False)
            self._selector.register(sock, selectors.EVENT_READ, ("tcp" if m.protocol == "tcp" else "udp", m, sock))
        self._selector.register(self._wake_r, selectors.EVENT_READ, ("wake", None, None))
        self._thread = threading.Thread(target=self._loop, name="dockyard-forwarder", daemon=True)
        self._thread.start()
        return self

    def set_target(self, ip: str | None) -> None:
        """Send new connections (and all UDP traffic) to ``ip``; listeners stay open.

        ``None`` goes back to the no-target mode (new connections are reset at once)."""
        checked = self._check_ip(ip) if ip is not None else None
        with self._lock:
            self._target = checked
            self._flush_udp = True
        self._wake()

    def stats(self) -> list[PortStats]:
        """Cheap counters per mapping (a lock per mapping, no syscalls)."""
        return [self._counters[id(sock)].snapshot(m) for m, sock in self._ports.entries]

    def serve_control(self, path: str) -> None:
        """Answer JSON-line requests on a unix socket at ``path`` (mode 0600), see :func:`control`.

        Requests: ``{"op": "stats"}`` -> ``{"ok": true, "target": ip, "ports": [PortStats...]}``;
        ``{"op": "retarget", "ip": ip}`` -> ``{"ok": true, "target": ip}``; ``{"op": "ping"}``.
        Errors: ``{"ok": false, "error": "one line"}``.
        """
        if self._control is not None:
            raise NetworkSetupError("the forwarder already serves a control socket")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            old = os.umask(0o177)
            try:
                sock.bind(path)
            finally:
                os.umask(old)
            sock.listen(16)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise NetworkSetupError(os_error_message(exc, f"cannot serve control socket {path}")) from exc
        self._control, self._control_path = sock, path
        self._selector.register(sock, selectors.EVENT_READ, ("control", None, sock))
        self._wake()

    def stop(self) -> None:
        """Close listeners, the control socket and every connection; wait for the loop to end."""
        self._stopping = True
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            conns = list(self._connections)
        for conn in conns:
            conn.abort()
        self._ports.close()
        for session in list(self._sessions.values()):
            session.sock.close()
        self._sessions.clear()
        if self._control is not None:
            self._control.close()
            if self._control_path:
                with contextlib.suppress(OSError):
                    os.unlink(self._control_path)
        with contextlib.suppress(OSError):
            os.close(self._wake_r)
        with contextlib.suppress(OSError):
            os.close(self._wake_w)
        self._selector.close()

    def __enter__(self) -> Forwarder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the loop -------------------------------------------------------------------------------------

    @staticmethod
    def _check_ip(ip: str) -> str:
        try:
            return str(ipaddress.ip_address(ip))
        except ValueError as exc:
            raise NetworkSetupError(f"invalid target address {ip!r}") from exc

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    def _loop(self) -> None:
        next_expiry = time.monotonic() + 1.0
        while not self._stopping:
            for key, _ in self._selector.select(timeout=1.0):
                kind, mapping, sock = key.data
                if kind == "wake":
                    with contextlib.suppress(OSError):
                        os.read(self._wake_r, 4096)
                elif kind == "tcp":
                    self._accept(mapping, sock)
                elif kind == "udp":
                    self._udp_from_client(mapping, sock)
                elif kind == "udp-session":
                    self._udp_from_target(sock)
                elif kind == "control":
                    self._accept_control(sock)
            if self._flush_udp:
                with self._lock:
                    self._flush_udp = False
                self._expire_udp(0.0)
            now = time.monotonic()
            if now >= next_expiry:
                self._expire_udp(self.udp_idle_timeout)
                next_expiry = now + 1.0

    def _accept(self, mapping: PortMapping, listener: socket.socket) -> None:
        for _ in range(64):  # drain the backlog a little per wakeup
            try:
                client, _addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # EMFILE and friends: try again on the next wakeup
            counters = self._counters[id(listener)]
            counters.opened()
            with self._lock:
                target = self._target
            if target is None:
                counters.closed(failed=True)
                _reset(client)
                continue
            client.setblocking(True)
            threading.Thread(target=self._serve_tcp, args=(client, target, mapping, counters),
                             name="dockyard-fwd-in", daemon=True).start()

    def _serve_tcp(self, client: socket.socket, target: str, mapping: PortMapping, counters: _Counters) -> None:
        try:
            upstream = socket.create_connection((target, mapping.container_port), timeout=self.connect_timeout)
        except OSError:
            counters.closed(failed=True)
            _reset(client)
            return
        upstream.settimeout(None)
        for sock in (client, upstream):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = _Connection(client, upstream, counters, self.zero_copy, self._connection_done)
        with self._lock:
            self._connections.add(conn)
            stopping = self._stopping
        if stopping:
            conn.abort()
        conn.run()

    def _connection_done(self, conn: _Connection) -> None:
        conn.counters.closed()
        with self._lock:
            self._connections.discard(conn)

    def _udp_from_client(self, mapping: PortMapping, listener: socket.socket) -> None:
        counters = self._counters[id(listener)]
        for _ in range(64):
            try:
                data, client = listener.recvfrom(UDP_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            key = (listener.fileno(), client)
            session = self._sessions.get(key)
            with self._lock:
                target = self._target
            if target is None:  # no target yet: nowhere to send it
                if session is not None:
                    self._close_session(key, session)
                continue
            if session is not None and session.target != target:
                self._close_session(key, session)  # retargeted: this client's next datagram goes to the new one
                session = None
            if session is None:
                try:
                    sock = socket.socket(_family(target), socket.SOCK_DGRAM)
                    sock.setblocking(False)
                    sock.connect((target, mapping.container_port))
                except OSError:
                    counters.opened()
                    counters.closed(failed=True)
                    continue
                session = _UdpSession(sock, listener, client, target)
                self._sessions[key] = session
                self._selector.register(sock, selectors.EVENT_READ, ("udp-session", mapping, session))
                counters.opened()
            session.last = time.monotonic()
            with contextlib.suppress(OSError):  # ECONNREFUSED from an earlier ICMP: the next one may pass
                session.sock.send(data)
                counters.add_in(len(data))

    def _udp_from_target(self, session: _UdpSession) -> None:
        sock = session.sock
        counters = self._counters[id(session.listener)]
        for _ in range(64):
            try:
                data = sock.recv(UDP_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # ICMP port unreachable etc.
            session.last = time.monotonic()
            with contextlib.suppress(OSError):
                session.listener.sendto(data, session.client)
                counters.add_out(len(data))

    def _expire_udp(self, idle: float) -> None:
        now = time.monotonic()
        for key, session in list(self._sessions.items()):
            if now - session.last >= idle:
                self._close_session(key, session)

    def _close_session(self, key: tuple[int, Any], session: _UdpSession) -> None:
        self._sessions.pop(key, None)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(session.sock)
        session.sock.close()
        self._counters[id(session.listener)].closed()

    # -- control --------------------------------------------------------------------------------------

    def _accept_control(self, server: socket.socket) -> None:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        conn.setblocking(True)
        conn.settimeout(5.0)
        threading.Thread(target=self._control_session, args=(conn,), name="dockyard-fwd-control",
                         daemon=True).start()

    def _control_session(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError), conn.makefile("rwb") as fh:
            for line in fh:
                fh.write(json.dumps(self.handle_request(line)).encode() + b"\n")
                fh.flush()

    def handle_request(self, line: bytes | str) -> dict[str, Any]:
        """Answer one control request (the unix socket's logic, callable in-process too)."""
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("not an object")
        except ValueError:
            return {"ok": False, "error": "request is not a JSON object"}
        op = request.get("op")
        if op == "ping":
            return {"ok": True}
        if op == "stats":
            return {"ok": True, "target": self.target, "ports": [s.to_dict() for s in self.stats()]}
        if op == "retarget":
            try:
                self.set_target(str(request.get("ip", "")))
            except NetworkSetupError as exc:
                return {"ok": False, "error": str(exc)}
            return {"ok": True, "target": self.target}
        return {"ok": False, "error": f"unknown op {op!r} (stats, retarget, ping)"}


# ---- control client --------------------------------------------------------------------------------


def control(path: str, request: Mapping[str, Any], timeout: float = 2.0) -> dict[str, Any]:
    """Send one JSON request to a forwarder's control socket and return its answer."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            sock.sendall(json.dumps(dict(request)).encode() + b"\n")
            with sock.makefile("rb") as fh:
                line = fh.readline()
    except OSError as exc:
        raise NetworkSetupError(os_error_message(exc, "cannot reach the port forwarder")) from exc
    try:
        answer = json.loads(line)
    except ValueError as exc:
        raise NetworkSetupError(f"the port forwarder at {path} sent a malformed answer") from exc
    if not isinstance(answer, dict):
        raise NetworkSetupError(f"the port forwarder at {path} sent a malformed answer")
    if not answer.get("ok"):
        raise NetworkSetupError(str(answer.get("error") or "the port forwarder refused the request"))
    return answer


def query_stats(path: str, timeout: float = 2.0) -> tuple[str, list[PortStats]]:
    """``(target_ip, [PortStats, ...])`` of the forwarder serving ``path`` (``""`` while it has no target)."""
    answer = control(path, {"op": "stats"}, timeout)
    return str(answer["target"] or ""), [PortStats.from_dict(p) for p in answer["ports"]]


def retarget(path: str, ip: str, timeout: float = 2.0) -> None:
    """Switch the forwarder serving ``path`` to ``ip`` (zero-downtime swap)."""
    control(path, {"op": "retarget", "ip": ip}, timeout)
