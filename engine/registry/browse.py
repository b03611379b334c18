"""Browse a registry: catalog and tags (lazy paging), inspect a remote image, delete by digest."""

from __future__ import annotations

import asyncio
import fnmatch
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from engine.errors import ImageNotFoundError, InvalidManifestError, InvalidPlatformError, RegistryError
from engine.oci.digest import Digest
from engine.oci.models import MAX_CONFIG_SIZE, ImageConfig, Index, Manifest, parse_document
from engine.oci.platform import Platform
from engine.oci.reference import Reference
from engine.registry.client import RegistryClient

DEFAULT_PAGE = 100


@dataclass(frozen=True, slots=True)
class LayerInfo:
    digest: str
    size: int
    media_type: str
    local: bool  # already in the local store


@dataclass(frozen=True, slots=True)
class TagDetails:
    """What the TUI shows for one remote tag (the host platform's image when it is an index)."""

    reference: str
    digest: str  # of what the tag points at (the index for a multi-platform image)
    media_type: str
    size: int  # compressed: config + layers of the selected image
    platforms: tuple[str, ...]
    created: str | None
    layers: tuple[LayerInfo, ...]
    pull_bytes: int  # what a pull would download now (layers and config not yet local)
    image_digest: str  # the selected platform manifest's digest
    local_layers: int  # how many of ``layers`` the store already has


def name_filter(pattern: str | None) -> Callable[[str], bool]:
    """A glob (``team/*``) when the pattern has wildcards, else a case-insensitive substring."""
    if not pattern:
        return lambda name: True
    if any(c in pattern for c in "*?["):
        return lambda name: fnmatch.fnmatchcase(name, pattern)
    needle = pattern.lower()
    return lambda name: needle in name.lower()


async def repositories(client: RegistryClient, pattern: str | None = None,
                       page_size: int = DEFAULT_PAGE) -> AsyncIterator[list[str]]:
    keep = name_filter(pattern)
    async for page in client.pages(client.url(f"/v2/_catalog?n={page_size}"), "repositories",
                                   scopes=("registry:catalog:*",)):
        chosen = [name for name in page if keep(name)]
        if chosen:
            yield chosen


async def tags(client: RegistryClient, repository: str, page_size: int = DEFAULT_PAGE) -> AsyncIterator[list[str]]:
    async for page in client.pages(client.url(f"/v2/{repository}/tags/list?n={page_size}"), "tags",
                                   scopes=(f"repository:{repository}:pull",), repository=repository):
        if page:
            yield page


async def fetch_image(
    client: RegistryClient, ref: Reference, platform: Platform | None = None,
) -> tuple[Digest, str, Index | None, Manifest, Digest, ImageConfig]:
    """(top digest, top media type, index or None, chosen manifest, its digest, config)."""
    fetched = await client.get_manifest(ref.repository, ref.identifier)
    document = parse_document(fetched.raw, fetched.media_type or None)
    index: Index | None = None
    manifest_digest = fetched.digest
    if isinstance(document, Index):
        index = document
        wanted = platform or Platform.host()
        chosen = index.select(wanted) or next(
            (d for d in index.manifests if d.platform is not None and d.platform.os != "unknown"), None)
        if chosen is None:
            raise ImageNotFoundError(f"{ref.familiar} has no image manifests")
        child = await client.get_manifest(ref.repository, str(chosen.digest))
        manifest = Manifest.parse(child.raw, chosen.media_type)
        manifest_digest = child.digest
    else:
        manifest = document
    config = ImageConfig.parse(await client.get_blob(ref.repository, manifest.config.digest, max_size=MAX_CONFIG_SIZE))
    return fetched.digest, document.media_type, index, manifest, manifest_digest, config


def _platforms(index: Index | None, config: ImageConfig) -> tuple[str, ...]:
    if index is None:
        try:
            return (str(config.platform),)
        except (InvalidPlatformError, InvalidManifestError):
            return ()
    return tuple(str(d.platform) for d in index.manifests if d.platform is not None and d.platform.os != "unknown")


async def inspect(client: RegistryClient, ref: Reference, platform: Platform | None = None) -> dict[str, Any]:
    top, media_type, index, manifest, manifest_digest, config = await fetch_image(client, ref, platform)
    run = config.config
    layers = [{"digest": str(layer.digest), "size": layer.size, "mediaType": layer.media_type}
              for layer in manifest.layers]
    return {
        "Name": ref.familiar_name,
        "Reference": str(ref),
        "Digest": str(top),
        "MediaType": media_type,
        "ManifestDigest": str(manifest_digest),
        "Platforms": list(_platforms(index, config)),
        "Created": config.created,
        "Architecture": config.data.get("architecture"),
        "Os": config.data.get("os"),
        "Size": manifest.config.size + sum(layer.size for layer in manifest.layers),
        "Layers": layers,
        "Labels": dict(config.labels),
        "ExposedPorts": sorted(config.exposed_ports),
        "Env": list(config.env),
        "Entrypoint": run.get("Entrypoint"),
        "Cmd": run.get("Cmd"),
        "WorkingDir": run.get("WorkingDir") or "",
        "User": run.get("User") or "",
        "Manifest": dict(manifest.data),
        "Index": dict(index.data) if index is not None else None,
        "Config": dict(config.data),
    }


async def tag_details(client: RegistryClient, ref: Reference, has_blob: Callable[[Digest], bool],
                      platform: Platform | None = None) -> TagDetails:
    top, media_type, index, manifest, manifest_digest, config = await fetch_image(client, ref, platform)
    layers = tuple(LayerInfo(str(layer.digest), layer.size, layer.media_type, has_blob(layer.digest))
                   for layer in manifest.layers)
    missing = sum(layer.size for layer in layers if not layer.local)
    if not has_blob(manifest.config.digest):
        missing += manifest.config.size
    return TagDetails(
        reference=str(ref), digest=str(top), media_type=media_type,
        size=manifest.config.size + sum(layer.size for layer in layers),
        platforms=_platforms(index, config), created=config.created, layers=layers, pull_bytes=missing,
        image_digest=str(manifest_digest), local_layers=sum(1 for layer in layers if layer.local),
    )


async def manifest_digest(client: RegistryClient, ref: Reference) -> Digest:
    """The digest a tag points at (HEAD, falling back to GET when the registry omits the header)."""
    if ref.digest is not None:
        return ref.digest
    head = await client.head_manifest(ref.repository, ref.tag or "latest")
    if head is None:
        raise RegistryError(f"manifest unknown: {ref.familiar} was not found on {client.registry}",
                            code="MANIFEST_UNKNOWN", status=404)
    return head[0]


async def sibling_tags(client: RegistryClient, ref: Reference, digest: Digest, *, concurrency: int = 8) -> list[str]:
    """Every tag of the repository, other than ``ref``'s own, that points at ``digest``."""
    siblings: list[str] = []
    semaphore = asyncio.Semaphore(concurrency)

    async def check(tag: str) -> None:
        async with semaphore:
            found = await client.head_manifest(ref.repository, tag)
        if found is not None and found[0] == digest and tag != ref.tag:
            siblings.append(tag)

    async for page in tags(client, ref.repository, page_size=1000):
        await asyncio.gather(*(check(tag) for tag in page))
    return sorted(siblings)


async def delete(client: RegistryClient, ref: Reference) -> list[str]:
    """Delete the manifest ``ref`` names (by digest); returns the other tags that pointed at it."""
    digest = await manifest_digest(client, ref)
    siblings = await sibling_tags(client, ref, digest)
    await client.delete_manifest(ref.repository, digest)
    return siblings
