"""docker's json-file log format: one JSON object a line, ``{"log": ..., "stream": ..., "time": ...}``.

The monitor appends (never truncates), so a container's logs survive its monitor's restarts; every
line is written with one ``write`` so a reader never sees half an entry once the newline is there.
"""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from engine.runtime.record import now_rfc3339

MAX_LINE = 16 * 1024  # docker splits longer lines into 16K pieces


@dataclass(frozen=True, slots=True)
class LogEntry:
    stream: str
    text: str  # includes the trailing newline when there was one
    time: str


class LogWriter:
    """Splits stdout/stderr bytes into lines and appends them as json-file entries."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self._partial: dict[str, bytes] = {"stdout": b"", "stderr": b""}

    def feed(self, stream: str, data: bytes) -> None:
        buf = self._partial.get(stream, b"") + data
        out: list[bytes] = []
        while True:
            cut = buf.find(b"\n")
            if cut < 0 and len(buf) < MAX_LINE:
                break
            end = cut + 1 if 0 <= cut < MAX_LINE else MAX_LINE
            out.append(self._entry(stream, buf[:end]))
            buf = buf[end:]
        self._partial[stream] = buf
        if out:
            self._write(b"".join(out))

    def flush(self, stream: str | None = None) -> None:
        """Write what is left without a newline (at EOF of the stream)."""
        for name in [stream] if stream else list(self._partial):
            rest = self._partial.get(name, b"")
            if rest:
                self._partial[name] = b""
                self._write(self._entry(name, rest))

    def _entry(self, stream: str, chunk: bytes) -> bytes:
        text = chunk.decode("utf-8", "replace")
        return (json.dumps({"log": text, "stream": stream, "time": now_rfc3339()}) + "\n").encode()

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]

    def close(self) -> None:
        self.flush()
        os.close(self.fd)


def parse_line(line: bytes) -> LogEntry | None:
    try:
        data = json.loads(line)
        return LogEntry(str(data["stream"]), str(data["log"]), str(data["time"]))
    except (ValueError, KeyError, TypeError):
        return None


def read_entries(path: Path, tail: int | None = None) -> tuple[list[LogEntry], int]:
    """All (or the last ``tail``) complete entries, and the byte offset after the last complete line."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return [], 0
    end = data.rfind(b"\n") + 1
    lines = data[:end].splitlines()
    if tail is not None:
        lines = list(deque(lines, maxlen=tail)) if tail > 0 else []
    entries = [e for e in (parse_line(raw) for raw in lines) if e is not None]
    return entries, end


def read_from(path: Path, offset: int) -> tuple[list[LogEntry], int]:
    """Complete entries written after ``offset``, and the new offset."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1
    entries = [e for e in (parse_line(raw) for raw in data[:end].splitlines()) if e is not None]
    return entries, offset + end


def iter_entries(path: Path) -> Iterator[LogEntry]:
    entries, _ = read_entries(path)
    yield from entries
