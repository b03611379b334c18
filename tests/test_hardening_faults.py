"""Network faults for pull and push.

1. A seeded random mix of faults through tests/faultproxy.py in front of the real registry (resets, cut
   and short bodies, flipped bytes, 5xx, 429 with Retry-After): every pull/push either completes with the
   right image or fails with a RegistryError; the store is fsck-clean either way.
2. A hostile in-process registry for what a proxy cannot fake: a stalled body (the read timeout fires),
   Retry-After honoured, a different blob than asked for, an endless body, a Content-Length longer than
   the body, a huge manifest, and a redirect to another host (credentials never follow it).
DOCKYARD_FAULTS_SEED replays the random mix."""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import io
import json
import os
import random
import secrets
import tarfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

import engine.registry.client as client_module
import engine.registry.pull as pull_module
from engine.errors import EngineError, RegistryError
from engine.events import Event, TransferFinished
from engine.oci.reference import Reference
from engine.registry.client import RegistryClient
from engine.registry.credentials import Credential
from engine.registry.pull import pull_image
from engine.registry.push import push_image
from engine.store.importer import import_rootfs
from engine.store.layout import ImageStore
from tests.faultproxy import Fault, FaultProxy

STATS: dict[str, int] = {}


async def collect(stream: AsyncIterator[Event]) -> list[Event]:
    return [event async for event in stream]


def assert_clean(store: ImageStore) -> None:
    report = store.fsck()
    assert report.clean and not report.temp_files, report


def random_rootfs(path: Path, size: int) -> Path:
    with tarfile.open(path, "w") as tar:
        data = os.urandom(size)
        info = tarfile.TarInfo("data/random.bin")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


# ---- 1. random faults through the proxy in front of the real registry ----------------------------------

FAULT_KINDS = ["drop", "truncate", "corrupt", "500", "502", "503", "429", "drop_upload", "reset_manifest"]


def random_faults(rng: random.Random, layer: str) -> list[Fault]:
    faults = []
    for _ in range(rng.randint(1, 4)):
        kind = rng.choice(FAULT_KINDS)
        after = rng.randint(0, 2_000_000)
        if kind in ("drop", "truncate", "corrupt"):
            faults.append(Fault(kind, method="GET", path=f"/blobs/{layer}", after=after))
        elif kind == "drop_upload":
            faults.append(Fault(kind, method="PUT", path="/blobs/uploads/", after=after))
        elif kind == "reset_manifest":
            faults.append(Fault("drop", method="GET", path="/manifests/", after=rng.randint(0, 200)))
        else:
            faults.append(Fault("status", path=rng.choice(["/blobs/", "/manifests/", "/v2/"]), status=int(kind),
                                headers={"Retry-After": "0"} if kind == "429" else {}))
    return faults


@pytest.mark.registry
async def test_random_faults_never_corrupt_the_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    if shutil.which("docker-registry") is None:
        pytest.skip("docker-registry is not installed")
    from tests.registryfixtures import start_registry

    seed = int(os.environ.get("DOCKYARD_FAULTS_SEED") or time.time_ns() % 2**32)
    with capsys.disabled():
        print(f"\nfault seed: {seed} (DOCKYARD_FAULTS_SEED={seed} replays it)")
    rng = random.Random(seed)
    source = ImageStore(tmp_path / "source")
    with start_registry(tmp_path / "registry") as reg, FaultProxy("127.0.0.1", reg.port) as proxy:
        injected = completed = refused = 0
        for round_ in range(10):
            ref = Reference.parse(f"{proxy.host}/faults-{secrets.token_hex(3)}/img:{round_}")
            image = import_rootfs(source, random_rootfs(tmp_path / f"r{round_}.tar", 3 << 20), ref)
            layer = str(image.manifest.layers[0].digest)
            proxy.clear()
            for fault in random_faults(rng, layer):
                proxy.add(fault)
            dest = ImageStore(tmp_path / f"dest{round_}")
            before = len(proxy.log)
            try:
                async with RegistryClient(proxy.host, backoff=0.01, retries=3) as client:
                    await collect(push_image(client, source, image, ref))
                    events = await collect(pull_image(client, dest, ref))
                assert isinstance(events[-1], TransferFinished)
                assert dest.resolve(str(ref)).id == image.id
                completed += 1
            except RegistryError:
                refused += 1
                assert not dest.exists(str(ref)) or dest.resolve(str(ref)).id == image.id
            assert_clean(dest)
            injected += sum(1 for _, _, what in proxy.log[before:]
                            if any(k in what for k in ("drop", "truncate", "corrupt", "Injected"))
                            or what.split()[:2] in (["status", "429"], ["status", "500"], ["status", "502"],
                                                    ["status", "503"]))
        STATS.update(proxy_faults=injected, completed=completed, refused=refused)
        with capsys.disabled():
            print(f"faults: {injected} injected over 10 push+pull rounds; {completed} completed, {refused} refused "
                  "with a RegistryError; every store fsck-clean")
        assert completed, "no round survived its faults: the retry logic is not working"


