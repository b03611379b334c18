"""The watch loop: change -> rebuild (cached) -> start beside the old container -> ready -> swap ports.

The host ports of a watched app are bound once, by this loop's own forwarder, and point at whichever
container is current: a swap retargets the forwarder (listeners stay open), then stops the old
container, so the mapped port keeps answering throughout. Containers run on the bridge network
without host ports of their own. A failed build, or a new container that never gets ready, leaves
the last good one serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from engine import events as ev
from engine.build.builder import BuildOptions
from engine.errors import EngineError, InvalidInputError, WatchError
from engine.runtime.options import RunOptions
from engine.watch.rules import WatchPlan, WatchRule, is_noise, load_plan

QUIET_MS = 250  # a burst ends after this long without a change
CAP_MS = 1500  # ... or after this long in any case
READY_TIMEOUT = 30.0


@dataclass(frozen=True)
class WatchOptions:
    build: BuildOptions
    run: RunOptions  # publish = the host mappings the loop owns; the containers get none
    name: str
    keep: bool = False
    config_file: Path | None = None
    ready_timeout: float = READY_TIMEOUT
    quiet_ms: int = QUIET_MS
    cap_ms: int = CAP_MS


@dataclass
class _Current:
    image_id: str | None = None
    container: str | None = None
    ip: str | None = None
    generation: int = 0
    history: list[tuple[str, float, str]] = field(default_factory=list)  # (outcome, seconds, image)


class WatchLoop:
    def __init__(self, engine: Any, options: WatchOptions) -> None:
        if options.build.context is None:
            raise InvalidInputError("watch needs a build context directory")
        self.engine = engine
        self.options = options
        self.context = options.build.context.resolve()
        self.plan: WatchPlan = load_plan(self.context, options.config_file)
        self.current = _Current()
        self.forwarder: Any = None
        self._stop = asyncio.Event()
        self._retiring: set[asyncio.Task[None]] = set()

    def stop(self) -> None:
        self._stop.set()

    # ---- the loop ---------------------------------------------------------------------------------

    async def run(self) -> AsyncIterator[ev.Event]:
        from engine.build.context import BuildContext, read_ignore_patterns

        ignore = BuildContext(self.context, read_ignore_patterns(self.context, self.options.build.dockerfile))
        self._bind_ports()
        try:
            yield ev.WatchStatus("watching", str(self.context))
            async for event in self._rebuild(("(initial build)",)):
                yield event
            async for batch in self._changes(ignore):
                yield ev.WatchStatus("changed", f"{len(batch)} file(s)", files=tuple(batch))
                rebuild, syncs = self.plan.classify(batch)
                if rebuild or self.current.container is None:
                    async for event in self._rebuild(tuple(batch)):
                        yield event
                else:
                    async for event in self._sync(syncs):
                        yield event
        finally:
            await self._shutdown()

    async def _changes(self, ignore: Any) -> AsyncIterator[list[str]]:
        import watchfiles

        dockerfile = (self.options.build.dockerfile or self.context / "Dockerfile").resolve()

        def wanted(_change: watchfiles.Change, path: str) -> bool:
            absolute = Path(path)
            if absolute == dockerfile:
                return True
            try:
                rel = absolute.relative_to(self.context).as_posix()
            except ValueError:
                return False
            return not is_noise(rel) and not ignore.is_ignored(rel)

        async for changes in watchfiles.awatch(
            self.context, watch_filter=wanted, debounce=self.options.cap_ms, step=self.options.quiet_ms,
            stop_event=self._stop, rust_timeout=1000, yield_on_timeout=False,
        ):
            batch = sorted({Path(p).resolve().relative_to(self.context).as_posix()
                            if Path(p).resolve().is_relative_to(self.context) else Path(p).name
                            for _, p in changes})
            if batch:
                yield batch

    # ---- ports ------------------------------------------------------------------------------------

    def _bind_ports(self) -> None:
        from engine.net.forward import Forwarder, bind_all
        from engine.net.ports import parse_publish

        mappings = [m for spec in self.options.run.publish for m in parse_publish(spec)]
        if not mappings:
            return
        bound = bind_all(mappings)
        self.forwarder = Forwarder(bound, "127.0.0.1")

    @property
    def mappings(self) -> list[Any]:
        return list(self.forwarder.mappings) if self.forwarder is not None else []

    # ---- rebuild and swap ---------------------------------------------------------------------------

    async def _rebuild(self, files: Sequence[str]) -> AsyncIterator[ev.Event]:
        started = time.monotonic()
        yield ev.WatchStatus("building", ", ".join(files[:5]))
        image_id: str | None = None
        try:
            async for event in self.engine.builds.build(self.options.build):
                yield event
                if isinstance(event, ev.BuildFinished):
                    image_id = event.image_id
        except EngineError as exc:
            self.current.history.append(("build failed", time.monotonic() - started, ""))
            yield ev.WatchStatus("failed", f"build failed: {exc}", seconds=time.monotonic() - started,
                                 image_id=self.current.image_id, container_id=self.current.container)
            return
        assert image_id is not None
        if image_id == self.current.image_id and self.current.container is not None:
            self.current.history.append(("unchanged", time.monotonic() - started, image_id))
            yield ev.WatchStatus("ready", "image unchanged", image_id=image_id, container_id=self.current.container,
                                 seconds=time.monotonic() - started)
            return
        async for event in self._swap(image_id, started):
            yield event

    async def _swap(self, image_id: str, started: float) -> AsyncIterator[ev.Event]:
        self.current.generation += 1
        name = f"{self.options.name}-{self.current.generation}"
        run_options = replace(self.options.run, name=name, detach=True, publish=(), publish_all=False,
                              network="bridge", remove=False)
        yield ev.WatchStatus("starting", name, image_id=image_id)
        try:
            async for event in self.engine.containers.run(image_id, run_options, attach=False):
                yield event
            summary = await self.engine.containers.get(name)
            ip = summary.ip_address
            if not ip:
                raise WatchError(f"container {name} has no address on the bridge network")
            await self._wait_ready(name, ip, image_id)
        except EngineError as exc:
            with contextlib.suppress(EngineError):
                await self.engine.containers.remove(name, force=True)
            self.current.history.append(("not ready", time.monotonic() - started, image_id))
            yield ev.WatchStatus("failed", f"new container not ready: {exc}", image_id=self.current.image_id,
                                 container_id=self.current.container, seconds=time.monotonic() - started)
            return
        old = self.current.container
        if self.forwarder is not None:
            if old is None:
                self.forwarder.set_target(ip)
                self.forwarder.start()
            else:
                self.forwarder.set_target(ip)
        self.current.container, self.current.ip, self.current.image_id = name, ip, image_id
        yield ev.WatchStatus("ready", name, image_id=image_id, container_id=name)
        seconds = time.monotonic() - started
        self.current.history.append(("swapped", seconds, image_id))
        yield ev.WatchStatus("swapped", f"{old or '-'} -> {name}", image_id=image_id, container_id=name,
                             seconds=seconds)
        if old is not None:
            # The old container drains its open connections while the new one already serves.
            task = asyncio.create_task(self._retire(old))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    async def _retire(self, name: str) -> None:
        with contextlib.suppress(EngineError):
            await self.engine.containers.stop(name, timeout=2)
        with contextlib.suppress(EngineError):
            await self.engine.containers.remove(name, force=True)

    async def _wait_ready(self, name: str, ip: str, image_id: str) -> None:
        deadline = time.monotonic() + self.options.ready_timeout
        image = await self.engine.images.get(image_id)
        has_health = bool((image.config.healthcheck or {}).get("Test")) and \
            (image.config.healthcheck or {}).get("Test") != ["NONE"]
        ports = [m.container_port for m in self.mappings if m.protocol == "tcp"]
        while time.monotonic() < deadline:
            summary = await self.engine.containers.get(name)
            if summary.state != "running":
                raise WatchError(f"{name} exited with code {summary.exit_code}")
            if has_health:
                if summary.health == "healthy":
                    return
                if summary.health == "unhealthy":
                    raise WatchError(f"{name} is unhealthy")
            elif not ports or await asyncio.to_thread(_connects, ip, ports[0]):
                return
            await asyncio.sleep(0.05)
        raise WatchError(f"{name} did not get ready within {self.options.ready_timeout:.0f}s")

    # ---- sync -------------------------------------------------------------------------------------

    async def _sync(self, syncs: dict[WatchRule, list[str]]) -> AsyncIterator[ev.Event]:
        started = time.monotonic()
        name = self.current.container
        assert name is not None
        try:
            rootfs = await self._rootfs(name)
            for rule, files in syncs.items():
                await asyncio.to_thread(_copy_into, self.context, rootfs, rule, files)
                if rule.action == "sync+restart":
                    await self.engine.containers.restart(name, timeout=2)
                    summary = await self.engine.containers.get(name)
                    if summary.ip_address and self.forwarder is not None:
                        self.forwarder.set_target(summary.ip_address)
                elif rule.action == "sync+exec":
                    code, _ = await self.engine.containers.exec(name, list(rule.exec_command), capture=True)
                    if code:
                        raise WatchError(f"{' '.join(rule.exec_command)} exited with code {code}")
        except EngineError as exc:
            yield ev.WatchStatus("failed", f"sync failed: {exc}", container_id=name,
                                 seconds=time.monotonic() - started)
            return
        seconds = time.monotonic() - started
        self.current.history.append(("synced", seconds, self.current.image_id or ""))
        yield ev.WatchStatus("synced", ", ".join(f for fs in syncs.values() for f in fs)[:200],
                             image_id=self.current.image_id, container_id=name, seconds=seconds)

    async def _rootfs(self, name: str) -> Path:
        from engine.runtime.snapshots import is_mountpoint

        manager = self.engine.containers.manager
        cdir, _ = await asyncio.to_thread(manager.load, name)
        rootfs = Path(cdir.rootfs)
        if not is_mountpoint(rootfs):
            raise WatchError(f"{name} is not running (its root filesystem is not mounted)")
        return rootfs

    async def _shutdown(self) -> None:
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)
        if self.forwarder is not None:
            with contextlib.suppress(Exception):
                self.forwarder.stop()
        if self.current.container is not None and not self.options.keep:
            with contextlib.suppress(EngineError):
                await self.engine.containers.remove(self.current.container, force=True)


def _connects(ip: str, port: int) -> bool:
    import socket

    try:
        with socket.create_connection((ip, port), timeout=0.3):
            return True
    except OSError:
        return False


def _copy_into(context: Path, rootfs: Path, rule: WatchRule, files: Sequence[str]) -> None:
    """Copy changed context files to their place in a running container's root filesystem."""
    from engine.runtime.userdb import resolve_in_root

    for rel in files:
        source = context / rel
        target = resolve_in_root(rootfs, rule.container_path(rel))
        try:
            if not source.exists():
                with contextlib.suppress(FileNotFoundError):
                    if target.is_dir() and not target.is_symlink():
                        shutil.rmtree(target)
                    else:
                        target.unlink()
                continue
            if source.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            temp = target.with_name(f".{target.name}.dockyard-sync")
            shutil.copy2(source, temp)
            os.replace(temp, target)
        except OSError as exc:
            raise WatchError(f"cannot sync {rel}: {exc.strerror}") from None


def watch_events(engine: Any, options: WatchOptions) -> tuple[WatchLoop, Callable[[], AsyncIterator[ev.Event]]]:
    loop = WatchLoop(engine, options)
    return loop, loop.run
