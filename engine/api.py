"""The one facade the CLI and the TUI use. Sub-services are built lazily so a CLI call pays only
for the part it touches (start-up time matters: ``dockyard run`` is a fresh process)."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from engine.config import EngineConfig

if TYPE_CHECKING:
    from engine.build.service import BuildService
    from engine.registry.service import RegistryService
    from engine.runtime.service import ContainerService
    from engine.store.service import ImageService
    from engine.watch.service import WatchService


class Engine:
    """Entry point: ``Engine().images.list()``, ``Engine().registry.pull(...)``, ..."""

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig.from_env()
        self.config.ensure_root()

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
            def pull(name: str, platform: Any) -> Any:  # the registry client loads only when a base is missing
                return self.registry.pull(name, platform)
        return BuildService(self.config, self.images.store, pull)

    @cached_property
    def registry(self) -> RegistryService:
        from engine.registry.service import RegistryService

        return RegistryService(self.config, store=self.images.store)

    @cached_property
    def watch(self) -> WatchService:
        """Watch loops: ``engine.watch(options)`` -> WatchLoop (iterate ``loop.run()``, ``loop.stop()``)."""
        from engine.watch.service import WatchService

        return WatchService(self)
