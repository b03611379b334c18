"""Pull and push against the real CNCF registry: open, Basic auth and token auth."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from engine.config import EngineConfig
from engine.errors import AuthenticationError, ImageNotFoundError, RegistryError, RegistryUnavailableError
from engine.events import Event, ImageStored, LayerProgress, TransferFinished, TransferStarted
from engine.oci import mediatypes as mt
from engine.oci.models import Descriptor, Index
from engine.oci.platform import Platform
from engine.oci.reference import Reference
from engine.registry.client import RegistryClient
from engine.registry.credentials import Credential, DockerConfig
from engine.registry.pull import pull_image
from engine.registry.push import PushOptions, push_image
from engine.registry.service import RegistryService
from engine.store.importer import import_rootfs
from engine.store.layout import ImageStore, ResolvedImage
from tests.images import have_busybox, make_busybox_tar

if TYPE_CHECKING:
    from tests.registryfixtures import RunningRegistry

pytest_plugins = ["tests.registryfixtures"]

pytestmark = [pytest.mark.registry,
              pytest.mark.skipif(not have_busybox(), reason="busybox-static is not installed")]


@pytest.fixture(scope="module")
def busybox_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_busybox_tar(tmp_path_factory.mktemp("busybox") / "busybox.tar")


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


async def collect(stream: AsyncIterator[Event]) -> list[Event]:
    return [event async for event in stream]


def local_image(tmp_path: Path, tar: Path, ref: Reference, platform: Platform | None = None,
                changes: tuple[str, ...] = ()) -> tuple[ImageStore, ResolvedImage]:
    store = ImageStore(tmp_path / secrets.token_hex(3))
    return store, import_rootfs(store, tar, ref, platform=platform, changes=changes)


async def test_push_then_pull_roundtrip(open_registry: RunningRegistry, busybox_tar: Path, tmp_path: Path) -> None:
    ref = Reference.parse(f"{open_registry.host}/{unique()}/busybox:1.0")
    source, image = local_image(tmp_path, busybox_tar, ref, changes=("EXPOSE 8080", "LABEL team=yard"))
    async with RegistryClient(ref.registry) as client:
        pushed = await collect(push_image(client, source, image, ref))
    assert isinstance(pushed[0], TransferStarted) and isinstance(pushed[-1], TransferFinished)
    assert pushed[-1].manifest_digest == str(image.manifest_digest)
    assert {e.status for e in pushed if isinstance(e, LayerProgress)} >= {"waiting", "done"}

    dest = ImageStore(tmp_path / "dest")
    async with RegistryClient(ref.registry) as client:
        pulled = await collect(pull_image(client, dest, ref))
    finished = pulled[-1]
    assert isinstance(finished, TransferFinished) and finished.manifest_digest == str(image.manifest_digest)
    assert finished.bytes_moved >= image.size
    stored = next(e for e in pulled if isinstance(e, ImageStored))
    assert stored.image_id == str(image.id)
    got = dest.resolve(str(ref))
    assert got.id == image.id and got.manifest_digest == image.manifest_digest
    assert got.source_repositories == (ref.name,)  # RepoDigests come from it
    assert dest.resolve(f"{ref.name}@{image.manifest_digest}").id == image.id
    assert got.config.exposed_ports == ("8080/tcp",)
    assert dest.fsck().clean

    # A second pull moves nothing but the manifest: every layer is already there.
    async with RegistryClient(ref.registry) as client:
        again = await collect(pull_image(client, dest, ref))
    assert [e.status for e in again if isinstance(e, LayerProgress)] == ["exists"]
    assert again[-1].bytes_moved == 0  # type: ignore[attr-defined]

    # A second push finds every blob there already.
    async with RegistryClient(ref.registry) as client:
        repeat = await collect(push_image(client, source, image, ref))
    assert {e.status for e in repeat if isinstance(e, LayerProgress) and e.status != "waiting"} == {"exists"}


async def test_pull_by_digest_is_untagged_with_source(
    open_registry: RunningRegistry, busybox_tar: Path, tmp_path: Path,
) -> None:
    ref = Reference.parse(f"{open_registry.host}/{unique()}/app:v1")
    source, image = local_image(tmp_path, busybox_tar, ref)
    async with RegistryClient(ref.registry) as client:
        await collect(push_image(client, source, image, ref))
        dest = ImageStore(tmp_path / "dest")
        by_digest = Reference.parse(f"{ref.name}@{image.manifest_digest}")
        await collect(pull_image(client, dest, by_digest))
    got = dest.resolve(str(by_digest))
    assert got.names == () and got.source_repositories == (ref.name,)
    assert dest.resolve(str(image.id)).manifest_digest == image.manifest_digest


async def test_multi_platform_index_resolves_to_the_platform_asked(
    open_registry: RunningRegistry, busybox_tar: Path, tmp_path: Path,
) -> None:
    repo = f"{open_registry.host}/{unique()}/multi"
    store = ImageStore(tmp_path / "src")
    platforms = [Platform.parse("linux/amd64"), Platform.parse("linux/arm64"), Platform.parse("linux/arm/v7")]
    descriptors = []
    async with RegistryClient(open_registry.host) as client:
        for platform in platforms:
            ref = Reference.parse(f"{repo}:{platform.architecture}{platform.variant or ''}")
            image = import_rootfs(store, busybox_tar, ref, platform=platform)
            await collect(push_image(client, store, image, ref))
            descriptors.append(Descriptor(image.manifest.media_type, image.manifest_digest,
                                          len(image.manifest.raw), platform=platform))
        index = Index.build(descriptors)
        index_ref = Reference.parse(f"{repo}:all")
        await client.put_manifest(index_ref.repository, "all", index.raw, mt.OCI_INDEX)

        arm = ImageStore(tmp_path / "arm")
        events = await collect(pull_image(client, arm, index_ref, platform=Platform.parse("linux/arm64")))
        stored = next(e for e in events if isinstance(e, ImageStored))
        assert stored.manifest_digest == str(descriptors[1].digest)  # not the host's: the manifest itself
        assert Platform.from_json(dict(arm.resolve(str(index_ref)).config.data)).architecture == "arm64"

        host = ImageStore(tmp_path / "host")
        events = await collect(pull_image(client, host, index_ref))
        stored = next(e for e in events if isinstance(e, ImageStored))
        assert stored.manifest_digest == str(index.digest)  # the index itself: name@index-digest resolves
        assert host.resolve(f"{index_ref.name}@{index.digest}").config.platform.architecture == \
            Platform.host().architecture
        assert host.fsck().clean

        with pytest.raises(ImageNotFoundError, match="no image for linux/s390x"):
            await collect(pull_image(client, ImageStore(tmp_path / "none"), index_ref,
                                     platform=Platform.parse("linux/s390x")))


async def test_missing_things_give_spec_error_codes(open_registry: RunningRegistry, tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "s")
    async with RegistryClient(open_registry.host) as client:
        with pytest.raises(RegistryError) as info:
            await collect(pull_image(client, store, Reference.parse(f"{open_registry.host}/{unique()}/nope:1")))
    assert info.value.code in ("NAME_UNKNOWN", "MANIFEST_UNKNOWN")
    assert open_registry.host in str(info.value)


async def test_connection_refused_names_the_registry(tmp_path: Path) -> None:
    from tests.registryfixtures import free_port  # noqa: PLC0415

    host = f"127.0.0.1:{free_port()}"
    async with RegistryClient(host) as client:
        with pytest.raises(RegistryUnavailableError, match=f"cannot reach registry {host}: connection refused"):
            await collect(pull_image(client, ImageStore(tmp_path / "s"), Reference.parse(f"{host}/a:1")))


async def test_basic_auth(basic_registry: RunningRegistry, busybox_tar: Path, tmp_path: Path) -> None:
    ref = Reference.parse(f"{basic_registry.host}/{unique()}/secret:1")
    source, image = local_image(tmp_path, busybox_tar, ref)
    async with RegistryClient(ref.registry) as client:
        with pytest.raises(AuthenticationError, match=f"run `dockyard login {basic_registry.host}`"):
            await collect(push_image(client, source, image, ref))
    assert basic_registry.password
    wrong = Credential(basic_registry.username or "", "wrong")
    async with RegistryClient(ref.registry, credential=wrong) as client:
        with pytest.raises(AuthenticationError) as info:
            await collect(push_image(client, source, image, ref))
    assert "wrong" not in str(info.value)
    good = Credential(basic_registry.username or "", basic_registry.password)
    async with RegistryClient(ref.registry, credential=good) as client:
        await collect(push_image(client, source, image, ref))
        dest = ImageStore(tmp_path / "dest")
        await collect(pull_image(client, dest, ref))
    assert dest.resolve(str(ref)).id == image.id


async def test_token_auth_caches_tokens_and_mounts_across_repositories(
    token_registry: RunningRegistry, busybox_tar: Path, tmp_path: Path,
) -> None:
    assert token_registry.token_server is not None and token_registry.password
    server = token_registry.token_server
    credential = Credential(token_registry.username or "", token_registry.password)
    first = Reference.parse(f"{token_registry.host}/{unique()}/base:1")
    source, image = local_image(tmp_path, busybox_tar, first)
    before = len(server.requests)
    async with RegistryClient(first.registry, credential=credential) as client:
        await collect(push_image(client, source, image, first))
    push_requests = server.requests[before:]
    # One token for the whole push (HEADs, uploads, manifest share the scope set), not one per request.
    assert len(push_requests) == 1
    assert push_requests[0]["query"]["scope"] == [f"repository:{first.repository}:pull,push"]

    # Pull it, so the store knows the blobs came from `first`'s repository; then push to another repo.
    store = ImageStore(tmp_path / "work")
    async with RegistryClient(first.registry, credential=credential) as client:
        await collect(pull_image(client, store, first))
        second = Reference.parse(f"{token_registry.host}/{unique()}/derived:1")
        store.tag(str(first), second)
        mark = len(server.requests)
        events = await collect(push_image(client, store, store.resolve(str(second)), second))
    statuses = {e.digest: e.status for e in events if isinstance(e, LayerProgress) and e.status != "waiting"}
    assert set(statuses.values()) == {"mounted"}
    widened = server.requests[mark]["query"]["scope"]
    assert sorted(widened) == sorted([f"repository:{first.repository}:pull",
                                      f"repository:{second.repository}:pull,push"])


async def test_token_auth_anonymous_is_refused_with_login_hint(token_registry: RunningRegistry, tmp_path: Path) -> None:
    async with RegistryClient(token_registry.host) as client:
        with pytest.raises(AuthenticationError, match="dockyard login"):
            await collect(pull_image(client, ImageStore(tmp_path / "s"),
                                     Reference.parse(f"{token_registry.host}/x/y:1")))


async def test_login_saves_refresh_token_and_uses_it(
    token_registry: RunningRegistry, busybox_tar: Path, tmp_path: Path,
) -> None:
    assert token_registry.token_server is not None and token_registry.password
    docker_config = DockerConfig(tmp_path / "docker")
    service = RegistryService(EngineConfig(root=tmp_path / "root"), docker_config=docker_config)
    with pytest.raises(AuthenticationError, match="wrong username or password"):
        await service.login(token_registry.host, token_registry.username or "", "nope")
    assert not docker_config.path.exists()
    await service.login(token_registry.host, token_registry.username or "", token_registry.password)
    saved = docker_config.get(token_registry.host)
    assert saved is not None and saved.identity_token and saved.password == ""
    assert token_registry.password not in docker_config.path.read_text()

    ref = Reference.parse(f"{token_registry.host}/{unique()}/viarefresh:1")
    import_rootfs(service.store, busybox_tar, ref)
    mark = len(token_registry.token_server.requests)
    events = await collect(service.push(ref))
    assert isinstance(events[-1], TransferFinished)
    assert token_registry.token_server.requests[mark]["method"] == "POST"  # the OAuth2 refresh grant
    assert await service.logout(token_registry.host) is True
    assert docker_config.get(token_registry.host) is None
    await service.aclose()


async def test_chunked_upload(open_registry: RunningRegistry, busybox_tar: Path, tmp_path: Path) -> None:
    ref = Reference.parse(f"{open_registry.host}/{unique()}/chunked:1")
    source, image = local_image(tmp_path, busybox_tar, ref)
    async with RegistryClient(ref.registry) as client:
        await collect(push_image(client, source, image, ref, PushOptions(chunked=True, chunk_size=256 * 1024)))
        dest = ImageStore(tmp_path / "dest")
        await collect(pull_image(client, dest, ref))
    assert dest.resolve(str(ref)).manifest_digest == image.manifest_digest and dest.fsck().clean


async def test_engine_exposes_registry_service(tmp_path: Path) -> None:
    from engine.api import Engine

    engine = Engine(EngineConfig(root=tmp_path))
    assert isinstance(engine.registry, RegistryService)
    assert engine.registry.store.root == engine.images.store.root
