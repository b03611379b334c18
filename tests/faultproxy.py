"""A fault-injecting HTTP/1.1 proxy to put in front of a real registry (or any loopback HTTP server).

::

    with FaultProxy("127.0.0.1", registry.port) as proxy:
        proxy.add(Fault("drop", method="GET", path=r"/blobs/", after=300_000))   # cut a blob download
        proxy.add(Fault("status", path=r"/manifests/", status=500, times=2))     # two 500s, then real answers
        proxy.add(Fault("status", status=429, headers={"Retry-After": "0"}))     # rate limited once
        proxy.add(Fault("truncate", path=r"/blobs/", after=1000))                # short body, then close
        proxy.add(Fault("corrupt", path=r"/blobs/", after=10, times=-1))         # flip a byte, always
        proxy.add(Fault("drop_upload", method="PUT", after=100_000))             # cut a request body
        ... point the client at proxy.host ...
        proxy.log   # [(method, path, what happened)]

A fault applies to the requests it matches (``method`` exact, ``path`` a regex searched in the request
target), ``times`` times (-1: forever). Faults are consumed in the order they were added. The proxy runs
its own event loop in a daemon thread, so synchronous tools (skopeo, docker) can be pointed at it too;
it keeps one upstream connection per client connection (keep-alive both sides).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from dataclasses import dataclass, field
from types import TracebackType


@dataclass
class Fault:
    kind: str  # drop | truncate | corrupt | status | drop_upload
    method: str | None = None
    path: str | None = None
    times: int = 1
    after: int = 0  # body bytes passed before the fault acts
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b'{"errors":[{"code":"UNKNOWN","message":"injected fault"}]}'

    def matches(self, method: str, target: str) -> bool:
        if self.times == 0:
            return False
        if self.method is not None and self.method != method:
            return False
        return self.path is None or re.search(self.path, target) is not None


class _Closed(Exception):
    pass


async def _read_head(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError) as exc:
        raise _Closed from exc


def _header(head: bytes, name: str) -> str | None:
    for line in head.split(b"\r\n")[1:]:
        key, sep, value = line.partition(b":")
        if sep and key.strip().lower() == name.encode():
            return value.strip().decode("latin-1")
    return None


def _with_length(head: bytes, length: int) -> bytes:
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"content-length:")]
    return b"\r\n".join([*lines[:1], f"Content-Length: {length}".encode(), *lines[1:]])


class FaultProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.faults: list[Fault] = []
        self.log: list[tuple[str, str, str]] = []
        self.port = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._ready = threading.Event()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()

    def _take(self, method: str, target: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.matches(method, target):
                    if fault.times > 0:
                        fault.times -= 1
                    return fault
        return None

    # ---- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._thread = threading.Thread(target=self._run, name="faultproxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fault proxy did not start")
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)

        async def boot() -> None:
            self._server = await asyncio.start_server(self._client, "127.0.0.1", 0, limit=1 << 20)
            self.port = self._server.sockets[0].getsockname()[1]
            self._ready.set()

        loop.run_until_complete(boot())
        loop.run_forever()
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    def stop(self) -> None:
        loop = self._loop
        if loop is None:
            return

        async def halt() -> None:
            if self._server is not None:
                self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        with contextlib.suppress(RuntimeError):
            asyncio.run_coroutine_threadsafe(halt(), loop).result(5)
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # ---- one client connection ----------------------------------------------------------------------

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while True:
                head = await _read_head(reader)
                request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
                method, target = request_line.split(" ")[:2]
                fault = self._take(method, target)
                if fault is not None and fault.kind == "status":
                    await self._skip_body(reader, head)
                    self.log.append((method, target, f"status {fault.status}"))
                    extra = "".join(f"{k}: {v}\r\n" for k, v in fault.headers.items())
                    writer.write(
                        f"HTTP/1.1 {fault.status} Injected\r\nContent-Type: application/json\r\n"
                        f"Content-Length: {len(fault.body)}\r\n{extra}\r\n".encode() + fault.body
                    )
                    await writer.drain()
                    continue
                if upstream is None:
                    upstream = await asyncio.open_connection(*self.upstream, limit=1 << 20)
                up_reader, up_writer = upstream
                # Rewrite Host so redirects and Location headers keep working through the proxy.
                up_writer.write(head)
                if fault is not None and fault.kind == "drop_upload":
                    sent = await self._pipe_body(reader, head, up_writer, limit=fault.after)
                    if sent >= fault.after:
                        self.log.append((method, target, f"upload dropped after {sent}"))
                        raise _Closed
                else:
                    await self._pipe_body(reader, head, up_writer)
                await up_writer.drain()
                response_head = await _read_head(up_reader)
                status = response_head.split(b" ", 2)[1].decode()
                self.log.append((method, target, f"status {status}" + (f" {fault.kind}" if fault else "")))
                body_allowed = method != "HEAD" and status not in ("204", "304") and not status.startswith("1")
                if fault is not None and fault.kind == "truncate" and body_allowed and status.startswith("2"):
                    # A well-framed but short answer: Content-Length says `after`, and that is all that comes.
                    writer.write(_with_length(response_head, fault.after))
                    await self._pipe_response(up_reader, response_head, writer,
                                              Fault("drop", after=fault.after), graceful=True)
                    up_writer.close()
                    upstream = None
                    continue
                writer.write(response_head)
                if not body_allowed:
                    await writer.drain()
                    continue
                await self._pipe_response(up_reader, response_head, writer, fault)
        except (_Closed, ConnectionError, asyncio.IncompleteReadError, OSError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            for w in ([writer] + ([upstream[1]] if upstream else [])):
                with contextlib.suppress(Exception):
                    w.close()

    async def _skip_body(self, reader: asyncio.StreamReader, head: bytes) -> None:
        length = int(_header(head, "content-length") or 0)
        if length:
            await reader.readexactly(length)
        elif (_header(head, "transfer-encoding") or "").lower() == "chunked":
            await self._pipe_chunked(reader, None)

    async def _pipe_body(self, reader: asyncio.StreamReader, head: bytes, out: asyncio.StreamWriter,
                         limit: int | None = None) -> int:
        if (_header(head, "transfer-encoding") or "").lower() == "chunked":
            return await self._pipe_chunked(reader, out, limit)
        remaining = int(_header(head, "content-length") or 0)
        sent = 0
        while remaining:
            chunk = await reader.read(min(remaining, 1 << 20))
            if not chunk:
                raise _Closed
            if limit is not None and sent + len(chunk) >= limit:
                out.write(chunk[: max(0, limit - sent)])
                return limit
            out.write(chunk)
            await out.drain()
            sent += len(chunk)
            remaining -= len(chunk)
        return sent

    async def _pipe_chunked(self, reader: asyncio.StreamReader, out: asyncio.StreamWriter | None,
                            limit: int | None = None) -> int:
        sent = 0
        while True:
            line = await reader.readuntil(b"\r\n")
            size = int(line.split(b";")[0].strip(), 16)
            data = await reader.readexactly(size + 2)
            if out is not None:
                out.write(line + data)
                await out.drain()
            sent += size
            if limit is not None and sent >= limit:
                return sent
            if size == 0:
                if data == b"\r\n":
                    return sent
                # trailers: read until the blank line
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                return sent

    async def _pipe_response(self, up: asyncio.StreamReader, head: bytes, writer: asyncio.StreamWriter,
                             fault: Fault | None, *, graceful: bool = False) -> None:
        chunked = (_header(head, "transfer-encoding") or "").lower() == "chunked"
        if chunked:
            await self._pipe_chunked(up, writer)
            await writer.drain()
            return
        length_text = _header(head, "content-length")
        remaining = int(length_text) if length_text is not None else -1
        position = 0
        while remaining != 0:
            chunk = await up.read(min(remaining, 1 << 20) if remaining > 0 else 1 << 20)
            if not chunk:
                if remaining > 0:
                    raise _Closed
                break
            if fault is not None and fault.kind == "drop" and position + len(chunk) >= fault.after:
                writer.write(chunk[: max(0, fault.after - position)])
                await writer.drain()
                if graceful:
                    return
                raise _Closed  # the client sees the connection end mid-body
            if fault is not None and fault.kind == "corrupt" and position <= fault.after < position + len(chunk):
                index = fault.after - position
                chunk = chunk[:index] + bytes([chunk[index] ^ 0xFF]) + chunk[index + 1:]
            writer.write(chunk)
            await writer.drain()
            position += len(chunk)
            if remaining > 0:
                remaining -= len(chunk)
