"""The attach protocol: frames of ``>BI`` (type, length) + payload, and its client side.

Monitor -> client: 1 stdout, 2 stderr, 3 exit (JSON ``{"exit_code": n}``).  Client -> monitor:
0 stdin, 5 stdin EOF, 6 resize (``>HH`` rows, cols).

``AttachClient`` speaks the protocol; ``pump`` bridges it to local file descriptors (the CLI's
terminal or pipes) until the container exits, and returns its exit code.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import struct
from collections.abc import Callable
from pathlib import Path

from engine.errors import ContainerRuntimeError
from engine.runtime.record import socket_path

FRAME = struct.Struct(">BI")
T_STDIN, T_STDOUT, T_STDERR, T_EXIT, T_STDIN_EOF, T_RESIZE = 0, 1, 2, 3, 5, 6


def frame(kind: int, payload: bytes) -> bytes:
    return FRAME.pack(kind, len(payload)) + payload


def take_frames(buf: bytearray) -> list[tuple[int, bytes]]:
    """Remove and return the complete frames at the start of ``buf`` (a partial one stays)."""
    out: list[tuple[int, bytes]] = []
    while len(buf) >= FRAME.size:
        kind, length = FRAME.unpack_from(buf)
        if len(buf) < FRAME.size + length:
            break
        out.append((kind, bytes(buf[FRAME.size:FRAME.size + length])))
        del buf[:FRAME.size + length]
    return out


class AttachClient:
    def __init__(self, path: Path, timeout: float = 10.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self.sock.settimeout(timeout)
        try:
            with socket_path(path) as where:
                self.sock.connect(where)
        except OSError as exc:
            self.sock.close()
            raise ContainerRuntimeError(
                f"cannot attach to the container (its monitor is gone): {exc.strerror}"
            ) from exc
        self.sock.settimeout(None)
        self._buf = bytearray()
        self.exit_code: int | None = None

    def fileno(self) -> int:
        return self.sock.fileno()

    def _send(self, kind: int, payload: bytes) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(frame(kind, payload))

    def send_stdin(self, data: bytes) -> None:
        self._send(T_STDIN, data)

    def send_eof(self) -> None:
        self._send(T_STDIN_EOF, b"")

    def resize(self, rows: int, cols: int) -> None:
        self._send(T_RESIZE, struct.pack(">HH", rows, cols))

    def read_frames(self) -> list[tuple[int, bytes]] | None:
        """Frames available after one ``recv``; None at EOF (the monitor closed the connection)."""
        try:
            data = self.sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            return None
        self._buf += data
        out = take_frames(self._buf)
        for kind, payload in out:
            if kind == T_EXIT:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    self.exit_code = int(json.loads(payload)["exit_code"])
        return out

    def close(self) -> None:
        self.sock.close()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            select.select([], [fd], [])
        except BrokenPipeError:
            return


def pump(client: AttachClient, *, stdin_fd: int | None, stdout_fd: int = 1, stderr_fd: int = 2,
         on_winch: Callable[[], tuple[int, int] | None] | None = None, wake_fd: int | None = None) -> int:
    """Copy stdin to the container and its output to ``stdout_fd``/``stderr_fd`` until it exits.

    ``wake_fd`` (a pipe a SIGWINCH handler writes to) makes ``on_winch`` run and its size be sent.
    Returns the container's exit code (the monitor waits for the output to drain before sending it).
    """
    watch = [client.fileno()]
    if stdin_fd is not None:
        watch.append(stdin_fd)
    if wake_fd is not None:
        watch.append(wake_fd)
    while True:
        ready, _, _ = select.select(watch, [], [])
        if wake_fd is not None and wake_fd in ready:
            with contextlib.suppress(OSError):
                os.read(wake_fd, 512)
            size = on_winch() if on_winch is not None else None
            if size is not None:
                client.resize(*size)
        if stdin_fd is not None and stdin_fd in ready:
            try:
                data = os.read(stdin_fd, 65536)
            except OSError:
                data = b""
            if data:
                client.send_stdin(data)
            else:
                client.send_eof()
                watch.remove(stdin_fd)
                stdin_fd = None
        if client.fileno() in ready:
            frames = client.read_frames()
            if frames is None:
                break
            for kind, payload in frames:
                if kind == T_STDOUT:
                    _write_all(stdout_fd, payload)
                elif kind == T_STDERR:
                    _write_all(stderr_fd, payload)
    return client.exit_code if client.exit_code is not None else 255
