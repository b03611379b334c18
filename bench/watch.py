"""Edit-to-served latency of the dev loop (a benchmark, not a test).

Time from saving a file to the mapped port serving the new content, medians over ``--edits`` edits:

* dockyard watch, rebuild path: ``dockyard watch -p ... CTX`` (watcher, debounce, cached build, start
  beside, ready, retarget the port);
* dockyard watch, sync path: the same with a dockyard.toml sync rule (copy into the running container);
* buildah + podman by hand: ``buildah bud --layers``, ``podman rm -f``, ``podman run -d -p`` started by
  the script the moment the file is saved (no watcher, no debounce: the best a person with a shell
  loop gets);
* docker + BuildKit by hand: ``DOCKER_BUILDKIT=1 docker build``, ``docker rm -f``, ``docker run -d -p``,
  likewise.

``-p`` needs a bridge network for docker and podman, and neither should touch the host's networking,
so both run inside a private network namespace made for the benchmark (dockerd with its default
bridge and userland proxy, ``--iptables=false``; podman with its default bridge in the same
namespace); the client polling their port joins that namespace (a polling thread ``setns()``es into
it). dockyard runs on the host with its own bridge and subnet. Every tool gets the same context and
Dockerfile (FROM the offline busybox image, a cached RUN, COPY site, httpd), and the edits alternate
between the tools (A B C D, A B C D, ...).

Run as root:  .venv/bin/python bench/watch.py [--edits 10] [--no-docker] [--no-podman]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.images import make_busybox_tar  # noqa: E402

DOCKERFILE = """\
FROM localhost/busybox
RUN echo built > /built
COPY site /www
CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]
"""
SYNC_RULES = '[[watch]]\npath = "site"\naction = "sync"\ntarget = "/www"\n'
CLI = [sys.executable, "-c", "import sys; from cli.main import main; sys.argv[0] = 'dockyard'; main()"]
PODMAN_FLAGS = ["--runtime", "/usr/sbin/runc"]
PODMAN_RUN_FLAGS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
CLONE_NEWNET = 0x40000000
DOCKER = "/usr/bin/docker"  # the 20.10 CLI: BuildKit without buildx (the newer CLI on PATH falls back)


# ---- polling, possibly from inside a network namespace ------------------------------------------------


def _get(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=1) as resp:
            return str(resp.read().decode())
    except OSError:
        return None


class Poller:
    """Runs ``wait_for`` calls on a thread that has joined ``netns`` (or the host's namespace)."""

    def __init__(self, netns: str | None) -> None:
        self.netns = netns

    def run(self, fn: Callable[[], float]) -> float:
        if self.netns is None:
            return fn()
        result: list[float | BaseException] = []

        def target() -> None:
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                fd = os.open(f"/run/netns/{self.netns}", os.O_RDONLY)
                try:
                    if libc.setns(fd, CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), "setns")
                finally:
                    os.close(fd)
                result.append(fn())
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                result.append(exc)

        thread = threading.Thread(target=target)
        thread.start()
        thread.join()
        if isinstance(result[0], BaseException):
            raise result[0]
        return result[0]


def wait_served(port: int, text: str, started: float, timeout: float = 30.0) -> float:
    while True:
        if _get(port) == text:
            return time.perf_counter() - started
        if time.perf_counter() - started > timeout:
            raise RuntimeError(f"port {port} never served {text!r}")
        time.sleep(0.005)


# ---- the tools --------------------------------------------------------------------------------------


def make_context(path: Path, *, rules: str | None = None) -> Path:
    (path / "site").mkdir(parents=True)
    (path / "Dockerfile").write_text(DOCKERFILE)
    (path / "site" / "index.html").write_text("v0\n")
    if rules:
        (path / "dockyard.toml").write_text(rules)
    return path


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Tool:
    def __init__(self, name: str, context: Path, port: int, poller: Poller,
                 by_hand: Callable[[], None] | None = None) -> None:
        self.name, self.context, self.port, self.poller, self.by_hand = name, context, port, poller, by_hand
        self.times: list[float] = []

    def edit(self, n: int) -> float:
        text = f"{self.name} edit {n} {secrets.token_hex(4)}\n"
        started = time.perf_counter()
        (self.context / "site" / "index.html").write_text(text)
        if self.by_hand is not None:
            self.by_hand()
        took = self.poller.run(lambda: wait_served(self.port, text, started))
        self.times.append(took)
        return took


