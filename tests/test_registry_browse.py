"""Browse a real registry: lazy catalog and tag paging (Link headers), inspect, tag details, delete."""

from __future__ import annotations

import io
import secrets
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from engine.config import EngineConfig
from engine.errors import RegistryError
from engine.oci.reference import Reference
from engine.registry import browse
from engine.registry.client import RegistryClient
from engine.registry.credentials import DockerConfig
from engine.registry.push import push_image
from engine.registry.service import RegistryService
from engine.store.importer import import_rootfs
from engine.store.layout import ImageStore, ResolvedImage
from tests.faultproxy import FaultProxy

if TYPE_CHECKING:
    from tests.registryfixtures import RunningRegistry

pytest_plugins = ["tests.registryfixtures"]
pytestmark = pytest.mark.registry


def tiny_image(tmp_path: Path, ref: Reference, *changes: str) -> tuple[ImageStore, ResolvedImage]:
    tar_path = tmp_path / f"tiny-{secrets.token_hex(3)}.tar"
    with tarfile.open(tar_path, "w") as tar:
        data = secrets.token_bytes(64)
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    store = ImageStore(tmp_path / f"store-{secrets.token_hex(3)}")
    return store, import_rootfs(store, tar_path, ref, changes=list(changes))


async def push(store: ImageStore, image: ResolvedImage, ref: Reference) -> None:
    async with RegistryClient(ref.registry) as client:
        async for _ in push_image(client, store, image, ref):
            pass


async def pages_of(stream: AsyncIterator[list[str]]) -> list[list[str]]:
    return [page async for page in stream]


@pytest.fixture
def service(tmp_path: Path) -> RegistryService:
    return RegistryService(EngineConfig(root=tmp_path / "root"), docker_config=DockerConfig(tmp_path / "docker"))


async def test_catalog_pages_lazily_and_filters(
    fresh_registry: object, tmp_path: Path, service: RegistryService,
) -> None:
    registry: RunningRegistry = fresh_registry()  # type: ignore[operator]
    names = [f"team{i % 3}/app{i:02d}" for i in range(14)]
    store, image = tiny_image(tmp_path, Reference.parse(f"{registry.host}/seed/app:1"))
    for name in names:
        await push(store, image, Reference.parse(f"{registry.host}/{name}:1"))
    with FaultProxy("127.0.0.1", registry.port) as proxy:
        stream = service.repositories(proxy.host, page_size=4)
        first = await anext(stream)
        catalog_requests = [e for e in proxy.log if "/_catalog" in e[1]]
        assert len(first) == 4 and len(catalog_requests) == 1  # the first page shows before the rest is asked
        rest = await pages_of(stream)
        everything = first + [n for page in rest for n in page]
        assert everything == sorted(names)
        assert len([e for e in proxy.log if "/_catalog" in e[1]]) == 4  # followed Link: rel="next" pages
        assert [n for p in await pages_of(service.repositories(proxy.host, "team1/*", 4)) for n in p] == \
            sorted(n for n in names if n.startswith("team1/"))
        assert [n for p in await pages_of(service.repositories(proxy.host, "APP1", 4)) for n in p] == \
            sorted(n for n in names if "app1" in n)
    await service.aclose()


async def test_tags_inspect_details_and_delete(
    open_registry: RunningRegistry, tmp_path: Path, service: RegistryService,
) -> None:
    repo = f"{open_registry.host}/browse-{secrets.token_hex(4)}/web"
    first = Reference.parse(f"{repo}:v1")
    store, image = tiny_image(tmp_path, first, "EXPOSE 8080/tcp", "LABEL org.example.team=yard")
    tags = [f"v{i}" for i in range(1, 8)]
    for tag in tags:
        await push(store, image, first.with_tag(tag))
    other_store, other = tiny_image(tmp_path, first.with_tag("other"))
    await push(other_store, other, first.with_tag("other"))

    # distribution 2.8 ignores n= for tags (one page); the Link paging itself is exercised by the catalog.
    pages = await pages_of(service.tags(repo, page_size=3))
    assert sorted(t for p in pages for t in p) == sorted([*tags, "other"])

    info = await service.inspect(str(first))
    assert info["Digest"] == str(image.manifest_digest)
    assert info["ExposedPorts"] == ["8080/tcp"] and info["Labels"] == {"org.example.team": "yard"}
    assert [layer["size"] for layer in info["Layers"]] == [layer.size for layer in image.manifest.layers]
    assert info["Platforms"] and info["Created"] == image.config.created

    details = await service.tag_details(str(first))
    assert details.digest == str(image.manifest_digest) and details.local_layers == 0
    assert details.pull_bytes == image.size and details.size == image.size
    # Once the image is local, a pull costs nothing.
    for layer in image.manifest.layers:
        service.store.put_blob(store.read_blob(layer.digest))
    service.store.put_blob(store.read_blob(image.manifest.config.digest))
    local = await service.tag_details(str(first))
    assert local.pull_bytes == 0 and all(layer.local for layer in local.layers)

    assert await service.sibling_tags(str(first.with_tag("v3"))) == sorted(t for t in tags if t != "v3")
    siblings = await service.delete(str(first.with_tag("v3")))
    assert siblings == sorted(t for t in tags if t != "v3")
    remaining = [t for p in await pages_of(service.tags(repo)) for t in p]
    assert remaining == ["other"]
    with pytest.raises(RegistryError) as info_error:
        await service.inspect(str(first))
    assert info_error.value.code == "MANIFEST_UNKNOWN"
    assert browse.name_filter(None)("anything")
    await service.aclose()


async def test_known_registries_merge_docker_and_dockyard_config(tmp_path: Path) -> None:
    docker_config = DockerConfig(tmp_path / "docker")
    docker_config.save({"auths": {"https://index.docker.io/v1/": {}, "localhost:5000": {}},
                        "credHelpers": {"ghcr.io": "x"}})
    config = EngineConfig(root=tmp_path / "root", registries=("quay.io",), insecure_registries=("reg.lan:5000",))
    service = RegistryService(config, docker_config=docker_config)
    assert await service.known_registries() == ["docker.io", "localhost:5000", "ghcr.io", "quay.io", "reg.lan:5000"]

