"""The one facade the CLI and the TUI use. Sub-services are built lazily so a CLI call pays only
for the part it touches (start-up time matters: ``dockyard run`` is a fresh process)."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from engine.config import EngineConfig

if TYPE_CHECKING:
    from engine.build.service import BuildService
    from engine.registry.service import RegistryService
    from engine.runtime.service import ContainerService
    from engine.store.service import ImageService
    from engine.watch.loop import WatchLoop, WatchOptions


class Engine:
    """Entry point: ``Engine().images.list()``, ``Engine().registry.pull(...)``, ..."""

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig.from_env()

    @cached_property
    def containers(self) -> ContainerService:
        from engine.runtime.service import ContainerService

        return ContainerService(self.config)

    @cached_property
    def images(self) -> ImageService:
        from engine.store.service import ImageService

        return ImageService(self.config)

    @cached_property
    def builds(self) -> BuildService:
        from engine.build.service import BuildService

        pull = None
        registry = getattr(type(self), "registry", None)
        if registry is not None:
            pull = self.registry.pull
        return BuildService(self.config, self.images.store, pull)

    @cached_property
    def registry(self) -> RegistryService:
        from engine.registry.service import RegistryService

        return RegistryService(self.config, store=self.images.store)

    def watch(self, options: WatchOptions) -> WatchLoop:
        """A watch-and-rebuild loop; iterate ``loop.run()`` for its events, ``loop.stop()`` to end it."""
        from engine.watch.loop import WatchLoop

        return WatchLoop(self, options)