def sh(args: list[str], env: dict[str, str] | None = None, netns: str | None = None, check: bool = True) -> None:
    prefix = ["nsenter", f"--net=/run/netns/{netns}"] if netns else []
    result = subprocess.run([*prefix, *args], env=env, capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:4])} failed: {result.stderr.strip()[-500:]}")


@contextlib.contextmanager
def dockyard_watch(work: Path, env: dict[str, str], context: Path, port: int, name: str) -> Iterator[None]:
    log = open(work / f"{name}.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([*CLI, "watch", "-p", f"127.0.0.1:{port}:8080", "--name", name, str(context)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_served(port, "v0\n", time.perf_counter(), 60)
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@contextlib.contextmanager
def private_netns() -> Iterator[str]:
    name = f"dywb{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


@contextlib.contextmanager
def dockerd_in(netns: str, work: Path) -> Iterator[dict[str, str]]:
    root = Path(tempfile.mkdtemp(prefix="dywd-", dir=work))
    sock = root / "docker.sock"
    args = ["nsenter", f"--net=/run/netns/{netns}", "dockerd", "--iptables=false", "--ip6tables=false",
            "--data-root", str(root / "data"), "--exec-root", str(root / "exec"), "--pidfile", str(root / "pid"),
            "-H", f"unix://{sock}"]
    log = open(root / "dockerd.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    env = {**os.environ, "DOCKER_HOST": f"unix://{sock}", "DOCKER_CONFIG": str(root / "cfg"), "DOCKER_BUILDKIT": "1"}
    try:
        deadline = time.monotonic() + 30
        while subprocess.run([DOCKER, "version"], env=env, capture_output=True).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dockerd did not start: {(root / 'dockerd.log').read_text()[-1000:]}")
            time.sleep(0.1)
        yield env
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
        for target in sorted((m for m in mounts if m.startswith(str(root))), key=len, reverse=True):
            subprocess.run(["umount", "-l", target], check=False, capture_output=True)


def median_ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:7.0f} ms  (min {min(values) * 1000:.0f}, max {max(values) * 1000:.0f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--edits", type=int, default=10)
    parser.add_argument("--no-docker", action="store_true")
    parser.add_argument("--no-podman", action="store_true")
    parser.add_argument("--pause", type=float, default=1.5, help="seconds between edits (old containers stop)")
    args = parser.parse_args()
    if os.geteuid() != 0 or shutil.which("runc") is None:
        print("bench/watch.py needs root and runc", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="dockyard-bench-watch-"))
    try:
        with contextlib.ExitStack() as stack:
            tar = make_busybox_tar(work / "busybox.tar")
            from engine.config import EngineConfig
            from engine.oci.reference import Reference
            from engine.store.importer import import_rootfs
            from engine.store.layout import ImageStore

            dy_root = work / "dockyard"
            import_rootfs(ImageStore(EngineConfig(root=dy_root).store_dir), tar, Reference.parse("localhost/busybox"),
                          changes=['CMD ["sh"]'])
            bridge = "dywb" + secrets.token_hex(2)
            subnet = f"10.{secrets.randbelow(20) + 200}.{secrets.randbelow(250) + 1}.0/24"
            dy_env = {**os.environ, "DOCKYARD_ROOT": str(dy_root), "DOCKYARD_BRIDGE": bridge,
                      "DOCKYARD_SUBNET": subnet, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
            stack.callback(_remove_bridge, dy_root, bridge, subnet)
            host = Poller(None)
            tools: list[Tool] = []
            for name, rules in (("rebuild", None), ("sync", SYNC_RULES)):
                ctx = make_context(work / f"ctx-dy-{name}", rules=rules)
                port = free_port()
                stack.enter_context(dockyard_watch(work, dy_env, ctx, port, f"dy{name}"))
                tools.append(Tool(f"dockyard watch ({name})", ctx, port, host))

            netns = stack.enter_context(private_netns()) if not (args.no_docker and args.no_podman) else None
            inside = Poller(netns)
            if not args.no_podman and shutil.which("buildah") and shutil.which("podman") and netns:
                tools.append(podman_tool(work, tar, netns, inside, stack))
            if not args.no_docker and shutil.which("dockerd") and netns:
                tools.append(docker_tool(work, tar, netns, inside, stack))

            print(f"edits: {args.edits} per tool (medians), load {os.getloadavg()[0]:.2f}; warm-up edit first")
            for tool in tools:
                tool.edit(-1)
                tool.times.clear()
                time.sleep(args.pause)
            for n in range(args.edits):
                for tool in tools:
                    tool.edit(n)
                    time.sleep(args.pause)
            print("\nsave -> mapped port serves the new content")
            for tool in tools:
                print(f"  {tool.name:34s} {median_ms(tool.times)}")
            report_ratios(tools)
            for log in sorted(work.glob("dy*.log")):
                print(f"\n{log.name} (last lines):")
                print("".join(log.read_text().splitlines(keepends=True)[-6:]), end="")
    finally:
        mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
        for target in sorted((m for m in mounts if m.startswith(str(work))), key=len, reverse=True):
            subprocess.run(["umount", "-l", target], check=False, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    return 0


def report_ratios(tools: list[Tool]) -> None:
    by_name = {t.name: statistics.median(t.times) for t in tools}
    rebuild, sync = by_name["dockyard watch (rebuild)"], by_name["dockyard watch (sync)"]
    print(f"\n  rebuild path {rebuild:.3f} s (target <= 1.0 s); sync path {sync:.3f} s (target <= 0.3 s)")
    for peer, target in (("buildah + podman (by hand)", 0.5), ("docker + BuildKit (by hand)", 1.0)):
        if peer in by_name:
            print(f"  dockyard rebuild / {peer}: {rebuild / by_name[peer]:.2f}x (target <= {target}x)")


def _remove_bridge(root: Path, bridge: str, subnet: str) -> None:
    from engine.net.network import BridgeNetwork

    network = BridgeNetwork(root / "net", bridge=bridge, subnet=subnet)
    if not network.allocations():
        subprocess.run(["ip", "link", "delete", "dev", bridge], check=False, capture_output=True)


def podman_tool(work: Path, tar: Path, netns: str, poller: Poller, stack: contextlib.ExitStack) -> Tool:
    store = ["--root", str(work / "containers/root"), "--runroot", str(work / "containers/run")]
    podman = ["podman", *store, *PODMAN_FLAGS]
    sh([*podman, "import", str(tar), "localhost/busybox"], netns=netns)
    ctx = make_context(work / "ctx-podman")
    port = free_port()

    def cycle() -> None:
        sh(["buildah", *store, "bud", "--runtime", "/usr/sbin/runc", "--layers", "-q", "-t", "site-podman", str(ctx)],
           netns=netns)
        sh([*podman, "rm", "-f", "-t", "0", "--ignore", "site"], netns=netns)  # -t 0: httpd as PID 1 ignores SIGTERM
        sh([*podman, "run", "-d", "--name", "site", "-p", f"127.0.0.1:{port}:8080", *PODMAN_RUN_FLAGS,
            "site-podman"], netns=netns)

    cycle()
    stack.callback(lambda: subprocess.run(["nsenter", f"--net=/run/netns/{netns}", *podman, "rm", "-f", "-a"],
                                          capture_output=True, check=False))
    poller.run(lambda: wait_served(port, "v0\n", time.perf_counter()))
    return Tool("buildah + podman (by hand)", ctx, port, poller, cycle)


def docker_tool(work: Path, tar: Path, netns: str, poller: Poller, stack: contextlib.ExitStack) -> Tool:
    env = stack.enter_context(dockerd_in(netns, work))
    subprocess.run([DOCKER, "import", str(tar), "localhost/busybox"], env=env, check=True, capture_output=True)
    ctx = make_context(work / "ctx-docker")
    port = free_port()

    def cycle() -> None:
        sh([DOCKER, "build", "-q", "-t", "site-docker", str(ctx)], env)
        sh([DOCKER, "rm", "-f", "site"], env, check=False)  # "no such container" the first time
        sh([DOCKER, "run", "-d", "--name", "site", "-p", f"127.0.0.1:{port}:8080", "site-docker"], env)

    subprocess.run([DOCKER, "rm", "-f", "site"], env=env, capture_output=True, check=False)
    cycle()
    stack.callback(lambda: subprocess.run([DOCKER, "rm", "-f", "site"], env=env, capture_output=True, check=False))
    poller.run(lambda: wait_served(port, "v0\n", time.perf_counter()))
    return Tool("docker + BuildKit (by hand)", ctx, port, poller, cycle)


if __name__ == "__main__":
    sys.exit(main())