# ---- 2. a hostile registry -----------------------------------------------------------------------------


def _image() -> dict[str, Any]:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = os.urandom(1 << 20)
        info = tarfile.TarInfo("blob")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    layer = gzip.compress(buf.getvalue(), mtime=0)
    diff_id = "sha256:" + hashlib.sha256(buf.getvalue()).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()

    def desc(media_type: str, data: bytes) -> dict[str, Any]:
        return {"mediaType": media_type, "digest": "sha256:" + hashlib.sha256(data).hexdigest(), "size": len(data)}

    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": desc("application/vnd.oci.image.config.v1+json", config),
                           "layers": [desc("application/vnd.oci.image.layer.v1.tar+gzip", layer)]}).encode()
    blobs = {desc("", config)["digest"]: config, desc("", layer)["digest"]: layer}
    return {"manifest": manifest, "blobs": blobs, "layer": desc("", layer)["digest"]}


class Hostile:
    """A registry serving one image, misbehaving as ``mode`` says; ``seen`` records (path, headers)."""

    def __init__(self) -> None:
        self.image = _image()
        self.mode = "honest"
        self.seen: list[tuple[str, dict[str, str]]] = []
        self.other: Hostile | None = None
        hostile = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_HEAD(self) -> None:
                self.do_GET(head=True)

            def do_GET(self, head: bool = False) -> None:
                hostile.seen.append((self.path, dict(self.headers)))
                hostile.answer(self, head)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def send(self, h: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str] | None = None,
             *, head: bool = False, length: int | None = None) -> None:
        h.send_response(status)
        for key, value in (headers or {}).items():
            h.send_header(key, value)
        h.send_header("Content-Length", str(len(body) if length is None else length))
        h.end_headers()
        if not head:
            try:
                h.wfile.write(body)
                h.wfile.flush()
            except OSError:
                pass
        if length is not None:
            h.close_connection = True

    def answer(self, h: BaseHTTPRequestHandler, head: bool) -> None:
        path, mode, image = h.path, self.mode, self.image
        if path == "/v2/":
            if mode == "redirect" and "authorization" not in {k.lower() for k in h.headers}:
                self.send(h, 401, b"{}", {"WWW-Authenticate": 'Basic realm="hostile"'})
                return
            self.send(h, 200, b"{}")
            return
        if "/manifests/" in path:
            manifest = image["manifest"]
            if mode == "huge_manifest":
                manifest = b'{"schemaVersion":2,"padding":"' + b"x" * (9 << 20) + b'"}'
            self.send(h, 200, manifest, {"Content-Type": "application/vnd.oci.image.manifest.v1+json",
                                         "Docker-Content-Digest": "sha256:" + hashlib.sha256(manifest).hexdigest()},
                      head=head)
            return
        digest = path.rsplit("/", 1)[-1]
        blob = image["blobs"].get(digest)
        if blob is None:
            self.send(h, 404, b'{"errors":[{"code":"BLOB_UNKNOWN","message":"unknown"}]}')
            return
        is_layer = digest == image["layer"]
        if is_layer and mode == "redirect" and self.other is not None:
            self.send(h, 307, b"", {"Location": f"http://{self.other.host}/store{path}"})
            return
        if is_layer and mode == "stall":
            h.send_response(200)
            h.send_header("Content-Length", str(len(blob)))
            h.end_headers()
            h.wfile.write(blob[:1000])
            h.wfile.flush()
            time.sleep(8)
            h.close_connection = True
            return
        if is_layer and mode == "retry_after":
            self.mode = "honest"
            self.send(h, 429, b'{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}',
                      {"Retry-After": "1"})
            return
        if is_layer and mode == "swap":
            blob = image["blobs"][next(d for d in image["blobs"] if d != digest)]
        if is_layer and mode == "endless":
            h.send_response(200)
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            chunk = os.urandom(1 << 16)
            try:
                for _ in range(4096):  # 256 MiB, far past the descriptor's size
                    h.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            except OSError:
                pass
            h.close_connection = True
            return
        if is_layer and mode == "long_length":
            self.send(h, 200, blob, length=len(blob) + 4096, head=head)
            return
        self.send(h, 200, blob, head=head)


