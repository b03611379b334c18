"""A private dockerd for interop tests: its own data root, exec root and socket in a temp dir.

Use the ``dockerd`` fixture (register it in a test module with ``from tests.dockerd import dockerd``)::

    def test_x(dockerd: Dockerd) -> None:
        dockerd.docker("load", "-i", str(path))

It starts with ``--iptables=false --ip6tables=false --bridge=none`` (no host networking is touched; run
containers with ``--network none``) in well under a second, and is stopped by its PID afterwards
(dockerd stops the containerd it spawned).  Tests skip with a reason when dockerd or docker is absent
or when not running as root.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

START_TIMEOUT = 20.0


@dataclass
class Dockerd:
    root: Path
    socket: Path
    pid: int
    log: Path

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["DOCKER_HOST"] = f"unix://{self.socket}"
        env["DOCKER_CONFIG"] = str(self.root / "client-config")
        env.pop("DOCKER_CONTEXT", None)
        return env

    def docker(self, *args: str, check: bool = True, timeout: float = 60.0,
               stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
        """Run the docker CLI against this daemon; raises AssertionError with stderr when it fails."""
        result = subprocess.run(
            ["docker", *args], env=self.env, capture_output=True, timeout=timeout,
            input=stdin,
        )
        out = subprocess.CompletedProcess(result.args, result.returncode,
                                          result.stdout.decode(errors="replace"),
                                          result.stderr.decode(errors="replace"))
        if check and out.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed ({out.returncode}): {out.stderr.strip()}")
        return out


def dockerd_unavailable() -> str | None:
    """Why a private dockerd cannot run here (None when it can)."""
    if shutil.which("dockerd") is None:
        return "dockerd is not installed (apt-get install docker.io)"
    if shutil.which("docker") is None:
        return "the docker CLI is not installed"
    if os.geteuid() != 0:
        return "dockerd needs root"
    return None


@contextlib.contextmanager
def running_dockerd(base: Path | None = None) -> Iterator[Dockerd]:
    """Start a private dockerd, yield it, stop it by its PID and remove its state."""
    root = Path(tempfile.mkdtemp(prefix="dyd-", dir=base))  # short: unix socket paths are limited
    socket = root / "docker.sock"
    log = root / "dockerd.log"
    args = [
        "dockerd", "--iptables=false", "--ip6tables=false", "--bridge=none",
        "--data-root", str(root / "data"), "--exec-root", str(root / "exec"),
        "--pidfile", str(root / "p"), "-H", f"unix://{socket}",
    ]
    with open(log, "wb") as log_fh:
        proc = subprocess.Popen(args, stdout=log_fh, stderr=subprocess.STDOUT, start_new_session=True)
    daemon = Dockerd(root, socket, proc.pid, log)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"dockerd exited at start: {log.read_text(errors='replace')[-2000:]}")
            if socket.exists() and daemon.docker("version", check=False, timeout=10).returncode == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"dockerd did not answer in {START_TIMEOUT}s: {log.read_text()[-2000:]}")
            time.sleep(0.05)
        yield daemon
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        _unmount_below(root)
        shutil.rmtree(root, ignore_errors=True)


def _unmount_below(root: Path) -> None:
    """dockerd may leave mounts (overlay, shm, netns) under its roots if killed mid-way."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return
    targets = [line.split()[1] for line in mounts if len(line.split()) > 1]
    for target in sorted((t for t in targets if t.startswith(str(root))), key=len, reverse=True):
        subprocess.run(["umount", "-l", target], capture_output=True, check=False)


@pytest.fixture(scope="module")
def dockerd() -> Iterator[Dockerd]:
    reason = dockerd_unavailable()
    if reason:
        pytest.skip(reason)
    with running_dockerd() as daemon:
        yield daemon
