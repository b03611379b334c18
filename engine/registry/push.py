"""Push: blobs the registry lacks (HEAD first; cross-repository mount when the blob came from another
repository of the same registry), then the config, then the manifest last.

Uploads are monolithic (POST, then one PUT with the whole body) and fall back to chunked PATCH uploads
when a registry refuses a monolithic body (honouring ``OCI-Chunk-Min-Length``). A failed upload is
retried from a fresh session after a HEAD shows the blob did not land: retries are safe to repeat.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import IO, Any

import httpx

from engine.errors import EngineError, RegistryError, RegistryUnavailableError
from engine.events import Event, LayerProgress, TransferFinished, TransferStarted
from engine.oci import mediatypes as mt
from engine.oci.digest import Digest
from engine.oci.models import Descriptor
from engine.oci.reference import Reference
from engine.registry.auth import _transport_reason, merge_scopes
from engine.registry.client import BLOB_TIMEOUT, RegistryClient
from engine.registry.hosts import normalize_registry
from engine.registry.transfer import Emit, Progress, run_concurrently
from engine.store.layout import SOURCE_REPO, ImageStore, ResolvedImage

READ_SIZE = 4 * 1024 * 1024
DEFAULT_CHUNK = 16 * 1024 * 1024
MAX_ATTEMPTS = 5
DEFAULT_CONCURRENCY = 4
FALLBACK_STATUSES = frozenset({400, 411, 413, 415, 416, 501})


@dataclass(frozen=True, slots=True)
class PushOptions:
    concurrency: int = DEFAULT_CONCURRENCY
    chunked: bool = False  # force chunked PATCH uploads (tests, registries that need them)
    chunk_size: int = DEFAULT_CHUNK


def blob_sources(store: ImageStore, registry: str, exclude_repository: str) -> dict[Digest, str]:
    """Where each blob came from on ``registry`` (index entries' source-repository annotations)."""
    out: dict[Digest, str] = {}
    wanted = normalize_registry(registry)
    for entry in store.entries():
        source = entry.descriptor.annotations.get(SOURCE_REPO)
        if not source:
            continue
        source_registry, _, source_repo = source.partition("/")
        if normalize_registry(source_registry) != wanted or source_repo == exclude_repository:
            continue
        try:
            manifest = store.load_manifest(entry.descriptor)
        except EngineError:
            continue
        for digest in [manifest.config.digest, *(layer.digest for layer in manifest.layers)]:
            out.setdefault(digest, source_repo)
    return out


async def _file_chunks(store: ImageStore, digest: Digest, start: int, end: int,
                       progress: Progress | None) -> AsyncIterator[bytes]:
    """Bytes ``[start, end)`` of a stored blob, read in a worker thread one big slice at a time."""
    fh: IO[bytes] = await asyncio.to_thread(store.open_blob, digest)
    try:
        await asyncio.to_thread(fh.seek, start)
        position = start
        while position < end:
            chunk = await asyncio.to_thread(fh.read, min(READ_SIZE, end - position))
            if not chunk:
                raise RegistryError(f"blob {digest.short} is shorter in the store than its descriptor says")
            position += len(chunk)
            yield chunk
            if progress is not None:
                progress.update(position, "uploading")
    finally:
        fh.close()


class _Uploader:
    def __init__(self, client: RegistryClient, store: ImageStore, repository: str, scopes: tuple[str, ...],
                 options: PushOptions) -> None:
        self.client = client
        self.store = store
        self.repository = repository
        self.scopes = scopes
        self.options = options

    def _absolute(self, location: str) -> httpx.URL:
        return httpx.URL(self.client.endpoint.base + "/").join(location)

    async def start(self, digest: Digest, mount_from: str | None) -> tuple[bool, httpx.URL | None, int]:
        """POST an upload (or a mount): (mounted, upload location, minimum chunk length)."""
        url = self.client.url(f"/v2/{self.repository}/blobs/uploads/")
        params = {"mount": str(digest), "from": mount_from} if mount_from else None
        response, _ = await self.client.request(
            "POST", url, scopes=self.scopes, params=params, ok=(201, 202), repository=self.repository,
            target=self.repository, headers={"Content-Length": "0"},
        )
        if response.status_code == 201:
            return True, None, 0
        location = response.headers.get("location")
        if not location:
            raise RegistryError(f"{self.client.registry} started an upload without a Location")
        min_chunk = response.headers.get("oci-chunk-min-length") or "0"
        return False, self._absolute(location), int(min_chunk) if min_chunk.isdigit() else 0

    async def monolithic(self, location: httpx.URL, descriptor: Descriptor, progress: Progress) -> int:
        """PUT the whole blob; returns the status (201 on success, or one that asks for chunks)."""
        digest, size = descriptor.digest, descriptor.size
        response = await self.client.send(
            "PUT", str(location.copy_add_param("digest", str(digest))), scopes=self.scopes,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
            content=lambda: _file_chunks(self.store, digest, 0, size, progress), idempotent=False,
            timeout=BLOB_TIMEOUT,
        )
        if response.status_code in FALLBACK_STATUSES:
            await response.aclose()
            return response.status_code
        if response.status_code not in (201, 204):
            raise await self.client.error_for(response, repository=self.repository,
                                          target=f"{self.repository}@{digest}")
        await response.aclose()
        return 201

    async def chunked(self, location: httpx.URL, descriptor: Descriptor, progress: Progress, min_chunk: int) -> None:
        digest, size = descriptor.digest, descriptor.size
        chunk_size = max(self.options.chunk_size, min_chunk, 1)
        offset = 0
        while offset < size:
            end = min(offset + chunk_size, size)
            start_at = offset
            response, _ = await self.client.request(
                "PATCH", str(location), scopes=self.scopes, ok=(202, 204), repository=self.repository,
                target=f"{self.repository}@{digest}", idempotent=False, timeout=BLOB_TIMEOUT,
                headers={"Content-Type": "application/octet-stream", "Content-Length": str(end - start_at),
                         "Content-Range": f"{start_at}-{end - 1}"},
                content=lambda s=start_at, e=end: _file_chunks(self.store, digest, s, e, None),
            )
            if response.headers.get("location"):
                location = self._absolute(response.headers["location"])
            offset = end
            progress.update(offset, "uploading")
        await self.client.request(
            "PUT", str(location.copy_add_param("digest", str(digest))), scopes=self.scopes, ok=(201, 204),
            repository=self.repository, target=f"{self.repository}@{digest}",
            headers={"Content-Length": "0", "Content-Type": "application/octet-stream"},
        )

    async def upload(self, descriptor: Descriptor, mount_from: str | None, emit: Emit) -> int:
        """Make sure the registry has the blob; returns bytes sent."""
        digest = descriptor.digest
        progress = Progress(emit, "push", str(digest), descriptor.size)
        if await self.client.head_blob(self.repository, digest, scopes=self.scopes) is not None:
            progress.update(descriptor.size, "exists", force=True)
            return 0
        failures = 0
        while True:
            try:
                mounted, location, min_chunk = await self.start(digest, mount_from)
                if mounted:
                    progress.update(descriptor.size, "mounted", force=True)
                    return 0
                assert location is not None
                progress.update(0, "uploading", force=True)
                if self.options.chunked or min_chunk > descriptor.size:
                    await self.chunked(location, descriptor, progress, min_chunk)
                else:
                    status = await self.monolithic(location, descriptor, progress)
                    if status != 201:
                        _, location, min_chunk = await self.start(digest, None)
                        assert location is not None
                        await self.chunked(location, descriptor, progress, min_chunk)
                progress.update(descriptor.size, "done", force=True)
                return descriptor.size
            except (RegistryUnavailableError, httpx.TransportError) as exc:
                error: Exception = exc
            except RegistryError as exc:
                if exc.status is None or (exc.status < 500 and exc.status not in (408, 429)):
                    raise
                error = exc
            failures += 1
            mount_from = None
            # Did it land after all (the answer was lost)? Then there is nothing to resend.
            try:
                if await self.client.head_blob(self.repository, digest, scopes=self.scopes) is not None:
                    progress.update(descriptor.size, "done", force=True)
                    return descriptor.size
            except RegistryError:
                pass
            if failures >= MAX_ATTEMPTS:
                reason = _transport_reason(error) if isinstance(error, httpx.TransportError) else str(error)
                raise RegistryUnavailableError(
                    f"uploading {digest.short} to {self.client.registry} failed {failures} times: {reason}"
                ) from error
            progress.update(0, "retrying", force=True)
            await asyncio.sleep(min(self.client.backoff * (2 ** failures), 5.0))


async def push_image(
    client: RegistryClient, store: ImageStore, image: ResolvedImage, target: Reference,
    options: PushOptions | None = None,
) -> AsyncIterator[Event]:
    """Push a stored image to ``target``; yields TransferStarted, LayerProgress..., TransferFinished."""
    options = options or PushOptions()
    started = time.monotonic()
    repository = target.repository
    manifest = image.manifest
    sources = await asyncio.to_thread(blob_sources, store, target.registry, repository)
    blobs: list[Descriptor] = []
    seen: set[Digest] = set()
    for layer in manifest.layers:
        if layer.digest in seen or (layer.media_type in mt.FOREIGN_LAYER_TYPES and layer.urls):
            continue
        seen.add(layer.digest)
        blobs.append(layer)
    mount_repos = sorted({sources[b.digest] for b in [*blobs, manifest.config] if b.digest in sources})
    scopes = merge_scopes([f"repository:{repository}:pull,push", *(f"repository:{r}:pull" for r in mount_repos)])
    uploader = _Uploader(client, store, repository, scopes, options)
    yield TransferStarted("push", str(target), len(blobs))
    for blob in blobs:
        yield LayerProgress("push", str(blob.digest), 0, blob.size, "waiting")

    def job(blob: Descriptor) -> Any:
        return lambda emit: uploader.upload(blob, sources.get(blob.digest), emit)

    moved = 0
    async for item in run_concurrently([job(b) for b in blobs], options.concurrency):
        if isinstance(item, list):
            moved += sum(item)
        else:
            yield item
    # The config after the layers, the manifest last: a tag never points at an incomplete image.
    config_events: list[Event] = []
    moved += await uploader.upload(manifest.config, sources.get(manifest.config.digest), config_events.append)
    for event in config_events:
        yield event
    reference = target.tag or str(target.digest)
    digest = await client.put_manifest(repository, reference, manifest.raw, manifest.media_type)
    if target.digest is not None and target.digest != digest:
        raise RegistryError(f"the image's manifest is {digest}, not the digest {target.digest} asked for")
    moved += len(manifest.raw)
    yield TransferFinished("push", str(target), str(digest), moved, time.monotonic() - started)

