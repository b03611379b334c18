"""The build part of the facade (``Engine.builds``): ``build()`` streams events while it runs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from engine import events as ev
from engine.build.builder import Builder, BuildOptions
from engine.build.cache import BuildCache
from engine.config import EngineConfig
from engine.errors import ImageNotFoundError
from engine.oci.platform import Platform
from engine.store.layout import ImageStore, ResolvedImage

if TYPE_CHECKING:
    from engine.runtime.runc import OciRuntime


class BuildService:
    def __init__(self, config: EngineConfig, store: ImageStore, pull: Callable[[str, Platform], Any] | None = None):
        self.config = config
        self.store = store
        self._pull = pull
        self.cache = BuildCache(config.cache_dir / "build")

    def _builder(self) -> Builder:
        from engine.build.rootfs import BuildFilesystems
        from engine.runtime.snapshots import SnapshotStore

        fs = BuildFilesystems(self.store, SnapshotStore(self.config.snapshots_dir), self.config.tmp_dir)
        return Builder(self.store, fs, self.cache, self._runtime, self._resolve,
                       hash_cache=self.config.cache_dir / "context-hashes.json")

    def _runtime(self) -> OciRuntime:
        """The OCI runtime, looked up only when a RUN step has to run."""
        from engine.runtime.cgroups import detect_mode
        from engine.runtime.runc import find_runtime

        return find_runtime(self.config.runtime, self.config.root / "runtime", detect_mode())

    async def _resolve(self, name: str, platform: Platform) -> ResolvedImage:
        try:
            return await asyncio.to_thread(self.store.resolve, name)
        except ImageNotFoundError:
            if self._pull is None:
                raise
        async for _ in self._pull(name, platform):
            pass
        return await asyncio.to_thread(self.store.resolve, name)

    async def build(self, options: BuildOptions) -> AsyncIterator[ev.Event]:
        """Run a build, yielding its events as they happen; raises the build's EngineError at the end."""
        from engine.runtime.snapshot_gc import build_lease

        queue: asyncio.Queue[ev.Event] = asyncio.Queue()
        builder = self._builder()
        # gc leaves this build's snapshots and work dirs alone while the lease is held (snapshot_gc.py)
        lease = build_lease(self.config.snapshots_dir)
        if not lease.acquire(wait=False):  # a gc is sweeping: wait for it on a thread
            acquiring = asyncio.ensure_future(asyncio.to_thread(lease.acquire))
            try:
                await asyncio.shield(acquiring)
            except asyncio.CancelledError:
                acquiring.add_done_callback(lambda _: lease.release())
                raise
        task = asyncio.create_task(builder.build(options, queue.put_nowait))
        try:
            while True:
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    yield getter.result()
                    continue
                getter.cancel()
                while not queue.empty():
                    yield queue.get_nowait()
                task.result()  # re-raises the build's error
                return
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            lease.release()

    def cache_roots(self) -> set[Any]:
        return self.cache.layer_digests()

    async def prune(self) -> int:
        return await asyncio.to_thread(self.cache.prune)
