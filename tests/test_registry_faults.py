"""Pull and push through a fault-injecting proxy in front of the real registry: drops, 5xx, 429,
short and corrupt bodies. Transfers complete or fail with a clear error; no corrupt blob is stored."""

from __future__ import annotations

import io
import os
import secrets
import tarfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from engine.errors import RegistryError, RegistryUnavailableError
from engine.events import Event, LayerProgress, TransferFinished
from engine.oci.reference import Reference
from engine.registry.client import RegistryClient
from engine.registry.pull import pull_image
from engine.registry.push import push_image
from engine.store.importer import import_rootfs
from engine.store.layout import ImageStore, ResolvedImage
from tests.faultproxy import Fault, FaultProxy

if TYPE_CHECKING:
    from tests.registryfixtures import RunningRegistry

pytest_plugins = ["tests.registryfixtures"]
pytestmark = pytest.mark.registry

LAYER_BYTES = 3 * 1024 * 1024


def random_tar(path: Path) -> Path:
    with tarfile.open(path, "w") as tar:
        data = os.urandom(LAYER_BYTES)
        info = tarfile.TarInfo("data/random.bin")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def proxy(open_registry: RunningRegistry) -> Iterator[FaultProxy]:
    with FaultProxy("127.0.0.1", open_registry.port) as running:
        yield running


async def collect(stream: AsyncIterator[Event]) -> list[Event]:
    return [event async for event in stream]


def via(proxy: FaultProxy, ref: Reference) -> Reference:
    return Reference(proxy.host, ref.repository, ref.tag, ref.digest)


async def push_direct(ref: Reference, tmp_path: Path) -> tuple[ImageStore, ResolvedImage]:
    store = ImageStore(tmp_path / "source")
    image = import_rootfs(store, random_tar(tmp_path / "r.tar"), ref)
    async with RegistryClient(ref.registry) as client:
        await collect(push_image(client, store, image, ref))
    return store, image


def assert_clean(store: ImageStore) -> None:
    report = store.fsck()
    assert report.clean and not report.temp_files, report


async def test_pull_resumes_after_drops_and_short_bodies(
    open_registry: RunningRegistry, proxy: FaultProxy, tmp_path: Path,
) -> None:
    ref = Reference.parse(f"{open_registry.host}/faults-{secrets.token_hex(4)}/big:1")
    _, image = await push_direct(ref, tmp_path)
    layer = image.manifest.layers[0].digest
    proxy.add(Fault("status", method="GET", path="/manifests/", status=500))
    proxy.add(Fault("drop", method="GET", path=f"/blobs/{layer}", after=700_000))
    proxy.add(Fault("truncate", method="GET", path=f"/blobs/{layer}", after=500_000))
    proxy.add(Fault("status", method="GET", path=f"/blobs/{layer}", status=429, headers={"Retry-After": "0"}))
    proxy.add(Fault("status", method="GET", path=f"/blobs/{layer}", status=503))
    dest = ImageStore(tmp_path / "dest")
    async with RegistryClient(proxy.host, backoff=0.01) as client:
        events = await collect(pull_image(client, dest, via(proxy, ref)))
    assert isinstance(events[-1], TransferFinished)
    assert events[-1].manifest_digest == str(image.manifest_digest)
    assert "retrying" in {e.status for e in events if isinstance(e, LayerProgress)}
    assert dest.resolve(str(via(proxy, ref))).id == image.id
    assert_clean(dest)
    what = [entry[2] for entry in proxy.log if f"/blobs/{layer}" in entry[1]]
    assert any("drop" in w for w in what) and any("truncate" in w for w in what)
    assert any(w.startswith("status 206") for w in what)  # resumed with a Range request


async def test_corrupt_blob_is_never_stored(open_registry: RunningRegistry, proxy: FaultProxy, tmp_path: Path) -> None:
    ref = Reference.parse(f"{open_registry.host}/faults-{secrets.token_hex(4)}/big:1")
    _, image = await push_direct(ref, tmp_path)
    layer = image.manifest.layers[0].digest
    proxy.add(Fault("corrupt", method="GET", path=f"/blobs/{layer}", after=123_456, times=-1))
    dest = ImageStore(tmp_path / "dest")
    async with RegistryClient(proxy.host, backoff=0.01) as client:
        with pytest.raises(RegistryError, match="does not match its digest") as info:
            await collect(pull_image(client, dest, via(proxy, ref)))
    assert info.value.code == "DIGEST_INVALID"
    assert not dest.has_blob(layer)
    assert not dest.exists(str(via(proxy, ref)))
    assert_clean(dest)


async def test_corrupt_manifest_is_refused(open_registry: RunningRegistry, proxy: FaultProxy, tmp_path: Path) -> None:
    ref = Reference.parse(f"{open_registry.host}/faults-{secrets.token_hex(4)}/big:1")
    _, image = await push_direct(ref, tmp_path)
    proxy.add(Fault("corrupt", method="GET", path="/manifests/", after=40, times=-1))
    dest = ImageStore(tmp_path / "dest")
    pinned = via(proxy, ref).with_digest(image.manifest_digest)
    async with RegistryClient(proxy.host, backoff=0.01) as client:
        with pytest.raises(RegistryError):
            await collect(pull_image(client, dest, pinned))
    assert list(dest.all_blobs()) == []


async def test_persistent_failure_is_a_clear_error(
    open_registry: RunningRegistry, proxy: FaultProxy, tmp_path: Path,
) -> None:
    ref = Reference.parse(f"{open_registry.host}/faults-{secrets.token_hex(4)}/big:1")
    _, image = await push_direct(ref, tmp_path)
    layer = image.manifest.layers[0].digest
    proxy.add(Fault("drop", method="GET", path=f"/blobs/{layer}", after=0, times=-1))
    dest = ImageStore(tmp_path / "dest")
    async with RegistryClient(proxy.host, backoff=0.001, retries=2) as client:
        with pytest.raises(RegistryUnavailableError, match=f"{layer.short}.*{proxy.host}"):
            await collect(pull_image(client, dest, via(proxy, ref)))
    assert not dest.has_blob(layer)
    assert_clean(dest)


async def test_push_survives_dropped_uploads_and_server_errors(
    open_registry: RunningRegistry, proxy: FaultProxy, tmp_path: Path,
) -> None:
    ref = Reference.parse(f"{proxy.host}/faults-{secrets.token_hex(4)}/up:1")
    store = ImageStore(tmp_path / "source")
    image = import_rootfs(store, random_tar(tmp_path / "r.tar"), ref)
    proxy.add(Fault("drop_upload", method="PUT", path="/blobs/uploads/", after=1_000_000))
    proxy.add(Fault("status", method="POST", path="/blobs/uploads/", status=502))
    proxy.add(Fault("status", method="PUT", path="/manifests/", status=500))
    async with RegistryClient(proxy.host, backoff=0.01) as client:
        events = await collect(push_image(client, store, image, ref))
    assert isinstance(events[-1], TransferFinished)
    assert any("upload dropped" in entry[2] for entry in proxy.log)
    direct = Reference(open_registry.host, ref.repository, ref.tag)
    dest = ImageStore(tmp_path / "dest")
    async with RegistryClient(open_registry.host) as client:
        await collect(pull_image(client, dest, direct))
    assert dest.resolve(str(direct)).manifest_digest == image.manifest_digest
    assert_clean(dest)
