"""Containers for real: runc, namespaces, overlayfs, the monitor, the bridge and the port forwarder.

A busybox image (``/bin/busybox`` + one symlink per applet + /etc/passwd, /etc/group) is imported
into a temporary DOCKYARD_ROOT per test and run by name through the ``dockyard`` CLI, so the whole
path is real.  Each test session uses its own bridge and subnet (DOCKYARD_BRIDGE/DOCKYARD_SUBNET).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root (namespaces, mounts, runc)"),
    pytest.mark.skipif(not Path("/bin/busybox").exists(), reason="busybox-static (/bin/busybox) is not installed"),
    pytest.mark.timeout(120),
]

CLI = [sys.executable, "-c", "import sys; from cli.main import main; sys.argv[0] = 'dockyard'; main()"]


def build_busybox_tar(directory: Path) -> Path:
    rootfs = directory / "rootfs"
    for sub in ("bin", "etc", "tmp", "root", "www", "home"):
        (rootfs / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy2("/bin/busybox", rootfs / "bin" / "busybox")
    applets = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            os.symlink("busybox", rootfs / "bin" / applet)
    (rootfs / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/www:/bin/false\nnobody:x:65534:65534::/home:/bin/false\n")
    (rootfs / "etc" / "group").write_text("root:x:0:\nwww:x:33:\nstaff:x:50:www\nnogroup:x:65534:\n")
    (rootfs / "www" / "index.html").write_text("hello from busybox\n")
    (rootfs / "tmp").chmod(0o1777)
    tar = directory / "busybox.tar"
    subprocess.run(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(tar), "."], check=True)
    return tar


@pytest.fixture(scope="session")
def busybox_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_busybox_tar(tmp_path_factory.mktemp("busybox"))


@pytest.fixture(scope="session")
def network_env() -> Iterator[dict[str, str]]:
    bridge = "dyt" + secrets.token_hex(3)
    subnet = f"10.{secrets.randbelow(30) + 220}.{secrets.randbelow(250) + 1}.0/24"
    net_state = Path(f"/tmp/dockyard-test-net-{bridge}")
    yield {"DOCKYARD_BRIDGE": bridge, "DOCKYARD_SUBNET": subnet, "_NET_STATE": str(net_state)}
    from engine.net.network import BridgeNetwork

    with contextlib.suppress(Exception):
        BridgeNetwork(net_state, bridge=bridge, subnet=subnet).destroy()
    shutil.rmtree(net_state, ignore_errors=True)


class Dockyard:
    """A private DOCKYARD_ROOT with busybox imported, driven through the CLI."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.env = env

    def __call__(self, *args: str, check: bool = True, timeout: float = 60, input: str | None = None
                 ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([*CLI, *args], env=self.env, capture_output=True, text=True, timeout=timeout,
                                input=input, stdin=None if input is not None else subprocess.DEVNULL)
        if check and result.returncode != 0:
            raise AssertionError(f"dockyard {' '.join(args)} failed ({result.returncode}): {result.stderr}")
        return result

    def popen(self, *args: str, **kwargs: Any) -> subprocess.Popen[str]:
        return subprocess.Popen([*CLI, *args], env=self.env, text=True, **kwargs)

    def inspect(self, name: str) -> dict[str, Any]:
        data: list[dict[str, Any]] = json.loads(self("inspect", "--type", "container", name).stdout)
        return data[0]

    def record(self, name: str) -> dict[str, Any]:
        return self.inspect(name)

    def wait_state(self, name: str, status: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            data = self.inspect(name)
            if data["State"]["Status"] == status or time.monotonic() > deadline:
                return data
            time.sleep(0.05)


@pytest.fixture()
def dy(tmp_path: Path, busybox_tar: Path, network_env: dict[str, str]) -> Iterator[Dockyard]:
    from engine.config import EngineConfig
    from engine.oci.reference import Reference
    from engine.store.importer import import_rootfs
    from engine.store.layout import ImageStore

    root = tmp_path / "root"
    # one net state dir for the session: the IPAM of the session's bridge is shared by its tests
    root.mkdir()
    os.symlink(network_env["_NET_STATE"], root / "net")
    Path(network_env["_NET_STATE"]).mkdir(exist_ok=True)
    config = EngineConfig(root=root)
    import_rootfs(ImageStore(config.store_dir), busybox_tar, Reference.parse("busybox"), changes=['CMD ["sh"]'])
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_")},
           "DOCKYARD_ROOT": str(root), "DOCKYARD_BRIDGE": network_env["DOCKYARD_BRIDGE"],
           "DOCKYARD_SUBNET": network_env["DOCKYARD_SUBNET"]}
    tool = Dockyard(root, env)
    yield tool
    ids = tool("ps", "-a", "-q", "--no-trunc", check=False).stdout.split()
    if ids:
        tool("rm", "-f", *ids, check=False)
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            if str(root) in line:
                subprocess.run(["umount", "-l", line.split()[4]], check=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _http_get(url: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return str(response.read().decode())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _mounts_under(root: Path) -> list[str]:
    return [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if str(root) in line]


def _monitor_pids(root: Path) -> list[int]:
    """Monitors (spawned or forked) name themselves ``dockyard-mon`` and live in their state dir."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == "dockyard-mon" and \
                        os.readlink(entry / "cwd").startswith(str(root)):
                    out.append(int(entry.name))
    return out


# ---- the core path ----------------------------------------------------------------------------------------


def test_run_streams_output_and_exits_with_the_container_code(dy: Dockyard) -> None:
    result = dy("run", "--rm", "--network", "none", "busybox", "sh", "-c", "echo out; echo err >&2; exit 7",
                check=False)
    assert result.returncode == 7
    assert result.stdout == "out\n"
    assert result.stderr == "err\n"
    assert dy("ps", "-a", "-q").stdout == ""


def test_signalled_process_exit_code_is_128_plus_signal(dy: Dockyard) -> None:
    dy("run", "-d", "--network", "none", "--name", "termed", "busybox", "sleep", "30")
    dy("kill", "-s", "USR2", "termed")  # PID 1 ignores signals it has no handler for
    time.sleep(0.2)
    assert dy.inspect("termed")["State"]["Running"] is True
    dy("run", "-d", "--network", "none", "--name", "killed", "busybox", "sleep", "30")
    dy("kill", "-s", "KILL", "killed")
    data = dy.wait_state("killed", "exited")
    assert data["State"]["ExitCode"] == 137


def test_lifecycle_ps_inspect_logs_stop_start_rm(dy: Dockyard) -> None:
    cid = dy("run", "-d", "--network", "none", "--name", "life", "-e", "GREETING=hi", "busybox",
             "sh", "-c", "echo $GREETING from $HOSTNAME; exec sleep 60").stdout.strip()
    assert len(cid) == 64
    ps = dy("ps", "--format", "json").stdout.splitlines()
    row = json.loads(ps[0])
    assert row["Names"] == "life" and row["State"] == "running" and row["Status"].startswith("Up ")
    data = dy.inspect("life")
    assert data["Id"] == cid and data["Name"] == "/life"
    assert data["State"]["Running"] is True and data["State"]["Pid"] > 0
    assert data["Config"]["Hostname"] == cid[:12]
    assert "GREETING=hi" in data["Config"]["Env"]
    deadline = time.monotonic() + 5
    while "hi from" not in dy("logs", "life").stdout and time.monotonic() < deadline:
        time.sleep(0.05)
    assert dy("logs", "life").stdout == f"hi from {cid[:12]}\n"
    stamped = dy("logs", "--timestamps", "life").stdout
    assert stamped.split(" ", 1)[0].endswith("Z") and stamped.endswith(f"hi from {cid[:12]}\n")
    dy("stop", "-t", "1", "life")
    ps_all = dy("ps", "-a").stdout
    assert "Exited (137)" in ps_all or "Exited (143)" in ps_all
    assert dy("ps", "-q").stdout == ""
    dy("start", "life")
    assert dy.inspect("life")["State"]["Running"] is True
    with pytest.raises(AssertionError, match="cannot remove a running container"):
        dy("rm", "life")
    dy("rm", "-f", "life")
    assert dy("ps", "-a", "-q").stdout == ""
    result = dy("inspect", "--type", "container", "life", check=False)
    assert result.returncode == 1 and "no such container" in result.stderr


def test_stop_honours_stopsignal_and_timeout(dy: Dockyard) -> None:
    script = "trap 'echo got USR1; exit 3' USR1; echo ready; while true; do sleep 0.1; done"
    dy("run", "-d", "--network", "none", "--name", "graceful", "--stop-signal", "USR1", "busybox", "sh", "-c",
       script)
    deadline = time.monotonic() + 10
    while "ready" not in dy("logs", "graceful").stdout and time.monotonic() < deadline:
        time.sleep(0.05)  # the trap is set once "ready" is printed
    started = time.monotonic()
    dy("stop", "-t", "10", "graceful")
    assert time.monotonic() - started < 5
    data = dy.inspect("graceful")
    assert data["State"]["ExitCode"] == 3
    assert "got USR1" in dy("logs", "graceful").stdout

    # a PID 1 without a handler ignores SIGTERM: stop waits for the timeout, then SIGKILLs
    dy("run", "-d", "--network", "none", "--name", "stubborn", "busybox", "sleep", "60")
    started = time.monotonic()
    dy("stop", "-t", "1", "stubborn")
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 6
    assert dy.inspect("stubborn")["State"]["ExitCode"] == 137


def test_name_conflict_missing_image_and_bad_command_are_one_line_errors(dy: Dockyard) -> None:
    dy("create", "--network", "none", "--name", "taken", "busybox", "true")
    result = dy("run", "--network", "none", "--name", "taken", "busybox", "true", check=False)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "already in use" in result.stderr
    assert result.stderr.startswith("dockyard: error: ")
    missing = dy("run", "--rm", "nosuchimage", "true", check=False)
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1
    assert "no such image" in missing.stderr
    bad = dy("run", "--rm", "--network", "none", "busybox", "/no/such/binary", check=False)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1
    assert "no such file" in bad.stderr or "not found" in bad.stderr
    assert "taken" in dy("ps", "-a").stdout and len(dy("ps", "-a", "-q").stdout.split()) == 1


def test_user_workdir_entrypoint_and_volumes(dy: Dockyard, tmp_path: Path) -> None:
    out = dy("run", "--rm", "--network", "none", "-u", "www", "-w", "/tmp", "busybox", "sh", "-c",
             "id; pwd").stdout
    assert "uid=33(www) gid=33(www) groups=50(staff)" in out
    assert out.endswith("/tmp\n")
    assert dy("run", "--rm", "--network", "none", "-u", "1234:5678", "busybox", "id", "-u").stdout == "1234\n"
    assert dy("run", "--rm", "--network", "none", "--entrypoint", "echo", "busybox", "a", "b").stdout == "a b\n"
    host_dir = tmp_path / "shared"
    host_dir.mkdir()
    (host_dir / "in.txt").write_text("from host")
    out = dy("run", "--rm", "--network", "none", "-v", f"{host_dir}:/data", "busybox", "sh", "-c",
             "cat /data/in.txt; echo back > /data/out.txt").stdout
    assert out == "from host"
    assert (host_dir / "out.txt").read_text() == "back\n"
    ro = dy("run", "--rm", "--network", "none", "-v", f"{host_dir}:/data:ro", "busybox", "sh", "-c",
            "touch /data/x", check=False)
    assert ro.returncode != 0 and "Read-only file system" in ro.stderr


def test_container_writes_stay_in_its_upper_dir(dy: Dockyard) -> None:
    dy("run", "--network", "none", "--name", "writer", "busybox", "sh", "-c", "echo data > /root/file; rm /bin/ls")
    assert dy("run", "--rm", "--network", "none", "busybox", "sh", "-c", "test -e /bin/ls && test ! -e /root/file"
              ).returncode == 0
    upper = Path(dy.inspect("writer")["GraphDriver"]["Data"]["UpperDir"])
    assert (upper / "root" / "file").read_text() == "data\n"
    assert (upper / "bin" / "ls").is_char_device()  # an overlay whiteout


def test_security_defaults(dy: Dockyard) -> None:
    script = ("grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; cat /proc/kcore 2>&1 | head -c 0; "
              "ls /proc/kcore -l | cut -c1-10; touch /proc/sys/x 2>&1 | head -1")
    out = dy("run", "--rm", "--network", "none", "busybox", "sh", "-c", script).stdout
    assert "NoNewPrivs:\t1" in out
    cap_eff = int(out.split("CapEff:\t")[1].split()[0], 16)
    assert cap_eff == 0xA80425FB  # docker's default set
    assert "Read-only file system" in out or "Permission denied" in out or "No such file" in out


def test_memory_and_cpu_limits_reach_the_cgroup(dy: Dockyard) -> None:
    from engine.runtime.cgroups import detect_mode

    dy("run", "-d", "--network", "none", "--name", "limited", "-m", "64m", "--cpus", "0.5", "busybox",
       "sleep", "30")
    cid = dy.inspect("limited")["Id"]
    if detect_mode() == "v2":
        assert Path(f"/sys/fs/cgroup/dockyard/{cid}/memory.max").read_text().strip() == str(64 * 1024 * 1024)
        assert Path(f"/sys/fs/cgroup/dockyard/{cid}/cpu.max").read_text().split() == ["50000", "100000"]
    else:
        memory = Path(f"/sys/fs/cgroup/memory/dockyard/{cid}/memory.limit_in_bytes").read_text().strip()
        assert memory == str(64 * 1024 * 1024)
        assert Path(f"/sys/fs/cgroup/cpu/dockyard/{cid}/cpu.cfs_quota_us").read_text().strip() == "50000"
    stats = dy("stats", "--no-stream", "limited").stdout
    assert "limited" in stats and "64MiB" in stats.replace("67.1MB", "64MiB")
    dy("rm", "-f", "limited")
    assert not Path(f"/sys/fs/cgroup/memory/dockyard/{cid}").exists()


# ---- outliving the CLI, logs, monitor ---------------------------------------------------------------------


def test_killing_the_cli_leaves_the_container_running(dy: Dockyard) -> None:
    proc = dy.popen("run", "--network", "none", "--name", "orphan", "busybox", "sh", "-c",
                    "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done",
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first.startswith("tick")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    time.sleep(0.3)
    ps = dy("ps").stdout
    assert "orphan" in ps and "Up " in ps
    before = dy("logs", "orphan").stdout.count("tick")
    time.sleep(0.4)
    assert dy("logs", "orphan").stdout.count("tick") > before  # still logging without the CLI


def test_logs_survive_monitor_restart_and_follow(dy: Dockyard) -> None:
    dy("run", "--network", "none", "--name", "twice", "busybox", "sh", "-c", "echo run at $(date +%s%N)")
    dy("start", "twice")
    dy.wait_state("twice", "exited")
    deadline = time.monotonic() + 5
    while dy("logs", "twice").stdout.count("run at") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert dy("logs", "twice").stdout.count("run at") == 2
    assert dy("logs", "--tail", "1", "twice").stdout.count("run at") == 1

    dy("run", "-d", "--network", "none", "--name", "follow", "busybox", "sh", "-c",
       "for i in 1 2 3; do echo line $i; sleep 0.2; done")
    follow = dy("logs", "-f", "follow", timeout=20)
    assert follow.stdout == "line 1\nline 2\nline 3\n"

    # a killed monitor: the record is reconciled, the log file is intact and a restart appends to it
    dy("run", "-d", "--network", "none", "--name", "crash", "busybox", "sh", "-c", "echo before; sleep 60")
    while "before" not in dy("logs", "crash").stdout:
        time.sleep(0.05)
    for pid in _monitor_pids(dy.root):
        os.kill(pid, signal.SIGKILL)
    dy("rm", "-f", "crash")
    dy("run", "-d", "--network", "none", "--name", "crash2", "busybox", "sh", "-c", "echo a; sleep 60")
    while "a" not in dy("logs", "crash2").stdout:
        time.sleep(0.05)
    for pid in _monitor_pids(dy.root):
        os.kill(pid, signal.SIGKILL)
    dy("kill", "crash2")  # runc still knows it; the record then says exited
    data = dy.wait_state("crash2", "exited")
    assert data["State"]["Status"] == "exited"
    dy("start", "crash2")
    deadline = time.monotonic() + 5
    while dy("logs", "crash2").stdout.count("a\n") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert dy("logs", "crash2").stdout == "a\na\n"


def test_interactive_stdin_is_forwarded(dy: Dockyard) -> None:
    result = dy("run", "--rm", "-i", "--network", "none", "busybox", "sh", "-c", "tr a-z A-Z", input="hello\n")
    assert result.stdout == "HELLO\n"


def _on_terminal(dy: Dockyard, args: list[str], keys: bytes, expect: bytes) -> tuple[bytes, int]:
    """Run the CLI on a pty, wait for a prompt, type ``keys``, collect output until ``expect`` and exit."""
    import pty
    import select

    pid, fd = pty.fork()
    if pid == 0:  # the child: the CLI on a terminal
        os.execvpe(CLI[0], [*CLI, *args], dy.env)
    output = b""

    def read_until(marker: bytes, timeout: float = 15) -> None:
        nonlocal output
        deadline = time.monotonic() + timeout
        while marker not in output and time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    output += os.read(fd, 4096)
                except OSError:
                    break

    read_until(b"# ")
    os.write(fd, keys)
    read_until(expect)
    _, status = os.waitpid(pid, 0)
    with contextlib.suppress(OSError):
        output += os.read(fd, 4096)
    os.close(fd)
    return output, os.WEXITSTATUS(status)


def test_run_it_gives_a_working_shell(dy: Dockyard) -> None:
    output, code = _on_terminal(dy, ["run", "-it", "--rm", "--network", "none", "busybox", "sh"],
                                b"echo $((6*7)); tty; exit 5\r", b"/dev/pts/")
    assert b"42" in output
    assert b"/dev/pts/0" in output
    assert code == 5


def test_exec_it_gives_a_working_shell(dy: Dockyard) -> None:
    dy("run", "-d", "--network", "none", "--name", "box", "busybox", "sleep", "60")
    output, code = _on_terminal(dy, ["exec", "-it", "box", "sh"], b"echo $((7*6)) $TERM; exit 3\r", b"42")
    assert b"42 xterm" in output
    assert code == 3


def test_exec(dy: Dockyard) -> None:
    dy("run", "-d", "--network", "none", "--name", "target", "-e", "FOO=bar", "busybox", "sleep", "60")
    assert dy("exec", "target", "sh", "-c", "echo $FOO; hostname").stdout.startswith("bar\n")
    assert dy("exec", "target", "sh", "-c", "exit 4", check=False).returncode == 4
    assert dy("exec", "-u", "www", "target", "id", "-u").stdout == "33\n"
    assert dy("exec", "-i", "target", "cat", input="piped\n").stdout == "piped\n"


# ---- network ---------------------------------------------------------------------------------------------


def test_published_port_serves_http_on_loopback(dy: Dockyard) -> None:
    port = _free_port()
    dy("run", "-d", "--name", "web", "-p", f"127.0.0.1:{port}:80", "busybox", "httpd", "-f", "-p", "80", "-h",
       "/www")
    assert _http_get(f"http://127.0.0.1:{port}/") == "hello from busybox\n"
    assert dy("port", "web").stdout == f"80/tcp -> 127.0.0.1:{port}\n"
    assert f"127.0.0.1:{port}->80/tcp" in dy("ps").stdout
    data = dy.inspect("web")
    assert data["HostConfig"]["PortBindings"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
    assert data["NetworkSettings"]["Ports"]["80/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": str(port)}]
    assert data["NetworkSettings"]["IPAddress"].startswith(dy.env["DOCKYARD_SUBNET"].rsplit(".", 1)[0])


def test_port_conflict_is_a_one_line_error_and_leaves_nothing(dy: Dockyard) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = dy("run", "-d", "--name", "clash", "-p", f"127.0.0.1:{port}:80", "busybox", "httpd", "-f",
                    check=False)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "already in use" in result.stderr
    assert dy("ps", "-a", "-q").stdout == ""


def test_two_containers_reach_each_other_by_name(dy: Dockyard) -> None:
    dy("run", "-d", "--name", "server", "busybox", "httpd", "-f", "-p", "8080", "-h", "/www")
    out = dy("run", "--rm", "--name", "client", "busybox", "sh", "-c",
             "for i in 1 2 3 4 5 6 7 8 9 10; do wget -q -O - http://server:8080/ && exit 0; sleep 0.2; done; exit 1"
             ).stdout
    assert out == "hello from busybox\n"
    # and the other way: the server's /etc/hosts learned the client's name while it ran
    dy("run", "-d", "--name", "peer", "busybox", "sleep", "60")
    hosts = dy("exec", "server", "cat", "/etc/hosts").stdout
    assert " peer" in hosts or "\tpeer" in hosts


def test_rm_force_leaves_no_mount_netns_veth_ipam_or_monitor(dy: Dockyard, network_env: dict[str, str]) -> None:
    from engine.net.network import BridgeNetwork

    port = _free_port()
    cid = dy("run", "-d", "--name", "doomed", "-p", f"127.0.0.1:{port}:80", "busybox", "httpd", "-f", "-p", "80",
             "-h", "/www").stdout.strip()
    net = BridgeNetwork(Path(network_env["_NET_STATE"]), bridge=network_env["DOCKYARD_BRIDGE"],
                        subnet=network_env["DOCKYARD_SUBNET"])
    netns = net.netns_name(cid)
    veth = net.veth_name(cid)
    assert Path(f"/run/netns/{netns}").exists()
    assert cid in net.allocations()
    assert _monitor_pids(dy.root)
    assert _mounts_under(dy.root)
    dy("rm", "-f", "doomed")
    assert not Path(f"/run/netns/{netns}").exists()
    assert veth not in subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert cid not in net.allocations()
    assert _monitor_pids(dy.root) == []
    assert _mounts_under(dy.root) == []
    assert not (dy.root / "containers" / cid).exists()
    assert not (dy.root / "runtime" / "runc" / cid).exists()
    with socket.socket() as s:  # the forwarder let go of the port
        s.bind(("127.0.0.1", port))


def test_network_host_and_none(dy: Dockyard) -> None:
    none = dy("run", "--rm", "--network", "none", "busybox", "ip", "-o", "link").stdout
    assert "lo" in none and "eth0" not in none
    host_links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout.count("\n")
    inside = dy("run", "--rm", "--network", "host", "busybox", "ip", "-o", "link").stdout.count("\n")
    assert inside == host_links


# ---- health ------------------------------------------------------------------------------------------------


def _health(dy: Dockyard, name: str, wanted: str, timeout: float = 15) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        data = dy.inspect(name)
        if data["State"]["Health"]["Status"] == wanted or time.monotonic() > deadline:
            return data
        time.sleep(0.1)


def test_health_checks_change_status(dy: Dockyard) -> None:
    dy("run", "-d", "--network", "none", "--name", "checked", "--health-cmd", "test -e /tmp/ok",
       "--health-interval", "200ms", "--health-retries", "1000", "busybox", "sleep", "60")
    assert "(health: starting)" in dy("ps").stdout
    assert dy.inspect("checked")["Config"]["Healthcheck"]["Test"] == ["CMD", "/bin/sh", "-c", "test -e /tmp/ok"]
    time.sleep(0.5)
    assert _health(dy, "checked", "starting", 0)["State"]["Health"]["FailingStreak"] >= 1
    dy("exec", "checked", "touch", "/tmp/ok")
    data = _health(dy, "checked", "healthy")
    assert data["State"]["Health"]["Status"] == "healthy"
    assert data["State"]["Health"]["Log"][-1]["ExitCode"] == 0
    assert "(healthy)" in dy("ps").stdout

    dy("run", "-d", "--network", "none", "--name", "sick", "--health-cmd", "echo failing; exit 1",
       "--health-interval", "200ms", "--health-retries", "2", "busybox", "sleep", "60")
    data = _health(dy, "sick", "unhealthy")
    assert data["State"]["Health"]["Status"] == "unhealthy"
    assert data["State"]["Health"]["FailingStreak"] >= 2
    assert data["State"]["Health"]["Log"][-1]["Output"] == "failing\n"
    assert "(unhealthy)" in dy("ps").stdout


# ---- image config: VOLUME, EXPOSE (-P), and the async API the TUI uses ------------------------------------


def _import_variant(dy: Dockyard, busybox_tar: Path, name: str, changes: list[str]) -> None:
    from engine.config import EngineConfig
    from engine.oci.reference import Reference
    from engine.store.importer import import_rootfs
    from engine.store.layout import ImageStore

    import_rootfs(ImageStore(EngineConfig(root=dy.root).store_dir), busybox_tar, Reference.parse(name),
                  changes=changes)


def test_image_volumes_publish_all_and_stop_signal(dy: Dockyard, busybox_tar: Path) -> None:
    _import_variant(dy, busybox_tar, "webimage", [
        'CMD ["httpd", "-f", "-p", "80", "-h", "/www"]', "EXPOSE 80", "VOLUME /www", "STOPSIGNAL SIGKILL"])
    dy("run", "-d", "--name", "vol", "-P", "webimage")
    data = dy.inspect("vol")
    mount = next(m for m in data["Mounts"] if m["Destination"] == "/www")
    assert mount["Type"] == "volume"
    assert (Path(mount["Source"]) / "index.html").read_text() == "hello from busybox\n"  # copied from the image
    assert data["Config"]["StopSignal"] == "SIGKILL"
    host_port = int(data["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"])
    assert _http_get(f"http://127.0.0.1:{host_port}/") == "hello from busybox\n"
    dy("exec", "vol", "sh", "-c", "echo changed > /www/index.html")
    assert (Path(mount["Source"]) / "index.html").read_text() == "changed\n"
    started = time.monotonic()
    dy("stop", "-t", "10", "vol")  # STOPSIGNAL SIGKILL: no waiting for the timeout
    assert time.monotonic() - started < 5
    assert dy.inspect("vol")["State"]["ExitCode"] == 137


async def test_async_service_events_logs_and_stats(dy: Dockyard) -> None:
    from engine.config import EngineConfig
    from engine.events import ContainerStateChanged, LogLine
    from engine.runtime.options import RunOptions
    from engine.runtime.service import ContainerService

    config = EngineConfig(root=dy.root, bridge_name=dy.env["DOCKYARD_BRIDGE"], subnet=dy.env["DOCKYARD_SUBNET"])
    service = ContainerService(config)
    watcher = service.events(interval=0.05)
    first = asyncio.ensure_future(watcher.__anext__())
    await asyncio.sleep(0.2)  # the first poll only records what exists
    events = [e async for e in service.run("busybox", RunOptions(
        command=("sh", "-c", "echo one; echo two >&2; sleep 0.5; exit 4"), network="none", name="svc", detach=True))]
    assert [type(e).__name__ for e in events] == ["ContainerStateChanged", "ContainerStateChanged"]
    assert isinstance(events[0], ContainerStateChanged) and events[0].name == "svc"
    change = await asyncio.wait_for(first, 10)
    assert isinstance(change, ContainerStateChanged) and change.name == "svc"
    assert [s.name for s in await service.list()] == ["svc"]
    stats = await service.stats("svc", interval=0.1)
    assert stats.pids >= 1 and stats.memory_bytes > 0
    assert await service.wait("svc") == 4
    lines = [line async for line in service.logs("svc")]
    assert [(line.stream, line.text) for line in lines] == [("stdout", "one\n"), ("stderr", "two\n")]
    assert all(isinstance(line, LogLine) and line.time.endswith("Z") for line in lines)
    exited = await asyncio.wait_for(watcher.__anext__(), 10)
    while not (isinstance(exited, ContainerStateChanged) and exited.state == "exited"):
        exited = await asyncio.wait_for(watcher.__anext__(), 10)
    assert exited.exit_code == 4
    summary = (await service.list(all=True))[0]
    assert summary.status.startswith("Exited (4)")
    code, output = 0, b""
    await service.start("svc")
    code, output = await service.exec("svc", ["echo", "inside"], capture=True)
    assert (code, output) == (0, b"inside\n")
    await service.remove("svc", force=True)
    removed = await asyncio.wait_for(watcher.__anext__(), 10)
    while not (isinstance(removed, ContainerStateChanged) and removed.state == "removed"):
        removed = await asyncio.wait_for(watcher.__anext__(), 10)
    await watcher.aclose()
