"""Does a port answer?  For the TUI's port column and watch mode's readiness check."""

from __future__ import annotations

import contextlib
import select
import socket
import time

from engine.net.ports import Protocol

#: How long a TCP probe waits after connecting to see whether the peer drops it at once.
SETTLE = 0.05


def port_answers(host: str, port: int, proto: Protocol = "tcp", timeout: float = 1.0) -> bool:
    """True when something serves ``host:port``.

    TCP: the connection is accepted *and* not closed or reset within a short settle time
    (:data:`SETTLE`).  The settle matters for mapped ports: dockyard's forwarder accepts on the
    host before it can reach the container and closes the client when the container does not
    answer yet, so a bare connect would report a not-yet-ready app as up.

    UDP: an empty datagram is sent; True only if a reply comes back within ``timeout`` (silence is
    indistinguishable from a server that ignores empty datagrams, so it counts as no answer).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    deadline = time.monotonic() + timeout
    if proto == "udp":
        return _udp_answers(family, host, port, timeout)
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError:
        return False
    with sock:
        wait = max(0.0, min(SETTLE, deadline - time.monotonic()))
        readable, _, _ = select.select([sock], [], [], wait)
        if not readable:
            return True  # connected and still open: a server that waits for a request
        try:
            sock.setblocking(False)
            return sock.recv(1, socket.MSG_PEEK) != b""  # data = a banner; b"" = closed at once
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            return False  # reset


def _udp_answers(family: socket.AddressFamily, host: str, port: int, timeout: float) -> bool:
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect((host, port))
            sock.send(b"")
            sock.recv(65535)
        except (TimeoutError, OSError):
            return False
        return True


def wait_for_port(host: str, port: int, proto: Protocol = "tcp", timeout: float = 10.0,
                  interval: float = 0.02) -> bool:
    """Poll :func:`port_answers` until it is True or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        with contextlib.suppress(OSError):
            if port_answers(host, port, proto, timeout=max(0.05, min(1.0, left))):
                return True
        if time.monotonic() + interval >= deadline:
            return False
        time.sleep(interval)
