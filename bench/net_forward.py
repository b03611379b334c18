"""Forwarder throughput: 200 MB from a server inside a dockyard-style namespace to a host client,
direct (client -> container IP over the bridge, what kernel DNAT would give) versus through the
userspace forwarder on 127.0.0.1 (splice pumps and plain copy pumps), each forwarder in its own
process as in the container monitor.  Also times attach/detach.

Run as root:  .venv/bin/python bench/net_forward.py [--mb 200] [--runs 5]
Uses its own bridge (dybench<pid>) and subnet and removes everything afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.net.forward import bind_all
from engine.net.network import BridgeNetwork
from engine.net.ports import parse_publish

SENDER = r"""
import socket, sys, threading
size = int(sys.argv[1])
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8000)); s.listen(16)
print("ready", flush=True)
chunk = memoryview(b"x" * (1 << 20))
def serve(c):
    with c:
        left = size
        while left > 0:
            left -= c.send(chunk[: min(left, len(chunk))])
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""

# The forwarder runs in its own process, as it will in the container monitor: it adopts the
# listening sockets bound by the parent (bind_all -> handoff -> pass_fds -> adopt).
FORWARDER = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from engine.net.forward import BoundPorts, Forwarder
ports = BoundPorts.adopt(json.loads(sys.argv[2]))
fwd = Forwarder(ports, sys.argv[3], zero_copy=sys.argv[4] == "1").start()
print("ready", flush=True)
sys.stdin.read()
fwd.stop()
"""
REPO = str(Path(__file__).resolve().parent.parent)


def spawn_forwarder(target: str, zero_copy: bool) -> tuple[subprocess.Popen[str], int]:
    bound = bind_all(parse_publish("127.0.0.1::8000"))
    child = subprocess.Popen(
        [sys.executable, "-c", FORWARDER, REPO, json.dumps(bound.handoff()), target, "1" if zero_copy else "0"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, pass_fds=bound.fds(),
    )
    port = bound.mappings[0].host_port
    bound.close()  # the child holds them now
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    return child, port


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads) from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fetch(host: str, port: int, size: int) -> float:
    buf = bytearray(1 << 20)
    start = time.perf_counter()
    got = 0
    with socket.create_connection((host, port), timeout=30) as s:
        while n := s.recv_into(buf):
            got += n
    elapsed = time.perf_counter() - start
    if got != size:
        raise SystemExit(f"short transfer: {got} of {size} bytes")
    return size / elapsed / 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    size = args.mb * 1024 * 1024
    pid = os.getpid()
    state = Path(tempfile.mkdtemp(prefix="dybench-"))
    net = BridgeNetwork(state, bridge=f"dybench{pid}"[:15], subnet=f"10.214.{pid % 200 + 20}.0/24",
                        netns_prefix=f"dybench{pid}-", veth_prefix="db")
    cid = uuid.uuid4().hex
    proc = None
    try:
        t0 = time.perf_counter()
        net.ensure()  # includes the one-time pyroute2 import
        t1 = time.perf_counter()
        att = net.attach(cid)
        t2 = time.perf_counter()
        proc = subprocess.Popen(["ip", "netns", "exec", att.netns_name, sys.executable, "-c", SENDER, str(size)],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        t3 = time.perf_counter()
        fwds = {"splice": spawn_forwarder(att.ip, True), "copy": spawn_forwarder(att.ip, False)}
        t4 = time.perf_counter()
        ports = {name: port for name, (_, port) in fwds.items()}
        results: dict[str, list[float]] = {"direct": [], "splice": [], "copy": []}
        cpu_before = {name: cpu_seconds(child.pid) for name, (child, _) in fwds.items()}
        for _ in range(args.runs):  # interleaved A B C A B C so drift hits all alike
            results["direct"].append(fetch(att.ip, 8000, size))
            results["splice"].append(fetch("127.0.0.1", ports["splice"], size))
            results["copy"].append(fetch("127.0.0.1", ports["copy"], size))
        cpu = {name: (cpu_seconds(child.pid) - cpu_before[name]) / args.runs for name, (child, _) in fwds.items()}
        for child, _ in fwds.values():
            assert child.stdin is not None
            child.stdin.close()
            child.wait(10)
        t5 = time.perf_counter()
        proc.kill()
        proc.wait()
        net.detach(cid)
        t6 = time.perf_counter()
        direct = statistics.median(results["direct"])
        print(f"transfer of {args.mb} MB, median of {args.runs} runs (MB/s):")
        for name, values in results.items():
            med = statistics.median(values)
            cost = f"forwarder CPU {cpu[name]:.2f} s/transfer" if name in cpu else "kernel only"
            runs = " ".join(f"{v:.0f}" for v in values)
            print(f"  {name:7s} {med:6.0f}  ({med / direct:4.2f}x direct)  {cost:32s} runs: {runs}")
        print(f"ensure bridge (incl. pyroute2 import) {1000 * (t1 - t0):.1f} ms; attach {1000 * (t2 - t1):.1f} ms; "
              f"bind + spawn 2 forwarder processes {1000 * (t4 - t3):.1f} ms; detach {1000 * (t6 - t5):.1f} ms")
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        net.destroy()
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
