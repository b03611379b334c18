"""Blob GETs drained by a worker thread from their own socket (engine.registry.direct).

Unit-level: tiny loopback servers that write raw HTTP/1.1 (Content-Length, chunked, short and stalled
bodies, cross-origin redirects). Integration: pull from the real registry through the fault proxy with
an injected httpx client, the path that reads bodies through httpx instead."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from engine.events import TransferFinished
from engine.oci.reference import Reference
from engine.registry.client import BLOB_TIMEOUT, RegistryClient
from engine.registry.credentials import Credential
from engine.registry.direct import DIRECT, DIRECT_BODY, READ_SIZE, DirectBody, DirectTransport
from engine.registry.pull import pull_image
from engine.store.layout import ImageStore
from tests.faultproxy import Fault, FaultProxy
from tests.test_registry_faults import assert_clean, collect, push_direct, via

if TYPE_CHECKING:
    from tests.registryfixtures import RunningRegistry

pytest_plugins = ["tests.registryfixtures"]

Script = Callable[[socket.socket, bytes], None]  # (connection, request head) -> writes a response


class RawServer:
    """Answers each connection with the next script; records the request heads it saw."""

    def __init__(self, *scripts: Script) -> None:
        self.scripts = list(scripts)
        self.heads: list[bytes] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        for script in self.scripts:
            conn, _ = self.listener.accept()
            with conn:
                head = b""
                while b"\r\n\r\n" not in head:
                    data = conn.recv(65536)
                    if not data:
                        break
                    head += data
                self.heads.append(head)
                with contextlib.suppress(OSError):  # the client hung up: fine
                    script(conn, head)

    def close(self) -> None:
        self.listener.close()
        self.thread.join(timeout=5)


@pytest.fixture
def raw_server() -> Iterator[Callable[..., RawServer]]:
    made: list[RawServer] = []

    def make(*scripts: Script) -> RawServer:
        made.append(RawServer(*scripts))
        return made[-1]

    yield make
    for server in made:
        server.close()


def client_for() -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=DirectTransport(httpx.AsyncHTTPTransport()), timeout=BLOB_TIMEOUT)


@contextlib.asynccontextmanager
async def direct_get(server: RawServer, path: str = "/b") -> AsyncIterator[tuple[httpx.Response, DirectBody]]:
    """A GET routed through DirectTransport: (response, its DirectBody); closed on exit."""
    async with client_for() as http:
        request = http.build_request("GET", f"http://127.0.0.1:{server.port}{path}", extensions={DIRECT: True})
        response = await http.send(request, stream=True)
        try:
            body = response.extensions[DIRECT_BODY]
            assert isinstance(body, DirectBody)
            yield response, body
        finally:
            await response.aclose()


async def drain_all(body: DirectBody, limit: int = 4 * READ_SIZE) -> tuple[bytes, int]:
    out = bytearray()
    steps = 0
    while await body.drain(out.extend, limit):
        steps += 1
    return bytes(out), steps


async def test_content_length_body_arrives_whole_even_when_it_starts_in_the_head_packet(
    raw_server: Callable[..., RawServer],
) -> None:
    payload = os.urandom(3 * READ_SIZE + 12345)

    def script(conn: socket.socket, head: bytes) -> None:
        # head and the first body bytes in one send, the rest in odd pieces
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(payload) + payload[:1000])
        for start in range(1000, len(payload), 777_777):
            conn.sendall(payload[start:start + 777_777])

    server = raw_server(script)
    async with direct_get(server, "/v2/r/blobs/x") as (response, body):
        data, steps = await drain_all(body, limit=READ_SIZE)
    assert response.status_code == 200 and data == payload
    assert steps >= 3  # the caller got control back between steps (progress)
    assert server.heads[0].startswith(b"GET /v2/r/blobs/x HTTP/1.1\r\n")


async def test_a_slow_body_still_returns_control_regularly(raw_server: Callable[..., RawServer]) -> None:
    def trickle(conn: socket.socket, head: bytes) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 8000\r\n\r\n")
        for _ in range(8):
            time.sleep(0.05)
            conn.sendall(b"z" * 1000)

    server = raw_server(trickle)
    steps: list[int] = []
    async with direct_get(server) as (_, body):
        while moved := await body.drain(lambda view: None, 4 * READ_SIZE, seconds=0.1):
            steps.append(moved)
    assert sum(steps) == 8000 and len(steps) >= 3  # a 4 MiB step would otherwise wait for the whole body


async def test_chunked_body_is_framed_by_h11(raw_server: Callable[..., RawServer]) -> None:
    payload = os.urandom(2 * READ_SIZE + 7)

    def script(conn: socket.socket, head: bytes) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for start in range(0, len(payload), 300_000):
            piece = payload[start:start + 300_000]
            conn.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
        conn.sendall(b"0\r\n\r\n")

    server = raw_server(script)
    async with direct_get(server) as (_, body):
        data, _ = await drain_all(body)
    assert data == payload


async def test_a_short_body_is_a_protocol_error_after_the_bytes_that_came(
    raw_server: Callable[..., RawServer],
) -> None:
    def script(conn: socket.socket, head: bytes) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5000000\r\n\r\n" + b"x" * 100_000)

    server = raw_server(script)
    got = bytearray()
    async with direct_get(server) as (_, body):
        with pytest.raises(httpx.RemoteProtocolError, match="received 100000 bytes, expected 5000000"):
            while await body.drain(got.extend, READ_SIZE):
                pass
    assert bytes(got) == b"x" * 100_000


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",  # a broken chunk header with the head
    b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",  # conflicting lengths
    b"",  # hung up without an answer
])
async def test_a_broken_answer_is_httpx_protocol_error(raw_server: Callable[..., RawServer], answer: bytes) -> None:
    server = raw_server(lambda conn, head: conn.sendall(answer))
    with pytest.raises(httpx.RemoteProtocolError):
        async with direct_get(server) as (_, body):
            await drain_all(body)


async def test_error_bodies_read_through_httpx_and_other_requests_use_the_pool(
    raw_server: Callable[..., RawServer],
) -> None:
    def not_found(conn: socket.socket, head: bytes) -> None:
        body = b'{"errors":[{"code":"BLOB_UNKNOWN","message":"nope"}]}'
        conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: %d\r\n\r\n" % len(body) + body)

    def plain(conn: socket.socket, head: bytes) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

    server = raw_server(not_found, plain)
    async with client_for() as http:
        request = http.build_request("GET", f"http://127.0.0.1:{server.port}/b", extensions={DIRECT: True})
        response = await http.send(request, stream=True)
        assert response.status_code == 404
        assert (await response.aread()).startswith(b'{"errors"')
        await response.aclose()
        ordinary = await http.get(f"http://127.0.0.1:{server.port}/m")
    assert ordinary.text == "ok" and DIRECT_BODY not in ordinary.extensions


async def test_cancelling_a_stalled_drain_stops_the_worker_before_returning(
    raw_server: Callable[..., RawServer],
) -> None:
    release = threading.Event()

    def stall(conn: socket.socket, head: bytes) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n" + b"y" * 1000)
        release.wait(10)

    server = raw_server(stall)
    calls: list[float] = []
    async with direct_get(server) as (_, body):
        task = asyncio.create_task(body.drain(lambda view: calls.append(time.monotonic()), 2 * READ_SIZE))
        await asyncio.sleep(0.2)  # the worker is now blocked in recv_into
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        cancelled_at = time.monotonic()
    release.set()
    assert cancelled_at - started < 2.0
    assert len(calls) == 1 and calls[0] < started  # the 1000 bytes before the stall, nothing after


async def test_direct_blob_get_follows_a_redirect_without_leaking_authorization(
    raw_server: Callable[..., RawServer],
) -> None:
    blob = os.urandom(1_500_000)
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()

    def storage(conn: socket.socket, head: bytes) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(blob) + blob)

    store = raw_server(storage)

    def answer(status: bytes, extra: bytes = b"") -> Script:
        return lambda conn, head: conn.sendall(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\n" + extra + b"\r\n")

    registry = raw_server(
        answer(b"401 Unauthorized", b'WWW-Authenticate: Basic realm="fake"\r\n'),  # the ping
        answer(b"307 Temporary Redirect", b"Location: http://127.0.0.1:%d/bucket/x?sig=1\r\n" % store.port),
    )
    async with RegistryClient(f"127.0.0.1:{registry.port}", credential=Credential("user", "secret"),
                              force_insecure=True) as client:
        blob_url = client.url(f"/v2/app/blobs/{digest}")
        async with client.stream("GET", blob_url, scopes=("repository:app:pull",), direct=True,
                                 timeout=BLOB_TIMEOUT) as response:
            data, _ = await drain_all(response.extensions[DIRECT_BODY])
    assert data == blob
    assert b"authorization: basic" in registry.heads[1].lower()
    assert b"authorization" not in store.heads[0].lower()
    assert store.heads[0].startswith(b"GET /bucket/x?sig=1 HTTP/1.1\r\n")


@pytest.mark.registry
async def test_pull_with_an_injected_httpx_client_resumes_through_httpx(
    open_registry: RunningRegistry, tmp_path: Path,
) -> None:
    ref = Reference.parse(f"{open_registry.host}/direct-{secrets.token_hex(4)}/big:1")
    _, image = await push_direct(ref, tmp_path)
    layer = image.manifest.layers[0].digest
    with FaultProxy("127.0.0.1", open_registry.port) as proxy:
        proxy.add(Fault("drop", method="GET", path=f"/blobs/{layer}", after=700_000))
        proxy.add(Fault("truncate", method="GET", path=f"/blobs/{layer}", after=500_000))
        dest = ImageStore(tmp_path / "dest")
        async with httpx.AsyncClient(follow_redirects=False, trust_env=False) as http, \
                RegistryClient(proxy.host, backoff=0.01, http=http) as client:
            events = await collect(pull_image(client, dest, via(proxy, ref)))
        what = [entry[2] for entry in proxy.log if f"/blobs/{layer}" in entry[1]]
    assert isinstance(events[-1], TransferFinished)
    assert dest.resolve(str(via(proxy, ref))).id == image.id
    assert any("drop" in w for w in what) and any(w.startswith("status 206") for w in what)
    assert_clean(dest)
