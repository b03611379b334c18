"""The OCI runtime driver: runc by default, crun when configured and usable on this host.

Only argument lists and small synchronous calls live here; the monitor runs ``create`` with the
container's stdio, the service runs ``kill``/``delete``/``state``/``exec``.  runc's own state lives in
``--root <DOCKYARD_ROOT>/runtime/<name>`` so it survives a restart of dockyard and never mixes with
another engine's containers.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import ContainerRuntimeError, RuntimeUnavailableError

KNOWN_RUNTIMES = ("runc", "crun")


@dataclass(frozen=True, slots=True)
class OciRuntime:
    """An OCI runtime binary (runc, crun) with its state root."""

    name: str
    binary: str
    root: Path

    def base(self) -> list[str]:
        return [self.binary, "--root", str(self.root)]

    def create_args(self, container_id: str, bundle: Path, pid_file: Path,
                    console_socket: Path | None = None) -> list[str]:
        args = [*self.base(), "create", "--bundle", str(bundle), "--pid-file", str(pid_file)]
        if console_socket is not None:
            args += ["--console-socket", str(console_socket)]
        return [*args, container_id]

    def run_detached_args(self, container_id: str, bundle: Path, pid_file: Path,
                          console_socket: Path | None = None) -> list[str]:
        """``run --detach``: create and start in one runc invocation (one Go start-up less)."""
        args = [*self.base(), "run", "--detach", "--bundle", str(bundle), "--pid-file", str(pid_file)]
        if console_socket is not None:
            args += ["--console-socket", str(console_socket)]
        return [*args, container_id]

    def start_args(self, container_id: str) -> list[str]:
        return [*self.base(), "start", container_id]

    def exec_args(self, container_id: str, process_json: Path, *, tty: bool, detach: bool = False,
                  pid_file: Path | None = None, console_socket: Path | None = None) -> list[str]:
        args = [*self.base(), "exec", "--process", str(process_json)]
        if tty:
            args.append("--tty")
        if detach:
            args.append("--detach")
        if pid_file is not None:
            args += ["--pid-file", str(pid_file)]
        if console_socket is not None:
            args += ["--console-socket", str(console_socket)]
        return [*args, container_id]

    def _run(self, args: list[str], what: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
        except FileNotFoundError as exc:
            raise RuntimeUnavailableError(f"{self.name} not found at {self.binary}") from exc
        except subprocess.TimeoutExpired as exc:
            raise ContainerRuntimeError(f"{self.name} {what} timed out after {timeout:.0f}s") from exc

    def start(self, container_id: str) -> None:
        result = self._run(self.start_args(container_id), "start")
        if result.returncode != 0:
            raise ContainerRuntimeError(f"{self.name} start failed: {last_error(result.stderr)}")

    def kill(self, container_id: str, signal: str, *, all_processes: bool = False) -> bool:
        """Send ``signal``; False when the container is not running (nothing to signal)."""
        args = [*self.base(), "kill"]
        if all_processes:
            args.append("--all")
        result = self._run([*args, container_id, signal], "kill")
        if result.returncode != 0:
            message = last_error(result.stderr)
            if "not running" in message or "does not exist" in message or "no such process" in message:
                return False
            raise ContainerRuntimeError(f"{self.name} kill failed: {message}")
        return True

    def delete(self, container_id: str, *, force: bool = False) -> None:
        args = [*self.base(), "delete"]
        if force:
            args.append("--force")
        result = self._run([*args, container_id], "delete")
        if result.returncode != 0:
            message = last_error(result.stderr)
            if "does not exist" in message or "not exist" in message:
                return
            raise ContainerRuntimeError(f"{self.name} delete failed: {message}")

    def state(self, container_id: str) -> dict[str, Any] | None:
        """runc's view (``status``: created, running, stopped, paused; ``pid``); None when unknown to it."""
        result = self._run([*self.base(), "state", container_id], "state")
        if result.returncode != 0:
            return None
        try:
            data = json.loads(result.stdout)
        except ValueError:
            return None
        return data if isinstance(data, dict) else None


def last_error(stderr: str) -> str:
    """runc's error line without its log prefix (``time=... level=error msg="..."``)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    if not lines:
        return "unknown error"
    line = lines[-1]
    if 'msg="' in line:
        line = line.split('msg="', 1)[1].rsplit('"', 1)[0].replace('\\"', '"')
    return line[:500]


def find_runtime(name: str, state_root: Path, cgroup_mode: str) -> OciRuntime:
    """The configured runtime, checked: present on PATH, and crun refused on hybrid cgroup hosts."""
    if "/" in name:
        binary: str | None = name
        name = Path(name).name
    else:
        binary = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if name not in KNOWN_RUNTIMES:
        raise RuntimeUnavailableError(f"unknown OCI runtime {name!r} (use runc or crun)")
    if binary is None or not Path(binary).exists():
        raise RuntimeUnavailableError(f"OCI runtime {name!r} not found; install it or set DOCKYARD_RUNTIME=runc")
    if name == "crun" and cgroup_mode == "hybrid":
        raise RuntimeUnavailableError(
            "crun refuses hybrid cgroup hosts (v1 controllers plus a cgroup2 tree); use runc "
            "(DOCKYARD_RUNTIME=runc) or move the host to cgroup v2"
        )
    return OciRuntime(name, binary, state_root / name)


def exit_code_from_status(status: int) -> int:
    """``os.waitpid`` status -> docker's exit code (128 + signal for a signalled process)."""
    import os

    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    return 255