@pytest.fixture
def hostile() -> Iterator[Hostile]:
    server = Hostile()
    yield server
    server.close()


async def pull(server: Hostile, dest: ImageStore, *, credential: Credential | None = None,
               retries: int = 2) -> list[Event]:
    ref = Reference.parse(f"{server.host}/hostile/img:1")
    async with RegistryClient(server.host, backoff=0.01, retries=retries, credential=credential) as client:
        return await collect(pull_image(client, dest, ref))


async def test_stalled_body_times_out(hostile: Hostile, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The real budgets (60 s, 600 s for blob reads between two bytes) made short for the test.
    monkeypatch.setattr(client_module, "DEFAULT_TIMEOUT", httpx.Timeout(2.0))
    monkeypatch.setattr(pull_module, "BLOB_TIMEOUT", httpx.Timeout(2.0))
    hostile.mode = "stall"
    dest = ImageStore(tmp_path / "dest")
    started = time.monotonic()
    with pytest.raises(RegistryError, match=r"(?i)time"):
        await asyncio.wait_for(pull(hostile, dest, retries=1), 60)
    assert time.monotonic() - started < 30
    assert_clean(dest)
    assert not dest.images()


async def test_retry_after_is_honoured(hostile: Hostile, tmp_path: Path) -> None:
    hostile.mode = "retry_after"
    dest = ImageStore(tmp_path / "dest")
    started = time.monotonic()
    events = await pull(hostile, dest)
    assert isinstance(events[-1], TransferFinished)
    assert time.monotonic() - started >= 1.0, "Retry-After: 1 was not waited for"
    assert_clean(dest)


@pytest.mark.parametrize("mode", ["swap", "endless", "long_length"])
async def test_lying_blob_bodies_are_refused(mode: str, hostile: Hostile, tmp_path: Path) -> None:
    from engine.oci.digest import Digest

    hostile.mode = mode
    dest = ImageStore(tmp_path / "dest")
    with pytest.raises(EngineError):
        await asyncio.wait_for(pull(hostile, dest, retries=1), 60)
    assert not dest.has_blob(Digest.parse(hostile.image["layer"]))
    assert not dest.images()
    assert_clean(dest)


async def test_huge_manifest_is_refused(hostile: Hostile, tmp_path: Path) -> None:
    hostile.mode = "huge_manifest"
    dest = ImageStore(tmp_path / "dest")
    with pytest.raises(EngineError, match=r"(?i)large|bytes"):
        await pull(hostile, dest)
    assert list(dest.all_blobs()) == []


async def test_credentials_do_not_follow_a_redirect_to_another_host(hostile: Hostile, tmp_path: Path) -> None:
    other = Hostile()
    other.image = hostile.image
    try:
        hostile.mode, hostile.other = "redirect", other
        dest = ImageStore(tmp_path / "dest")
        events = await pull(hostile, dest, credential=Credential("user", "secret-password"))
        assert isinstance(events[-1], TransferFinished)
        secret = base64.b64encode(b"user:secret-password").decode()
        assert any(secret in h.get("Authorization", "") for _, h in hostile.seen), "the registry got no credentials"
        assert other.seen, "the redirect was not followed"
        assert not any("Authorization" in h or "authorization" in h for _, h in other.seen), \
            "credentials were sent to another host"
        assert_clean(dest)
    finally:
        other.close()
