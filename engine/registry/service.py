"""RegistryService (``Engine.registry``): what the CLI and the TUI call for pull, push, login, browsing.

One RegistryClient (one httpx.AsyncClient, one token cache) per registry and event loop, reused across
calls; ``aclose()`` releases them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from engine.config import EngineConfig
from engine.errors import AuthenticationError, EngineError, ImageNotFoundError
from engine.events import Event
from engine.oci.platform import Platform
from engine.oci.reference import Reference
from engine.registry import browse, pull, push
from engine.registry.browse import TagDetails
from engine.registry.client import RegistryClient
from engine.registry.credentials import Credential, DockerConfig
from engine.registry.hosts import normalize_registry
from engine.store.layout import ImageStore


def _ref(value: str | Reference) -> Reference:
    return value if isinstance(value, Reference) else Reference.parse(value)


def _platform(value: str | Platform | None) -> Platform | None:
    if value is None or isinstance(value, Platform):
        return value
    return Platform.parse(value)


class RegistryService:
    def __init__(self, config: EngineConfig, *, store: ImageStore | None = None,
                 docker_config: DockerConfig | None = None) -> None:
        self.config = config
        self._store = store
        self.docker_config = docker_config or DockerConfig()
        self.insecure: set[str] = set()  # registries given with --insecure for this process
        self._clients: dict[str, tuple[asyncio.AbstractEventLoop, RegistryClient]] = {}

    @property
    def store(self) -> ImageStore:
        if self._store is None:
            self._store = ImageStore(self.config.store_dir)
        return self._store

    async def client(self, registry: str) -> RegistryClient:
        """The shared client for ``registry`` on the running loop (credentials from docker's config)."""
        name = normalize_registry(registry)
        loop = asyncio.get_running_loop()
        existing = self._clients.get(name)
        if existing is not None and existing[0] is loop:
            return existing[1]
        credential = await asyncio.to_thread(self.docker_config.get, name)
        made = RegistryClient(name, credential=credential, insecure=self.config.insecure_registries,
                              force_insecure=name in self.insecure)
        self._clients[name] = (loop, made)  # a client of a finished loop is dropped, not reused
        return made

    async def _forget(self, name: str) -> None:
        entry = self._clients.pop(name, None)
        if entry is not None and entry[0] is asyncio.get_running_loop():
            await entry[1].aclose()

    async def aclose(self) -> None:
        """Close the clients of the running loop (the CLI calls it once per command)."""
        for name in list(self._clients):
            await self._forget(name)

    # ---- transfers ----------------------------------------------------------------------------------

    async def pull(self, ref: str | Reference, platform: str | Platform | None = None, *,
                   concurrency: int = pull.DEFAULT_CONCURRENCY) -> AsyncIterator[Event]:
        reference = _ref(ref)
        client = await self.client(reference.registry)
        async for event in pull.pull_image(client, self.store, reference, platform=_platform(platform),
                                           concurrency=concurrency):
            yield event

    async def push(self, ref: str | Reference, *, source: str | None = None,
                   options: push.PushOptions | None = None) -> AsyncIterator[Event]:
        """Push the local image named ``source`` (default: ``ref`` itself) to ``ref``."""
        target = _ref(ref)
        try:
            image = await asyncio.to_thread(self.store.resolve, source or str(target))
        except ImageNotFoundError:
            raise ImageNotFoundError(f"no such image: {source or target.familiar} (tag a local image first: "
                                     f"`dockyard tag IMAGE {target.familiar}`)") from None
        client = await self.client(target.registry)
        async for event in push.push_image(client, self.store, image, target, options):
            yield event

    # ---- credentials --------------------------------------------------------------------------------

    async def login(self, registry: str, username: str, password: str) -> str:
        """Verify the credentials against the registry, then save them; returns where they went."""
        name = normalize_registry(registry)
        credential = Credential(username, password)
        checker = RegistryClient(name, credential=credential, insecure=self.config.insecure_registries,
                                 force_insecure=name in self.insecure)
        try:
            await checker.ping()
            scheme = checker.auth.scheme
            if scheme == "bearer":
                token = await checker.auth.fetch_token(checker.http, (), offline=True)
                if token.refresh_token:
                    credential = Credential(username, password, token.refresh_token)
            elif scheme == "basic":
                await checker.request("GET", checker.url("/v2/"), scopes=())
        except AuthenticationError:
            raise AuthenticationError(f"login to {name} failed: wrong username or password for {username!r}",
                                      code="UNAUTHORIZED", status=401) from None
        finally:
            await checker.aclose()
        if credential.identity_token:
            credential = Credential(username, "", credential.identity_token)
        where = await asyncio.to_thread(self.docker_config.store, name, credential)
        await self._forget(name)
        return where

    async def logout(self, registry: str) -> bool:
        name = normalize_registry(registry)
        await self._forget(name)
        return await asyncio.to_thread(self.docker_config.erase, name)

    async def known_registries(self) -> list[str]:
        """Registries from docker's config (logins, helpers) and dockyard's config (saved, insecure)."""
        out: list[str] = []
        try:
            candidates = await asyncio.to_thread(self.docker_config.registries)
        except EngineError:  # an unreadable docker config must not hide dockyard's own list
            candidates = []
        for name in [*candidates, *self.config.registries, *self.config.insecure_registries]:
            normal = normalize_registry(name)
            if normal and normal not in out:
                out.append(normal)
        return out

    # ---- browsing -----------------------------------------------------------------------------------

    async def repositories(self, registry: str, filter: str | None = None,
                           page_size: int = browse.DEFAULT_PAGE) -> AsyncIterator[list[str]]:
        client = await self.client(registry)
        async for page in browse.repositories(client, filter, page_size):
            yield page

    async def tags(self, repo: str, page_size: int = browse.DEFAULT_PAGE) -> AsyncIterator[list[str]]:
        ref = Reference.parse(repo, default_tag=False)
        client = await self.client(ref.registry)
        async for page in browse.tags(client, ref.repository, page_size):
            yield page

    async def tag_details(self, ref: str | Reference, platform: str | Platform | None = None) -> TagDetails:
        reference = _ref(ref)
        client = await self.client(reference.registry)
        return await browse.tag_details(client, reference, self.store.has_blob, _platform(platform))

    async def inspect(self, ref: str | Reference, platform: str | Platform | None = None) -> dict[str, Any]:
        reference = _ref(ref)
        client = await self.client(reference.registry)
        return await browse.inspect(client, reference, _platform(platform))

    async def sibling_tags(self, ref: str | Reference) -> list[str]:
        """Tags other than ``ref`` that share its manifest (what ``delete`` would take with it)."""
        reference = _ref(ref)
        client = await self.client(reference.registry)
        return await browse.sibling_tags(client, reference, await browse.manifest_digest(client, reference))

    async def delete(self, ref: str | Reference) -> list[str]:
        reference = _ref(ref)
        client = await self.client(reference.registry)
        return await browse.delete(client, reference)
