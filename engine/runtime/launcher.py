"""Start a container's monitor as a detached process, early, and hand it its parameters later.

``python -m engine.runtime.monitor <state dir> <params fd> <sync fd>`` boots (imports) while the
caller is still preparing the container (``run`` = create + start), then blocks reading its
parameters from a pipe; once it has started the container (or failed) it writes one JSON line on
the sync pipe.  Closing the parameter pipe without writing makes it exit quietly.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.errors import ContainerRuntimeError

SYNC_TIMEOUT = 60.0
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


class MonitorLauncher:
    """Spawns ``python -m engine.runtime.monitor`` at once (it boots while the caller works).

    ``fork=True`` (only safe in a single-threaded caller such as the CLI) instead forks this process in
    :meth:`go`: the monitor then costs no interpreter start-up and no imports (~50 ms of CPU).
    """

    def __init__(self, state_dir: Path, pass_fds: Sequence[int] = (), *, fork: bool = False) -> None:
        self.state_dir = state_dir
        self.fork = fork
        self._keep = list(pass_fds)
        self._done = False
        if fork:
            return
        params_r, self._params_w = os.pipe2(os.O_CLOEXEC)
        self._sync_r, sync_w = os.pipe2(os.O_CLOEXEC)
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "PYTHONPATH": _PACKAGE_ROOT,
               "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "engine.runtime.monitor", str(state_dir), str(params_r), str(sync_w)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True, pass_fds=[params_r, sync_w, *pass_fds], cwd="/", env=env,
            )
        except OSError as exc:
            os.close(self._params_w)
            os.close(self._sync_r)
            raise ContainerRuntimeError(f"cannot start the container monitor: {exc.strerror}") from exc
        finally:
            os.close(params_r)
            os.close(sync_w)

    def abort(self) -> None:
        """The container will not start: let the monitor exit."""
        if self._done or self.fork:
            return
        self._done = True
        os.close(self._params_w)
        os.close(self._sync_r)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)

    def go(self, params: dict[str, Any]) -> dict[str, Any]:
        """Send the parameters and wait for the monitor's verdict (``{"ok": true, "pid": ...}``)."""
        if self.fork:
            return self._fork(params)
        self._done = True
        try:
            data = json.dumps(params).encode() + b"\n"
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(self._params_w, view):]
            except BrokenPipeError:
                pass  # it died early; the sync pipe tells
            finally:
                os.close(self._params_w)
            data = _read_line(self._sync_r, SYNC_TIMEOUT)
        finally:
            os.close(self._sync_r)
        if not data:
            self.proc.wait(timeout=5)
        return self._verdict(data)

    def _fork(self, params: dict[str, Any]) -> dict[str, Any]:
        self._done = True
        sync_r, sync_w = os.pipe2(os.O_CLOEXEC)
        from engine.runtime import monitor

        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        pid = os.fork()
        if pid == 0:  # the monitor: never returns into the caller's code
            code = 1
            try:
                os.setsid()
                os.close(sync_r)
                keep = {sync_w, *self._keep}
                null = os.open(os.devnull, os.O_RDWR)
                os.dup2(null, 0)
                log = os.open(self.state_dir / "monitor.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                os.dup2(log, 1)
                os.dup2(log, 2)
                _close_fds_except(keep)
                code = monitor.Monitor(self.state_dir, {**params, "sync_fd": sync_w}).run()
            except BaseException:
                with contextlib.suppress(BaseException):
                    import traceback

                    traceback.print_exc()
            finally:
                os._exit(code)
        os.close(sync_w)
        try:
            data = _read_line(sync_r, SYNC_TIMEOUT)
        finally:
            os.close(sync_r)
        return self._verdict(data)

    def _verdict(self, data: bytes) -> dict[str, Any]:
        if not data:
            detail = ""
            with contextlib.suppress(OSError):
                lines = (self.state_dir / "monitor.log").read_text(errors="replace").strip().splitlines()
                detail = lines[-1] if lines else ""
            suffix = f": {detail}" if detail else ""
            raise ContainerRuntimeError(f"the container monitor exited during start-up{suffix}")
        try:
            message: dict[str, Any] = json.loads(data.splitlines()[0])
        except ValueError as exc:
            raise ContainerRuntimeError(f"the container monitor sent {data[:100]!r}") from exc
        return message


def _close_fds_except(keep: set[int]) -> None:
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        fds = list(range(3, 1024))
    for fd in fds:
        if fd > 2 and fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)


def _read_line(fd: int, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise ContainerRuntimeError(f"the container monitor did not answer within {timeout:.0f}s")
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        if b"\n" in chunk:
            return b"".join(chunks)
