"""Blob redirects between two loopback servers: Authorization goes to the registry's origin only.

Unit-level: a tiny in-process fake registry (Basic auth) that redirects blob GETs to a second server,
as registries backed by object storage do."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from engine.oci.digest import Digest
from engine.registry.client import RegistryClient
from engine.registry.credentials import Credential

BLOB = b"blob bytes served from storage" * 100
DIGEST = Digest.from_bytes(BLOB)


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None]] = []  # (path, Authorization)


def serve(handler_factory: type[http.server.BaseHTTPRequestHandler]) -> http.server.ThreadingHTTPServer:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler_factory)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def servers() -> Iterator[tuple[str, Recorder, Recorder]]:
    registry_log, storage_log = Recorder(), Recorder()
    storage_port: list[int] = []

    class Storage(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            storage_log.seen.append((self.path, self.headers.get("Authorization")))
            self.send_response(200)
            self.send_header("Content-Length", str(len(BLOB)))
            self.end_headers()
            self.wfile.write(BLOB)

    class Registry(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            auth = self.headers.get("Authorization")
            registry_log.seen.append((self.path, auth))
            if auth is None:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="fake"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if self.path == "/v2/":
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif self.path.startswith("/v2/app/blobs/"):
                self.send_response(307)
                where = f"http://127.0.0.1:{storage_port[0]}/bucket/{DIGEST.hex}?sig=x" if "same" not in \
                    self.headers.get("X-Test", "") else f"/local/{DIGEST.hex}"
                self.send_header("Location", where)
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif self.path.startswith("/local/"):
                self.send_response(200)
                self.send_header("Content-Length", str(len(BLOB)))
                self.end_headers()
                self.wfile.write(BLOB)

    storage = serve(Storage)
    storage_port.append(storage.server_address[1])
    registry = serve(Registry)
    try:
        yield f"127.0.0.1:{registry.server_address[1]}", registry_log, storage_log
    finally:
        for server in (storage, registry):
            server.shutdown()
            server.server_close()


async def test_authorization_is_not_sent_to_another_host(servers: tuple[str, Recorder, Recorder]) -> None:
    host, registry_log, storage_log = servers
    async with RegistryClient(host, credential=Credential("user", "secret")) as client:
        assert await client.get_blob("app", DIGEST, max_size=1 << 20) == BLOB
    assert storage_log.seen == [(f"/bucket/{DIGEST.hex}?sig=x", None)]
    blob_requests = [auth for path, auth in registry_log.seen if path.startswith("/v2/app/blobs/")]
    assert blob_requests and all(auth and auth.startswith("Basic ") for auth in blob_requests)


async def test_same_origin_redirect_keeps_authorization(servers: tuple[str, Recorder, Recorder]) -> None:
    host, registry_log, storage_log = servers
    async with RegistryClient(host, credential=Credential("user", "secret")) as client:
        client.http.headers["X-Test"] = "same"
        assert await client.get_blob("app", DIGEST, max_size=1 << 20) == BLOB
    assert storage_log.seen == []
    local = [auth for path, auth in registry_log.seen if path.startswith("/local/")]
    assert local and all(auth and auth.startswith("Basic ") for auth in local)
