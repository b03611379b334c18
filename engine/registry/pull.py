"""Pull: resolve a reference to one platform's image, fetch what the store lacks, verify everything.

Every manifest and blob is checked against its digest while it streams (``ImageStore.blob_writer``
publishes nothing unverified). Layers are fetched concurrently; a connection lost mid-blob resumes
with a ``Range`` request from the bytes already written; a registry that ignores the Range is read
from the start and the part already held is skipped.

A layer's body is drained by a worker thread that reads the socket, hashes and writes in one go (see
engine.registry.direct); the event loop only sees a progress step every few MB. With an injected
httpx client the body comes through httpx instead and is written from a worker thread in batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx

from engine.errors import (
    DigestMismatchError,
    ImageNotFoundError,
    InvalidManifestError,
    InvalidPlatformError,
    RegistryError,
    RegistryUnavailableError,
    SizeMismatchError,
)
from engine.events import Event, ImageStored, LayerProgress, Message, RateLimit, TransferFinished, TransferStarted
from engine.oci import mediatypes as mt
from engine.oci.digest import Digest
from engine.oci.models import MAX_CONFIG_SIZE, Descriptor, ImageConfig, Index, Manifest, parse_document
from engine.oci.platform import Platform
from engine.oci.reference import Reference
from engine.registry.auth import _transport_reason
from engine.registry.client import BLOB_TIMEOUT, RegistryClient
from engine.registry.direct import DIRECT_BODY, DirectBody
from engine.registry.transfer import PROGRESS_INTERVAL, Emit, Progress, run_concurrently
from engine.store.blobs import BlobWriter
from engine.store.layout import ImageStore

BATCH = 4 * 1024 * 1024  # bytes a worker thread moves between two progress steps
MAX_ATTEMPTS = 6  # failed attempts in a row (without progress) before a blob download gives up
DEFAULT_CONCURRENCY = 5


async def resolve_manifest(
    client: RegistryClient, ref: Reference, platform: Platform | None,
) -> tuple[Index | None, Manifest, Descriptor]:
    """(index if any, the chosen image manifest, the descriptor to record in the store)."""
    repository = ref.repository
    fetched = await client.get_manifest(repository, ref.identifier)
    document = parse_document(fetched.raw, fetched.media_type or None)
    if isinstance(document, Manifest):
        return None, document, Descriptor(document.media_type, fetched.digest, len(fetched.raw))
    index = document
    wanted = platform or Platform.host()
    chosen = index.select(wanted)
    if chosen is None:
        have = ", ".join(str(d.platform) for d in index.manifests if d.platform) or "none"
        raise ImageNotFoundError(f"{ref.familiar} has no image for {wanted} (it has: {have})")
    child = await client.get_manifest(repository, str(chosen.digest))
    if child.digest != chosen.digest:
        raise RegistryError(f"{client.registry} served {child.digest} for {chosen.digest}", code="DIGEST_INVALID")
    manifest = Manifest.parse(child.raw, chosen.media_type)
    host_choice = index.select(Platform.host())
    if host_choice is not None and host_choice.digest == chosen.digest:
        # The image docker would pick here: record the index, so name@index-digest resolves (RepoDigests).
        record = Descriptor(index.media_type, fetched.digest, len(fetched.raw))
    else:
        record = Descriptor(manifest.media_type, chosen.digest, chosen.size, platform=chosen.platform)
    return index, manifest, record


def _write_all(writer: BlobWriter, chunks: list[bytes]) -> None:
    for chunk in chunks:
        writer.write(chunk)


async def _write(writer: BlobWriter, chunks: list[bytes]) -> None:
    await asyncio.to_thread(_write_all, writer, chunks)


async def download_blob(
    client: RegistryClient, store: ImageStore, repository: str, descriptor: Descriptor, emit: Emit,
) -> int:
    """Fetch one blob into the store (verified); returns the bytes moved over the network."""
    digest = descriptor.digest
    progress = Progress(emit, "pull", str(digest), descriptor.size)
    url = client.blob_url(repository, digest)
    scopes = (f"repository:{repository}:pull",)
    moved = 0
    restarts = 0
    while True:
        writer = store.blob_writer(digest, descriptor.size)
        try:
            failures = 0
            while True:
                offset = writer.bytes_written
                before = offset
                try:
                    await _stream_into(client, writer, url, scopes, repository, digest, offset, progress)
                except (httpx.TransportError, RegistryUnavailableError) as exc:
                    moved += writer.bytes_written - before
                    failures = 0 if writer.bytes_written > before else failures + 1
                    if failures >= MAX_ATTEMPTS:
                        raise RegistryUnavailableError(
                            f"downloading {digest.short} from {client.registry} failed repeatedly: "
                            f"{_transport_reason(exc)}") from exc
                    progress.update(writer.bytes_written, "retrying", force=True)
                    await asyncio.sleep(min(client.backoff * (2 ** failures), 5.0))
                    continue
                moved += writer.bytes_written - before
                if writer.bytes_written < descriptor.size:
                    failures += 1  # a body that ended early without an error: resume
                    if failures >= MAX_ATTEMPTS:
                        raise RegistryError(f"{client.registry} keeps sending a short body for blob {digest.short}")
                    continue
                break
            progress.update(writer.bytes_written, "verifying", force=True)
            await asyncio.to_thread(writer.commit)
            progress.update(descriptor.size, "done", force=True)
            return moved
        except (DigestMismatchError, SizeMismatchError) as exc:
            restarts += 1
            if restarts > 1:
                raise RegistryError(f"blob {digest} from {client.registry} does not match its digest: {exc}",
                                    code="DIGEST_INVALID") from exc
            progress.update(0, "retrying", force=True)
        finally:
            writer.abort()  # a no-op once committed; otherwise drops the partial file


async def _stream_into(
    client: RegistryClient, writer: BlobWriter, url: str, scopes: tuple[str, ...], repository: str,
    digest: Digest, offset: int, progress: Progress,
) -> None:
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    async with client.stream("GET", url, scopes=scopes, ok=(200, 206), headers=headers, timeout=BLOB_TIMEOUT,
                             repository=repository, target=f"{repository}@{digest}", direct=True) as response:
        skip = offset if (offset and response.status_code == 200) else 0  # Range ignored: drop what we hold
        body = response.extensions.get(DIRECT_BODY)
        if isinstance(body, DirectBody):
            await _drain(body, writer, skip, progress)
        else:
            await _copy(response, writer, skip, progress)
        progress.update(writer.bytes_written, "downloading")


async def _drain(body: DirectBody, writer: BlobWriter, skip: int, progress: Progress) -> None:
    """Socket -> sha256 -> file, all in the worker thread, one reused buffer, no copies."""

    def sink(view: memoryview) -> None:
        nonlocal skip
        if skip:
            if len(view) <= skip:
                skip -= len(view)
                return
            view, skip = view[skip:], 0
        writer.write(view)

    while await body.drain(sink, BATCH, seconds=PROGRESS_INTERVAL):
        progress.update(writer.bytes_written, "downloading")


async def _copy(response: httpx.Response, writer: BlobWriter, skip: int, progress: Progress) -> None:
    """The body as httpx hands it over, written by a worker thread while the next batch arrives."""
    pending: asyncio.Future[None] | None = None
    batch: list[bytes] = []
    size = 0
    try:
        async for chunk in response.aiter_raw():
            if skip:
                if len(chunk) <= skip:
                    skip -= len(chunk)
                    continue
                chunk = chunk[skip:]
                skip = 0
            batch.append(chunk)
            size += len(chunk)
            if size >= BATCH:
                if pending is not None:
                    await pending
                pending = asyncio.ensure_future(_write(writer, batch))
                batch, size = [], 0
                progress.update(writer.bytes_written, "downloading")
    finally:
        if pending is not None:
            await pending
        if batch:
            await _write(writer, batch)


async def pull_image(
    client: RegistryClient, store: ImageStore, ref: Reference, *, platform: Platform | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> AsyncIterator[Event]:
    """Pull ``ref`` into ``store``; yields TransferStarted, LayerProgress..., ImageStored, TransferFinished."""
    started = time.monotonic()
    repository = ref.repository
    with store.writing():
        _index, manifest, record = await resolve_manifest(client, ref, platform)
        if client.rate_limit is not None:
            yield RateLimit(client.rate_limit.limit, client.rate_limit.remaining)
        yield TransferStarted("pull", str(ref), len(manifest.layers))
        moved = 0
        config_desc = manifest.config
        if store.has_blob(config_desc.digest):
            config_raw = await asyncio.to_thread(store.read_blob, config_desc.digest, MAX_CONFIG_SIZE)
        else:
            config_raw = await client.get_blob(repository, config_desc.digest, max_size=MAX_CONFIG_SIZE)
            await asyncio.to_thread(store.put_blob, config_raw, config_desc.digest)
            moved += len(config_raw)
        config = ImageConfig.parse(config_raw)
        if platform is not None and manifest.media_type in mt.MANIFEST_TYPES and _index is None:
            with contextlib.suppress(InvalidManifestError, InvalidPlatformError):
                if not platform.matches(config.platform):
                    yield Message(f"{ref.familiar} is built for {config.platform}, not {platform}", "warning")
        missing: list[Descriptor] = []
        seen: set[Digest] = set()
        for layer in manifest.layers:
            if layer.digest in seen:
                continue
            seen.add(layer.digest)
            if layer.media_type in mt.FOREIGN_LAYER_TYPES and layer.urls:
                yield Message(f"skipping foreign layer {layer.digest.short}", "warning")
                continue
            if store.has_blob(layer.digest):
                yield LayerProgress("pull", str(layer.digest), layer.size, layer.size, "exists")
            else:
                yield LayerProgress("pull", str(layer.digest), 0, layer.size, "waiting")
                missing.append(layer)

        def job(layer: Descriptor) -> Any:
            return lambda emit: download_blob(client, store, repository, layer, emit)

        async for item in run_concurrently([job(layer) for layer in missing], concurrency):
            if isinstance(item, list):
                moved += sum(item)
            else:
                yield item
        # Manifests last: an image is recorded only once everything it references is in the store.
        raw_child = manifest.raw
        await asyncio.to_thread(store.put_blob, raw_child, Digest.from_bytes(raw_child))
        if _index is not None and record.media_type in mt.INDEX_TYPES:
            await asyncio.to_thread(store.put_blob, _index.raw, record.digest)
        names = [ref.without_digest()] if ref.tag else []
        if ref.tag and ref.digest is not None:
            names = [Reference(ref.registry, ref.repository, ref.tag)]
        await asyncio.to_thread(lambda: store.add_image(record, names, image_id=config.digest,
                                                         source_repository=ref.name))
        yield ImageStored(str(names[0]) if names else None, str(config.digest), str(record.digest))
        yield TransferFinished("pull", str(ref), str(record.digest), moved, time.monotonic() - started)
