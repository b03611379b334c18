"""The per-container monitor: ``python -m engine.runtime.monitor <state dir> <params fd> <sync fd>``.

Like podman's conmon, one small detached process (its own session) per running container.  It

* runs ``runc run --detach`` with the container's stdio: pipes, or a pty received over runc's
  ``--console-socket`` for ``-t``; output written before the first client attaches is replayed to it
  (``run`` without ``-d``), so no start gating is needed,
* is the container's parent (PR_SET_CHILD_SUBREAPER) and waits for it through a pidfd; the exit
  code is docker's (128+signal for a signalled process) and lands in the record with the finish time,
* appends stdout/stderr to ``container.log`` (json-file lines) and serves ``attach.sock``: framed
  output to every attached client, stdin and terminal resizes from them,
* runs the port forwarders (listening sockets handed over by the service) and the health checks,
* on exit runs ``runc delete`` and unmounts the rootfs; with ``--rm`` removes everything.

It imports only the standard library and small engine modules, so it starts in a few milliseconds.

The attach protocol (unix stream socket) is described in attach.py.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import functools
import json
import os
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path
from typing import Any

from engine.runtime.attach import T_EXIT, T_RESIZE, T_STDERR, T_STDIN, T_STDIN_EOF, T_STDOUT, frame, take_frames
from engine.runtime.logs import LogWriter
from engine.runtime.record import ContainerDir, ContainerRecord, HealthState, now_rfc3339, socket_path
from engine.runtime.runc import OciRuntime, exit_code_from_status, last_error

PR_SET_CHILD_SUBREAPER = 36
PR_SET_NAME = 15
MONITOR_COMM = b"dockyard-mon"
DRAIN_TIMEOUT = 2.0
ATTACH_WAIT = 30.0
CLIENT_BUFFER_LIMIT = 8 * 1024 * 1024
READ_CHUNK = 65536


class _Client:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.closing = False


class Monitor:
    def __init__(self, state_dir: Path, params: dict[str, Any]) -> None:
        self.cdir = ContainerDir(state_dir)
        self.params = params
        rt = params["runtime"]
        self.runtime = OciRuntime(rt["name"], rt["binary"], Path(rt["root"]))
        self.record: ContainerRecord = self.cdir.load()
        self.tty = self.record.options.tty
        self.interactive = self.record.options.interactive
        self.sel = selectors.DefaultSelector()
        self.clients: list[_Client] = []
        self.listener: socket.socket | None = None
        self.out_fds: dict[int, str] = {}  # readable fd -> stream name
        self.stdin_fd: int | None = None  # where client stdin goes (pipe write end or pty master)
        self.stdin_buf = bytearray()
        self.pty_master: int | None = None
        self.pid = 0
        self.pidfd: int | None = None
        self.started = False
        # run without -d: keep the output for the client that is about to attach (no start gating)
        self.replay: bytearray | None = bytearray() if params.get("wait_attach") else None
        self.exit_code: int | None = None
        self.logs: LogWriter | None = None
        self.forwarder: Any = None
        self.health_stop = threading.Event()
        self.health_thread: threading.Thread | None = None

    # ---- set-up ---------------------------------------------------------------------------------

    def run(self) -> int:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        libc.prctl(PR_SET_NAME, ctypes.c_char_p(MONITOR_COMM), 0, 0, 0)
        os.chdir(self.cdir.path)
        # held for the monitor's life: "is the monitor alive" is "is this lock taken" (no pid reuse races)
        self.alive_fd = os.open(self.cdir.monitor_lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self.alive_fd, fcntl.LOCK_EX)
        for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_IGN)
        sync_fd = self.params.get("sync_fd")
        try:
            self._prepare()
            self._create()
        except Exception as exc:  # report and leave: the container never ran
            message = getattr(exc, "message", None) or str(exc) or exc.__class__.__name__
            self._failed(message)
            self._sync(sync_fd, {"ok": False, "error": message})
            self._cleanup_after_exit()
            return 1
        ports = [m.to_dict() for m in self.forwarder.mappings] if self.forwarder is not None else []
        self._started()
        self._sync(sync_fd, {"ok": True, "pid": self.pid, "ports": ports})
        self._loop()
        self._finish()
        return 0

    def _sync(self, fd: int | None, message: dict[str, Any]) -> None:
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.write(fd, (json.dumps(message) + "\n").encode())
            os.close(fd)

    def _prepare(self) -> None:
        self.record = self.cdir.update(lambda r: r.with_state(monitor_pid=os.getpid(), error=""))
        self.logs = LogWriter(self.cdir.log)
        items = self.params.get("ports") or []
        if items:
            from engine.net.forward import BoundPorts, Forwarder

            bound = BoundPorts.adopt(items)
            self.forwarder = Forwarder(bound, self.params["target_ip"]).start()
            with contextlib.suppress(Exception):
                self.forwarder.serve_control(str(self.cdir.path / "ports.sock"))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.cdir.attach_socket)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        old = os.umask(0o177)
        try:
            with socket_path(self.cdir.attach_socket) as where:
                listener.bind(where)
        finally:
            os.umask(old)
        listener.listen(16)
        listener.setblocking(False)
        self.listener = listener
        self.sel.register(listener, selectors.EVENT_READ, "listener")

    def _create(self) -> None:
        devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        child_fds: list[int] = [err_w]
        console: socket.socket | None = None
        console_dir: str | None = None
        if self.tty:
            console_dir = tempfile.mkdtemp(prefix="dockyard-console-")  # short: sun_path holds 108 bytes
            console_path = Path(console_dir) / "console.sock"
            console = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            console.bind(str(console_path))
            console.listen(1)
            stdio = (devnull, devnull, err_w)
        else:
            out_r, out_w = os.pipe2(os.O_CLOEXEC)
            if self.interactive:
                in_r, in_w = os.pipe2(os.O_CLOEXEC)
                child_fds.append(in_r)
                self.stdin_fd = in_w
                os.set_blocking(in_w, False)
            else:
                in_r = devnull
            child_fds.append(out_w)
            stdio = (in_r, out_w, err_w)
            self.out_fds[out_r] = "stdout"
            self.out_fds[err_r] = "stderr"
        args = self.runtime.run_detached_args(self.cdir.id, self.cdir.bundle, self.cdir.pid_file,
                                              console_path if console_dir is not None else None)
        proc = subprocess.Popen(args, stdin=stdio[0], stdout=stdio[1], stderr=stdio[2],
                                cwd=str(self.cdir.path), close_fds=True)
        if console is not None:
            self.pty_master = self._receive_pty(console, proc)
        rc = proc.wait()
        for fd in child_fds:
            os.close(fd)
        os.close(devnull)
        if console is not None:
            console.close()
        if console_dir is not None:
            shutil.rmtree(console_dir, ignore_errors=True)
        if rc != 0:
            os.set_blocking(err_r, False)
            detail = b""
            with contextlib.suppress(OSError):
                detail = os.read(err_r, 65536)
            os.close(err_r)
            for fd in list(self.out_fds):
                if fd != err_r:
                    os.close(fd)
            self.out_fds.clear()
            raise RuntimeError(_create_error(detail.decode("utf-8", "replace")))
        if self.tty:
            # runc's own errors only; the container's output comes through the pty
            self.out_fds[err_r] = "stderr"
            assert self.pty_master is not None
            self.out_fds[self.pty_master] = "stdout"
            self.stdin_fd = self.pty_master
        self.pid = int(self.cdir.pid_file.read_text().strip())
        self.pidfd = os.pidfd_open(self.pid)
        for fd in self.out_fds:
            os.set_blocking(fd, False)
            self.sel.register(fd, selectors.EVENT_READ, "output")
        self.sel.register(self.pidfd, selectors.EVENT_READ, "exit")

    def _receive_pty(self, console: socket.socket, proc: subprocess.Popen[bytes]) -> int | None:
        console.settimeout(0.05)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                conn, _ = console.accept()
            except TimeoutError:
                if proc.poll() is not None:
                    return None
                continue
            with conn:
                _msg, fds, _flags, _addr = socket.recv_fds(conn, 4096, 1)
            if fds:
                os.set_inheritable(fds[0], False)
                return fds[0]
        return None

    def _started(self) -> None:
        self.started = True
        health = self.params.get("health")
        self.record = self.cdir.update(lambda r: r.with_state(
            status="running", pid=self.pid, started_at=now_rfc3339(), finished_at=None, exit_code=0,
            health=HealthState() if health else None,
        ))
        if health:
            self.health_thread = threading.Thread(target=self._health_loop, args=(health,), daemon=True)
            self.health_thread.start()

    def _failed(self, message: str) -> None:
        code = 127 if ("not found" in message or "no such file" in message) else (
            126 if "permission denied" in message else 125)
        with contextlib.suppress(Exception):
            self.record = self.cdir.update(lambda r: r.with_state(
                status="exited" if self.started else "created", error=message, exit_code=code, pid=0,
                monitor_pid=0, finished_at=now_rfc3339() if self.started else r.state.finished_at,
            ))

    # ---- the loop ---------------------------------------------------------------------------------

    def _loop(self) -> None:
        drain_deadline: float | None = None
        attach_deadline: float | None = None
        while True:
            timeout: float | None = None
            if self.exit_code is not None and (not self.out_fds or time.monotonic() >= (drain_deadline or 0)):
                if self.replay is None:
                    break
                # run without -d and the container was quicker than the client: wait for it to attach
                attach_deadline = attach_deadline or time.monotonic() + ATTACH_WAIT
                timeout = attach_deadline - time.monotonic()
                if timeout <= 0:
                    break
            elif drain_deadline is not None:
                timeout = max(0.0, drain_deadline - time.monotonic())
            for key, events in self.sel.select(timeout):
                kind = key.data
                if kind == "listener":
                    self._accept()
                elif kind == "output":
                    self._read_output(key.fd)
                elif kind == "exit":
                    self._reap()
                    drain_deadline = time.monotonic() + DRAIN_TIMEOUT
                elif kind == "stdin":
                    self._flush_stdin()
                elif isinstance(kind, _Client):
                    if events & selectors.EVENT_READ:
                        self._client_read(kind)
                    if events & selectors.EVENT_WRITE and kind in self.clients:
                        self._client_write(kind)

    def _accept(self) -> None:
        assert self.listener is not None
        try:
            sock, _ = self.listener.accept()
        except BlockingIOError:
            return
        sock.setblocking(False)
        client = _Client(sock)
        self.clients.append(client)
        self.sel.register(sock, selectors.EVENT_READ, client)
        if self.replay is not None:  # the first client gets what was written before it came
            replay, self.replay = self.replay, None
            if replay:
                client.outbuf += replay
                self._client_write(client)

    def _read_output(self, fd: int) -> None:
        stream = self.out_fds[fd]
        try:
            data = os.read(fd, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno != errno.EIO:  # EIO: the pty's last slave closed
                raise
            data = b""
        if not data:
            self.sel.unregister(fd)
            del self.out_fds[fd]
            os.close(fd)
            if fd == self.pty_master:
                self.pty_master = None
                self.stdin_fd = None
            if self.logs is not None:
                self.logs.flush(stream)
            return
        if self.logs is not None:
            self.logs.feed(stream, data)
        self._broadcast(frame(T_STDOUT if stream == "stdout" else T_STDERR, data))

    def _broadcast(self, data: bytes) -> None:
        if self.replay is not None and len(self.replay) < CLIENT_BUFFER_LIMIT:
            self.replay += data
        for client in list(self.clients):
            if len(client.outbuf) > CLIENT_BUFFER_LIMIT:
                self._drop(client)  # a client that does not read is cut off, the container is not
                continue
            was_empty = not client.outbuf
            client.outbuf += data
            if was_empty:
                self._client_write(client)

    def _client_write(self, client: _Client) -> None:
        try:
            sent = client.sock.send(client.outbuf)
            del client.outbuf[:sent]
        except BlockingIOError:
            pass
        except OSError:
            self._drop(client)
            return
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if client.outbuf else 0)
        with contextlib.suppress(KeyError, ValueError):
            self.sel.modify(client.sock, events, client)

    def _client_read(self, client: _Client) -> None:
        try:
            data = client.sock.recv(READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop(client)
            return
        client.inbuf += data
        for kind, payload in take_frames(client.inbuf):
            if kind == T_STDIN and self.stdin_fd is not None:
                self.stdin_buf += payload
                self._flush_stdin()
            elif kind == T_STDIN_EOF:
                self._close_stdin()
            elif kind == T_RESIZE and self.pty_master is not None and len(payload) == 4:
                rows, cols = struct.unpack(">HH", payload)
                with contextlib.suppress(OSError):
                    fcntl.ioctl(self.pty_master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def _flush_stdin(self) -> None:
        fd = self.stdin_fd
        if fd is None:
            self.stdin_buf.clear()
            return
        try:
            while self.stdin_buf:
                written = os.write(fd, self.stdin_buf)
                del self.stdin_buf[:written]
        except BlockingIOError:
            pass
        except OSError:
            self.stdin_buf.clear()
        registered = fd in self.sel.get_map() and self.sel.get_key(fd).data == "stdin"
        if self.stdin_buf and not registered and fd != self.pty_master:
            self.sel.register(fd, selectors.EVENT_WRITE, "stdin")
        elif not self.stdin_buf and registered:
            self.sel.unregister(fd)

    def _close_stdin(self) -> None:
        if self.tty:
            if self.pty_master is not None:  # ^D at the start of a line ends a reader's input
                with contextlib.suppress(OSError):
                    os.write(self.pty_master, b"\x04")
            return
        if self.stdin_fd is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(self.stdin_fd)
            os.close(self.stdin_fd)
            self.stdin_fd = None

    def _drop(self, client: _Client) -> None:
        if client in self.clients:
            self.clients.remove(client)
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(client.sock)
        client.sock.close()

    def _reap(self) -> None:
        assert self.pidfd is not None
        try:
            _, status = os.waitpid(self.pid, 0)
            self.exit_code = exit_code_from_status(status)
        except ChildProcessError:
            self.exit_code = 255  # not our child after all (should not happen with the subreaper bit)
        self.sel.unregister(self.pidfd)
        os.close(self.pidfd)
        self.pidfd = None

    # ---- health ------------------------------------------------------------------------------------

    def _health_loop(self, params: dict[str, Any]) -> None:
        from engine.runtime.health import HealthConfig, HealthTracker, ProbeResult

        config = HealthConfig(test=tuple(params["test"]), interval=params["interval"], timeout=params["timeout"],
                              retries=params["retries"], start_period=params["start_period"])
        tracker = HealthTracker(config)
        started = time.monotonic()
        while not self.health_stop.wait(config.interval):
            begin = now_rfc3339()
            args = [*self.runtime.base(), "exec", self.cdir.id, *config.test]
            try:
                proc = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True,
                                      timeout=config.timeout, check=False)
                code, output = proc.returncode, (proc.stdout + proc.stderr)[-4096:].decode("utf-8", "replace")
            except subprocess.TimeoutExpired:
                code, output = -1, f"Health check exceeded timeout ({config.timeout:g}s)"
            if self.health_stop.is_set():
                break
            tracker.record(ProbeResult(begin, now_rfc3339(), code, output), time.monotonic() - started)
            state = HealthState(tracker.status, tracker.failing_streak, tuple(r.to_json() for r in tracker.log))
            with contextlib.suppress(Exception):
                self.cdir.update(functools.partial(_with_health, state))

    # ---- the end -------------------------------------------------------------------------------------

    def _finish(self) -> None:
        self.health_stop.set()
        code = self.exit_code if self.exit_code is not None else 255
        for fd in list(self.out_fds):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.out_fds.clear()
        if self.logs is not None:
            self.logs.close()
            self.logs = None
        with contextlib.suppress(Exception):
            self.record = self.cdir.update(lambda r: r.with_state(
                status="exited", exit_code=code, finished_at=now_rfc3339(), pid=0,
            ))
        self._broadcast(frame(T_EXIT, json.dumps({"exit_code": code}).encode()))
        self._flush_clients(1.0)
        self._cleanup_after_exit()
        self._drop_clients()

    def _drop_clients(self) -> None:
        for client in list(self.clients):
            self._drop(client)

    def _flush_clients(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while any(c.outbuf for c in self.clients) and time.monotonic() < deadline:
            for key, events in self.sel.select(max(0.0, deadline - time.monotonic())):
                if isinstance(key.data, _Client) and events & selectors.EVENT_WRITE:
                    self._client_write(key.data)
                elif isinstance(key.data, _Client) and events & selectors.EVENT_READ:
                    self._client_read(key.data)

    def _cleanup_after_exit(self) -> None:
        if self.health_thread is not None:
            self.health_thread.join(timeout=5)
        if self.forwarder is not None:
            with contextlib.suppress(Exception):
                self.forwarder.stop()
            self.forwarder = None
        if self.listener is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(self.listener)
            self.listener.close()
            self.listener = None
            with contextlib.suppress(OSError):
                os.unlink(self.cdir.attach_socket)
        self._reap_orphans()
        from engine.runtime.teardown import release_mounts, teardown

        if self.record.options.remove:
            # the attached client (run --rm) returns once the container is gone from the listings;
            # the network detach and the pool refill (for a CLI caller, see engine/net/pool.py) follow
            problems = teardown(self.runtime, self.cdir, self.record.network, gone=self._drop_clients,
                                refill="inline" if self.params.get("refill_pool") else None)
            if problems:
                print("dockyard monitor: --rm left: " + "; ".join(problems), file=sys.stderr)
            return
        with contextlib.suppress(Exception):
            self.runtime.delete(self.cdir.id, force=True)
        with contextlib.suppress(Exception):
            release_mounts(self.cdir)
        with contextlib.suppress(Exception):
            self.cdir.update(lambda r: r.with_state(monitor_pid=0))

    @staticmethod
    def _reap_orphans() -> None:
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return


def _with_health(state: HealthState, record: ContainerRecord) -> ContainerRecord:
    return record.with_state(health=state) if record.state.status == "running" else record


def _create_error(stderr: str) -> str:
    message = last_error(stderr)
    if "executable file not found" in message or "no such file or directory" in message:
        # runc: exec: "foo": executable file not found in $PATH
        return f"cannot start the container: {message}"
    return f"runc run failed: {message}"


def _read_params(fd: int) -> bytes:
    chunks: list[bytes] = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print("usage: python -m engine.runtime.monitor <state dir> <params fd> <sync fd>", file=sys.stderr)
        return 2
    state_dir, params_fd, sync_fd = Path(argv[1]), int(argv[2]), int(argv[3])
    raw = _read_params(params_fd)  # blocks until the caller has prepared the container
    if not raw.strip():
        return 0  # the caller gave up (create failed)
    log = os.open(state_dir / "monitor.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    params = json.loads(raw)
    params["sync_fd"] = sync_fd
    return Monitor(state_dir, params).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
