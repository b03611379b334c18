"""Blob GETs whose bodies a worker thread drains straight from a blocking socket.

httpx hands a body over 64 KiB at a time through the event loop (an epoll register and unregister and
a few copies per read); for a layer of hundreds of MB that overhead, not the network, bounds a pull.
``DirectTransport`` wraps the ordinary transport and takes only the GETs that carry the ``DIRECT``
request extension: each gets its own connection (never pooled), opened, sent and answered in a worker
thread (h11 frames the request and parses the response head). The body stays in the socket until the
caller drains it with ``DirectBody.drain(sink, limit)``, which ``recv_into``s one reusable 1 MiB
buffer and hands each filled slice to ``sink`` in that same thread, so the caller can hash and write
it there without the GIL or the event loop in the way (sha256, ``recv`` and ``os.write`` all release
the GIL for large buffers).

Policy stays above, in RegistryClient: auth, redirects, retries and Range requests are built exactly
as before and this layer only moves bytes. It raises httpx's own exceptions (ConnectError,
ReadTimeout, RemoteProtocolError, ...), so the retry logic cannot tell it from the pooled transport,
and a consumer that does not know about ``DIRECT_BODY`` still reads the response through httpx.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import h11
import httpx

DIRECT = "dockyard.direct"  # request extension: send this GET over its own connection
DIRECT_BODY = "dockyard.direct_body"  # response extension: the DirectBody to drain
READ_SIZE = 1 << 20
MAX_THREADS = 16

Sink = Callable[[memoryview], None]
T = TypeVar("T")


class _Exchange:
    """One request and its response over one blocking socket, then closed (never reused).

    Only one thread touches it at a time; ``interrupt`` (a shutdown) is the one call that may come
    from another thread while a worker is blocked in it.
    """

    def __init__(self, request: httpx.Request, ssl_context: Callable[[], ssl.SSLContext]) -> None:
        self.request = request
        self._ssl_context = ssl_context
        self._sock: socket.socket | None = None
        self._h11 = h11.Connection(h11.CLIENT)
        self._timeouts: dict[str, float | None] = dict(request.extensions.get("timeout") or {})
        self._pending: collections.deque[memoryview] = collections.deque()  # body bytes h11 already holds
        self._remaining: int | None = None  # Content-Length framing: bytes still in the socket
        self._length = 0
        self._done = False
        self._buffer = memoryview(bytearray(0))

    # ---- worker thread ------------------------------------------------------------------------------

    def open(self) -> h11.Response:
        """Connect, send the request and read the response head."""
        url = self.request.url
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            sock = socket.create_connection((url.host, port), timeout=self._timeouts.get("connect"))
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(str(exc) or "timed out", request=self.request) from exc
        except OSError as exc:
            raise httpx.ConnectError(str(exc), request=self.request) from exc
        self._sock = sock
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if url.scheme == "https":
            sni = self.request.extensions.get("sni_hostname") or url.host
            try:
                self._sock = self._ssl_context().wrap_socket(sock, server_hostname=sni)
            except TimeoutError as exc:
                raise httpx.ConnectTimeout(str(exc) or "timed out", request=self.request) from exc
            except OSError as exc:
                raise httpx.ConnectError(str(exc), request=self.request) from exc
        self._send_head()
        return self._read_head()

    def _send_head(self) -> None:
        assert self._sock is not None
        request = h11.Request(method=self.request.method, target=self.request.url.raw_path,
                              headers=self.request.headers.raw)
        try:
            data = self._h11.send(request) or b""
            data += self._h11.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError as exc:
            raise httpx.LocalProtocolError(str(exc), request=self.request) from exc
        self._sock.settimeout(self._timeouts.get("write"))
        try:
            self._sock.sendall(data)
        except TimeoutError as exc:
            raise httpx.WriteTimeout(str(exc) or "timed out", request=self.request) from exc
        except OSError as exc:
            raise httpx.WriteError(str(exc), request=self.request) from exc
        self._sock.settimeout(self._timeouts.get("read"))

    def _read_head(self) -> h11.Response:
        while True:
            event = self._next_event()
            if isinstance(event, h11.Response):
                break
            if isinstance(event, h11.ConnectionClosed):
                raise httpx.RemoteProtocolError("Server disconnected without sending a response.",
                                                request=self.request)
            # InformationalResponse (100 Continue and friends): keep reading
        headers = {name: value for name, value in event.headers}
        if (b"transfer-encoding" not in headers and b"content-length" in headers
                and event.status_code not in (204, 304)):  # those never have a body, whatever they announce
            self._length = int(headers[b"content-length"])  # h11 validated it
            self._remaining = self._length
        # Whatever body bytes arrived with the head sit in h11's buffer: take them now.
        while not self._done:
            item = self._parsed_event()
            if item is h11.NEED_DATA:
                break
            self._take(item)
        return event

    def _next_event(self) -> Any:
        """The next h11 event, reading the socket as often as it takes."""
        while True:
            event = self._parsed_event()
            if event is not h11.NEED_DATA:
                return event
            self._h11.receive_data(self._recv())

    def _parsed_event(self) -> Any:
        try:
            return self._h11.next_event()
        except h11.RemoteProtocolError as exc:
            raise httpx.RemoteProtocolError(str(exc), request=self.request) from exc

    def _take(self, event: Any) -> None:
        if isinstance(event, h11.Data):
            self._pending.append(memoryview(event.data))
            if self._remaining is not None:
                self._remaining -= len(event.data)
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            self._done = True
        if self._remaining == 0:
            self._done = True

    def _recv(self) -> bytes:
        assert self._sock is not None
        try:
            return self._sock.recv(READ_SIZE)
        except TimeoutError as exc:
            raise httpx.ReadTimeout(str(exc) or "timed out", request=self.request) from exc
        except OSError as exc:
            raise httpx.ReadError(str(exc), request=self.request) from exc

    def drain(self, sink: Sink, limit: int, seconds: float | None) -> int:
        """Hand ``limit`` body bytes (fewer at the end, or once ``seconds`` have passed with some bytes
        handed over) to ``sink``; 0 once the body is done.

        ``sink`` gets views of a reused buffer: it must consume them before returning."""
        delivered = 0
        deadline = None if seconds is None else time.monotonic() + seconds
        while self._pending and delivered < limit:
            view = self._pending.popleft()
            sink(view)
            delivered += len(view)
        while delivered < limit and not self._done:
            if delivered and deadline is not None and time.monotonic() >= deadline:
                break
            if self._remaining is not None:
                got = self._recv_into(min(READ_SIZE, self._remaining))
                self._remaining -= got
                if self._remaining == 0:
                    self._done = True
                sink(self._buffer[:got])
                delivered += got
            else:  # chunked or close-delimited: let h11 frame it
                event = self._next_event()
                self._take(event)
                while self._pending:
                    view = self._pending.popleft()
                    sink(view)
                    delivered += len(view)
        return delivered

    def _recv_into(self, size: int) -> int:
        assert self._sock is not None
        if len(self._buffer) < size:
            self._buffer = memoryview(bytearray(READ_SIZE))
        try:
            got = self._sock.recv_into(self._buffer, size)
        except TimeoutError as exc:
            raise httpx.ReadTimeout(str(exc) or "timed out", request=self.request) from exc
        except OSError as exc:
            raise httpx.ReadError(str(exc), request=self.request) from exc
        if not got:
            assert self._remaining is not None
            raise httpx.RemoteProtocolError(
                "peer closed connection without sending complete message body "
                f"(received {self._length - self._remaining} bytes, expected {self._length})",
                request=self.request)
        return got

    # ---- any thread ---------------------------------------------------------------------------------

    def interrupt(self) -> None:
        """Wake a worker blocked on the socket (its read then fails); the socket stays open until close."""
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()


class DirectBody(httpx.AsyncByteStream):
    """A response body left in its socket; ``drain`` moves it from a worker thread."""

    def __init__(self, exchange: _Exchange, executor: concurrent.futures.Executor) -> None:
        self._exchange = exchange
        self._executor = executor

    async def drain(self, sink: Sink, limit: int, *, seconds: float | None = None) -> int:
        """Hand about ``limit`` more body bytes to ``sink``, called in a worker thread; 0 at the end.
        With ``seconds``, return early once that long has passed and some bytes moved (a slow network
        still gets regular progress steps).

        Cancelling waits for the worker to stop (the socket is shut down to wake it), so once this
        returns or raises, nothing is still calling ``sink``."""
        return await _run_to_the_end(self._executor, self._exchange.interrupt, self._exchange.drain, sink, limit,
                                     seconds)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        chunks: list[bytes] = []
        while await self.drain(lambda view: chunks.append(bytes(view)), READ_SIZE, seconds=1.0):
            for chunk in chunks:
                yield chunk
            chunks.clear()

    async def aclose(self) -> None:
        self._exchange.close()


class DirectTransport(httpx.AsyncBaseTransport):
    """Routes GETs that carry ``extensions={DIRECT: True}`` to their own socket; the rest to ``fallback``."""

    def __init__(self, fallback: httpx.AsyncBaseTransport, *, verify: bool = True,
                 max_threads: int = MAX_THREADS) -> None:
        self._fallback = fallback
        self._verify = verify
        self._executor = concurrent.futures.ThreadPoolExecutor(max_threads, thread_name_prefix="dockyard-blob")
        self._ssl: ssl.SSLContext | None = None
        self._ssl_lock = threading.Lock()

    def _ssl_context(self) -> ssl.SSLContext:
        with self._ssl_lock:
            if self._ssl is None:
                context = httpx.create_ssl_context(verify=self._verify, trust_env=False)
                context.set_alpn_protocols(["http/1.1"])
                self._ssl = context
            return self._ssl

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method != "GET" or not request.extensions.get(DIRECT):
            return await self._fallback.handle_async_request(request)
        exchange = _Exchange(request, self._ssl_context)
        future = asyncio.get_running_loop().run_in_executor(self._executor, exchange.open)
        try:
            head = await asyncio.shield(future)
        except asyncio.CancelledError:
            # The worker may be stuck in connect: let it finish on its own, then drop its socket.
            exchange.interrupt()

            def finished(done: asyncio.Future[h11.Response]) -> None:
                exchange.close()
                if not done.cancelled():
                    done.exception()  # retrieved: nobody waits for it any more

            future.add_done_callback(finished)
            raise
        except BaseException:
            exchange.close()
            raise
        body = DirectBody(exchange, self._executor)
        return httpx.Response(head.status_code, headers=head.headers.raw_items(), stream=body,
                              extensions={"http_version": b"HTTP/1.1", "reason_phrase": bytes(head.reason),
                                          DIRECT_BODY: body})

    async def aclose(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        await self._fallback.aclose()


async def _run_to_the_end(executor: concurrent.futures.Executor, interrupt: Callable[[], None],
                          fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in ``executor``; if cancelled, ``interrupt()`` and wait until the worker is done."""
    future = asyncio.get_running_loop().run_in_executor(executor, fn, *args)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        interrupt()
        while not future.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([future])
        if not future.cancelled():
            future.exception()  # retrieved: the interrupted read's error is expected
        raise
