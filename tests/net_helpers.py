"""Shared helpers for the networking tests: a private bridge network and servers inside namespaces.

Each test session gets its own bridge (``dyt<pid>``), subnet (``10.214.x.0/24``) and name prefixes,
so the tests never touch a real ``dockyard0`` and clean up everything they make.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.errors import NetworkSetupError

SERVER = r"""
import socket, sys, threading
mode, port = sys.argv[1], int(sys.argv[2])
arg = sys.argv[3] if len(sys.argv) > 3 else ""
def tcp_handler(c):
    with c:
        if mode == "echo":
            while True:
                data = c.recv(1 << 16)
                if not data:
                    return
                c.sendall(data)
        elif mode == "tag":
            c.sendall(arg.encode())
        elif mode == "blob":
            left = int(arg); chunk = b"x" * (1 << 20)
            while left > 0:
                n = c.send(chunk[: min(left, len(chunk))]); left -= n
        elif mode == "sink":
            total = 0
            while True:
                data = c.recv(1 << 20)
                if not data:
                    break
                total += len(data)
            c.sendall(str(total).encode())
if mode == "udp-echo":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", port))
    print("ready", flush=True)
    while True:
        data, addr = s.recvfrom(65535); s.sendto(arg.encode() + data, addr)
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port)); s.listen(128)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    threading.Thread(target=tcp_handler, args=(c,), daemon=True).start()
"""


def skip_unless_netns() -> None:
    """Skip unless we are root and can really create a network namespace."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root (CAP_NET_ADMIN, CAP_SYS_ADMIN)")
    from engine.net import netns

    probe = f"dyprobe{os.getpid()}"
    try:
        netns.create_netns(probe)
    except NetworkSetupError as exc:
        pytest.skip(f"cannot create a network namespace here: {exc}")
    netns.remove_netns(probe)


def new_id() -> str:
    return uuid.uuid4().hex + uuid.uuid4().hex


def session_network(state_dir: Path) -> Iterator[object]:
    """Yield a BridgeNetwork private to this test session, destroyed afterwards."""
    from engine.net.network import BridgeNetwork

    skip_unless_netns()
    pid = os.getpid()
    last_error: Exception | None = None
    for attempt in range(20):
        subnet = f"10.214.{(pid + attempt * 7) % 200 + 20}.0/24"
        net = BridgeNetwork(state_dir, bridge=f"dyt{pid}"[:15], subnet=subnet,
                            netns_prefix=f"dytest{pid}-", veth_prefix="dt")
        try:
            net.ensure()
        except NetworkSetupError as exc:  # subnet taken by something else: try the next one
            last_error = exc
            continue
        try:
            yield net
        finally:
            net.destroy()
        return
    pytest.skip(f"no free test subnet: {last_error}")


def start_in_netns(netns_name: str, mode: str, port: int, arg: str = "") -> subprocess.Popen[str]:
    """Run the tiny server inside ``netns_name`` (``ip netns exec``) and wait until it listens."""
    cmd = ["ip", "netns", "exec", netns_name, sys.executable, "-c", SERVER, mode, str(port), arg]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        raise RuntimeError(f"server in {netns_name} did not start: {line!r}")
    return proc


def start_local(mode: str, port: int, arg: str = "", host: str = "127.0.0.1") -> subprocess.Popen[str]:
    """Run the tiny server on the host (loopback tests without root)."""
    code = SERVER.replace('"0.0.0.0"', repr(host))
    proc = subprocess.Popen([sys.executable, "-c", code, mode, str(port), arg], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        raise RuntimeError("local server did not start")
    return proc


def stop(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.wait(5)
    if proc.stdout is not None:
        proc.stdout.close()


def run_in_netns(netns_name: str, code: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", netns_name, sys.executable, "-c", code],
                          capture_output=True, text=True, timeout=timeout)


def free_port(kind: int = 1) -> int:
    import socket

    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
