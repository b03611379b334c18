"""Benchmark ``dockyard run`` side by side with podman and bare runc (a benchmark, not a test).

  (a) ``run --rm IMAGE true`` latency (bridge and --network none), whole CLI process incl. Python start-up
  (b) ``run -d -p`` of busybox httpd until the first successful HTTP response on the mapped port
  (c) throughput of a 200 MB download through the mapped port

Runs alternate between the tools (A B A B) so drift on a busy machine hits both; medians and ratios
are printed, with the CPU time (user+sys) of the measured command's own process tree next to the wall
time (detached helpers such as monitors and conmon are not in it; wall time is noisy when the machine
is shared, CPU time much less).  Needs root, runc, podman and busybox-static.

    .venv/bin/python bench/run.py [--runs 10] [--size-mb 200] [--skip-podman]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PODMAN_FLAGS = ["--runtime", "/usr/sbin/runc"]
PODMAN_RUN_FLAGS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
#: the CLI under test (``DOCKYARD_BENCH_CLI="python -m cli.main"`` runs a checkout's code from its directory)
DOCKYARD = os.environ.get("DOCKYARD_BENCH_CLI", "").split() or [str(Path(sys.executable).parent / "dockyard")]


def build_busybox(directory: Path) -> Path:
    from tests.test_runtime_integration import build_busybox_tar

    return build_busybox_tar(directory)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_ok(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
            return s.recv(64).startswith(b"HTTP/1.") and True
    except OSError:
        return False


def download(port: int, path: str) -> int:
    """GET ``path`` and count the body bytes (raw socket: no Python HTTP overhead)."""
    total = 0
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        buf = bytearray(1 << 20)
        view = memoryview(buf)
        header = b""
        while b"\r\n\r\n" not in header:
            n = s.recv_into(view)
            if not n:
                return 0
            header += bytes(view[:n])
        total = len(header) - header.index(b"\r\n\r\n") - 4
        while True:
            n = s.recv_into(view)
            if not n:
                break
            total += n
    return total


#: CPU seconds (user+sys of waited-for children) of the last measured command
LAST_CPU = [0.0]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(cmd: list[str], env: dict[str, str]) -> float:
    cpu = _children_cpu()
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    LAST_CPU[0] = _children_cpu() - cpu
    return elapsed


class Tool:
    def __init__(self, name: str, base: list[str], run_flags: list[str], image: str, env: dict[str, str]) -> None:
        self.name, self.base, self.run_flags, self.image, self.env = name, base, run_flags, image, env

    def run_cmd(self, *args: str) -> list[str]:
        return [*self.base, "run", *self.run_flags, *args]

    def rm(self, name: str) -> None:
        subprocess.run([*self.base, "rm", "-f", name], env=self.env, check=False, capture_output=True)


def bench_true(tool: Tool, network: list[str]) -> float:
    return timed(tool.run_cmd("--rm", *network, tool.image, "true"), tool.env)


def bench_http_first(tool: Tool) -> float:
    port = free_port()
    name = f"bench-{secrets.token_hex(4)}"
    cpu = _children_cpu()
    start = time.perf_counter()
    subprocess.run(tool.run_cmd("-d", "--name", name, "-p", f"127.0.0.1:{port}:80", tool.image,
                                "httpd", "-f", "-p", "80", "-h", "/www"),
                   env=tool.env, check=True, stdout=subprocess.DEVNULL)
    LAST_CPU[0] = _children_cpu() - cpu
    while not http_ok(port):
        if time.perf_counter() - start > 30:
            raise RuntimeError(f"{tool.name}: httpd never answered")
        time.sleep(0.002)
    elapsed = time.perf_counter() - start
    tool.rm(name)
    return elapsed


def start_big_server(tool: Tool, size: int) -> tuple[str, int]:
    port = free_port()
    name = f"bench-big-{secrets.token_hex(4)}"
    script = f"head -c {size} /dev/zero > /www/big && exec httpd -f -p 80 -h /www"
    subprocess.run(tool.run_cmd("-d", "--name", name, "-p", f"127.0.0.1:{port}:80", tool.image, "sh", "-c", script),
                   env=tool.env, check=True, stdout=subprocess.DEVNULL)
    deadline = time.perf_counter() + 60
    while not http_ok(port) and time.perf_counter() < deadline:
        time.sleep(0.05)
    return name, port


def bench_transfer(port: int, size: int) -> float:
    start = time.perf_counter()
    got = download(port, "/big")
    elapsed = time.perf_counter() - start
    if got != size:
        raise RuntimeError(f"transfer got {got} bytes, expected {size}")
    return size / elapsed / 1e6  # MB/s


def runc_bundle(directory: Path, tar: Path) -> Path:
    import json

    bundle = directory / "bundle"
    rootfs = bundle / "rootfs"
    rootfs.mkdir(parents=True)
    subprocess.run(["tar", "-C", str(rootfs), "-xf", str(tar)], check=True)
    subprocess.run(["runc", "spec"], cwd=bundle, check=True)
    spec = json.loads((bundle / "config.json").read_text())
    spec["process"]["terminal"] = False
    spec["process"]["args"] = ["true"]
    spec["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]
    (bundle / "config.json").write_text(json.dumps(spec))
    return bundle


def median_ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:7.1f} ms"


CPU: dict[str, list[float]] = {}


def with_cpu(key: str, values: list[float]) -> str:
    """Median wall time, and the median CPU time when the case recorded one."""
    cpu = CPU.get(key)
    return median_ms(values) + (f"   cpu {median_ms(cpu)}" if cpu else "")


def alternate(runs: int, cases: dict[str, Callable[[], float]]) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {k: [] for k in cases}
    for key, fn in cases.items():  # warm-up (page cache, snapshots, bridge)
        with contextlib.suppress(Exception):
            fn()
        del key
    for _ in range(runs):
        for key, fn in cases.items():
            LAST_CPU[0] = -1.0
            results[key].append(fn())
            if LAST_CPU[0] >= 0:
                CPU.setdefault(key, []).append(LAST_CPU[0])
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--skip-podman", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0 or shutil.which("runc") is None:
        print("bench/run.py needs root and runc", file=sys.stderr)
        return 2
    # byte-compile first: with PYTHONDONTWRITEBYTECODE set, every CLI start would compile its sources
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "engine"), str(REPO / "cli")],
                   check=False, stdout=subprocess.DEVNULL)
    work = Path(tempfile.mkdtemp(prefix="dockyard-bench-"))
    podman_root = work / "podman"
    dy_root = work / "dockyard"
    try:
        tar = build_busybox(work)
        from engine.config import EngineConfig
        from engine.oci.reference import Reference
        from engine.store.importer import import_rootfs
        from engine.store.layout import ImageStore

        import_rootfs(ImageStore(EngineConfig(root=dy_root).store_dir), tar, Reference.parse("busybox"),
                      changes=['CMD ["sh"]'])
        bridge = "dyb" + secrets.token_hex(3)
        dy_env = {**os.environ, "DOCKYARD_ROOT": str(dy_root), "DOCKYARD_BRIDGE": bridge,
                  "DOCKYARD_SUBNET": f"10.{secrets.randbelow(20) + 200}.{secrets.randbelow(250) + 1}.0/24"}
        dockyard = Tool("dockyard", DOCKYARD, [], "busybox", dy_env)
        tools = [dockyard]
        podman: Tool | None = None
        if not args.skip_podman and shutil.which("podman"):
            pm_base = ["podman", "--root", str(podman_root / "root"), "--runroot", str(podman_root / "run"),
                       *PODMAN_FLAGS]
            subprocess.run([*pm_base, "import", str(tar), "localhost/bbbench"], check=True, capture_output=True)
            podman = Tool("podman", pm_base, PODMAN_RUN_FLAGS, "localhost/bbbench", dict(os.environ))
            tools.append(podman)
        bundle = runc_bundle(work, tar)
        runc_root = work / "runc-state"

        def bare_runc() -> float:
            return timed(["runc", "--root", str(runc_root), "run", "-b", str(bundle), f"b{secrets.token_hex(4)}"],
                         dict(os.environ))

        print(f"runs: {args.runs} (medians); machine load: {os.getloadavg()[0]:.2f}")
        cases: dict[str, Callable[[], float]] = {"runc run (bare)": bare_runc}
        for tool in tools:
            cases[f"{tool.name} run --rm true (bridge)"] = lambda t=tool: bench_true(t, [])  # type: ignore[misc]
            cases[f"{tool.name} run --rm true (none)"] = lambda t=tool: bench_true(t, ["--network", "none"])  # type: ignore[misc]
        results = alternate(args.runs, cases)
        print("\n(a) run --rm IMAGE true")
        for key, values in results.items():
            print(f"  {key:40s} {with_cpu(key, values)}")
        if podman is not None:
            for mode in ("bridge", "none"):
                ours_key, theirs_key = f"dockyard run --rm true ({mode})", f"podman run --rm true ({mode})"
                ours, theirs = statistics.median(results[ours_key]), statistics.median(results[theirs_key])
                cpu = statistics.median(CPU[ours_key]) / statistics.median(CPU[theirs_key])
                print(f"  ratio dockyard/podman ({mode}): {ours / theirs:.2f}x  (target <= 0.7x; cpu {cpu:.2f}x)")

        http = alternate(args.runs, {f"{t.name} -d -p": (lambda t=t: bench_http_first(t)) for t in tools})  # type: ignore[misc]
        print("\n(b) run -d -p httpd until the first HTTP response (cpu: the run -d command)")
        for key, values in http.items():
            print(f"  {key:40s} {with_cpu(key, values)}")
        if podman is not None:
            ratio = statistics.median(http["dockyard -d -p"]) / statistics.median(http["podman -d -p"])
            cpu = statistics.median(CPU["dockyard -d -p"]) / statistics.median(CPU["podman -d -p"])
            print(f"  ratio dockyard/podman: {ratio:.2f}x  (target <= 0.7x; cpu {cpu:.2f}x)")

        size = args.size_mb * 1024 * 1024
        servers = {t.name: start_big_server(t, size) for t in tools}
        try:
            rates = alternate(args.runs, {name: (lambda p=port: bench_transfer(p, size))  # type: ignore[misc]
                                          for name, (_, port) in servers.items()})
        finally:
            for tool in tools:
                tool.rm(servers[tool.name][0])
        print(f"\n(c) {args.size_mb} MB through the mapped port")
        for key, values in rates.items():
            print(f"  {key:40s} {statistics.median(values):8.1f} MB/s")
        if podman is not None:
            ratio = statistics.median(rates["dockyard"]) / statistics.median(rates["podman"])
            print(f"  ratio dockyard/podman: {ratio:.2f}x  (target >= 0.5x)")
        return 0
    finally:
        subprocess.run([*DOCKYARD, "rm", "-f", *subprocess.run(
            [*DOCKYARD, "ps", "-aq", "--no-trunc"], env=dy_env, capture_output=True, text=True
        ).stdout.split()], env=dy_env, capture_output=True, check=False) if "dy_env" in locals() else None
        with contextlib.suppress(Exception):
            from engine.net.network import BridgeNetwork

            BridgeNetwork(dy_root / "net", bridge=dy_env["DOCKYARD_BRIDGE"],
                          subnet=dy_env["DOCKYARD_SUBNET"]).destroy()
        if podman_root.exists():
            subprocess.run(["podman", "--root", str(podman_root / "root"), "--runroot", str(podman_root / "run"),
                            "rm", "-af"], capture_output=True, check=False)
            subprocess.run(["podman", "--root", str(podman_root / "root"), "--runroot", str(podman_root / "run"),
                            "system", "reset", "-f"], capture_output=True, check=False)
        subprocess.run(["runc", "--root", str(work / "runc-state"), "list"], capture_output=True, check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
