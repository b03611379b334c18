"""What the TUI needs from the engine, as small structural protocols (one per service).

The real ``engine.Engine`` satisfies these as its services land; ``tests/fake_engine.py`` satisfies them
with deterministic data for snapshot tests. Widgets never see these objects: views call them in
workers and hand plain rows down to widgets.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from engine.events import Event
from engine.summaries import ContainerStats, ContainerSummary, ImageSummary, LayerSummary


class FileChangeLike(Protocol):
    path: str
    kind: str  # "added" | "modified" | "deleted"
    size: int


class LayerChangesLike(Protocol):
    digest: str
    changes: Sequence[FileChangeLike]


class ImagesAPI(Protocol):
    async def list(self) -> list[ImageSummary]: ...
    async def inspect(self, name: str) -> dict[str, Any]: ...
    async def layers(self, name: str) -> list[LayerSummary]: ...
    async def tag(self, source: str, target: str) -> None: ...
    async def remove(self, name: str, *, force: bool = False) -> list[str]: ...


class LayerFilesAPI(Protocol):
    """The dive-like part of the image service (optional until engine/archive lands it)."""

    async def layer_changes(self, name: str) -> Sequence[LayerChangesLike]: ...
    async def export_file(self, name: str, layer: str, path: str, dest: Path) -> int: ...


class TagDetailsLike(Protocol):
    reference: str
    digest: str
    size: int
    platforms: Sequence[str]
    created: str | None
    layers: Sequence[Any]
    local_layers: int
    pull_bytes: int


class RegistryAPI(Protocol):
    def pull(self, reference: str) -> AsyncIterator[Event]: ...
    def push(self, reference: str) -> AsyncIterator[Event]: ...
    def repositories(self, registry: str, filter: str = "") -> AsyncIterator[Sequence[str]]: ...
    def tags(self, repository: str) -> AsyncIterator[Sequence[str]]: ...
    async def tag_details(self, reference: str) -> TagDetailsLike: ...
    async def inspect(self, reference: str) -> dict[str, Any]: ...
    async def delete(self, reference: str) -> None: ...
    async def login(self, registry: str, username: str, password: str) -> None: ...
    async def known_registries(self) -> list[str]: ...


class ContainersAPI(Protocol):
    async def list(self, *, all: bool = True) -> list[ContainerSummary]: ...
    async def run(self, image: str, *, name: str | None = None, ports: Sequence[str] = (),
                  detach: bool = True) -> ContainerSummary: ...
    async def stop(self, container: str) -> None: ...
    async def kill(self, container: str) -> None: ...
    async def restart(self, container: str) -> None: ...
    async def remove(self, container: str, *, force: bool = False) -> None: ...
    async def stats(self, container: str) -> ContainerStats: ...
    def logs(self, container: str, *, follow: bool = False) -> AsyncIterator[Event]: ...
    def events(self) -> AsyncIterator[Event]: ...
    async def add_port(self, container: str, spec: str) -> ContainerSummary: ...


class BuildsAPI(Protocol):
    def build(self, context: Path, *, dockerfile: Path | None = None, tags: Sequence[str] = (),
              build_args: dict[str, str] | None = None) -> AsyncIterator[Event]: ...


class WatchAPI(Protocol):
    def watch(self, context: Path, *, tag: str, ports: Sequence[str] = ()) -> AsyncIterator[Event]: ...


class ConfigLike(Protocol):
    @property
    def root(self) -> Path: ...
    @property
    def runtime(self) -> str: ...
    @property
    def config_file(self) -> Path: ...
    @property
    def store_dir(self) -> Path: ...


class EngineLike(Protocol):
    """The facade. Services that have not landed yet may be missing (see :func:`service`)."""

    @property
    def config(self) -> ConfigLike: ...
    @property
    def images(self) -> ImagesAPI: ...


def service(engine: object, name: str) -> Any:
    """``engine.<name>`` or None when that service is not part of this engine (yet)."""
    try:
        return getattr(engine, name)
    except (AttributeError, ImportError):
        return None
