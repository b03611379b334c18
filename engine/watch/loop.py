"""The watch loop: change -> rebuild (cached) -> start beside the old container -> ready -> swap ports.

The host ports of a watched app are bound once, by this loop's own forwarder, and point at whichever
container is current: a swap retargets the forwarder (listeners stay open), then stops the old
container in the background, so the mapped port keeps answering throughout. Containers run on the
bridge network without host ports of their own. A failed build, or a new container that never gets
ready, leaves the last good one serving. Until the first container is ready the forwarder has no target
and refuses connections at once (a client fails fast instead of hanging in the listen backlog). Each
rebuild re-tags the image; once a swap has retired the old container, the images the loop built that no
name and no container uses any more are removed and their blobs collected (the build cache keeps its
layers, so going back to an earlier version is still all cache hits).

Three tasks share the work: a watcher feeds a :class:`ChangeBuffer`; one worker handles batches, one
at a time (changes during a build queue exactly one more batch); ``run()`` yields the events both
produce, as they happen.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from engine import events as ev
from engine.build.builder import BuildOptions
from engine.errors import BuildStepError, EngineError, InvalidInputError, WatchError
from engine.runtime.options import RunOptions
from engine.watch.changes import ChangeBuffer, change_filter
from engine.watch.rules import WatchPlan, WatchRule, load_plan
from engine.watch.state import Cycle, WatchCycle, WatchFailed, WatchState

QUIET_MS = 200  # a burst ends after this long without a change
CAP_MS = 1500  # ... or this long after its first change in any case
WATCH_STEP_MS = 20  # how often the file watcher hands over what it saw
READY_TIMEOUT = 30.0
READY_POLL = 0.01
RETIRE_TIMEOUT = 2.0  # seconds the old container gets to stop after a swap
WATCH_LABEL = "dockyard.watch"
INITIAL = "(initial build)"


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

    def __post_init__(self) -> None:
        if self.quiet_ms <= 0 or self.cap_ms < self.quiet_ms:
            raise InvalidInputError("watch: the quiet period must be positive and the cap at least as long")
        if self.ready_timeout <= 0:
            raise InvalidInputError("watch: the ready timeout must be positive")


class WatchLoop:
    """``async for event in loop.run(): ...``; ``loop.stop()`` ends it; ``loop.current`` is a snapshot."""

    def __init__(self, engine: Any, options: WatchOptions) -> None:
        if options.build.context is None:
            raise InvalidInputError("watch needs a build context directory")
        context = options.build.context.resolve()
        if not context.is_dir():
            raise InvalidInputError(f"watch: build context {options.build.context} is not a directory")
        self.engine = engine
        self.options = options
        self.context = context
        self.plan: WatchPlan = load_plan(self.context, options.config_file)
        self.forwarder: Any = None
        self._state = WatchState(context=str(context))
        self._buffer = ChangeBuffer(options.quiet_ms / 1000, options.cap_ms / 1000)
        self._wakeup = asyncio.Event()
        self._stop = asyncio.Event()
        self._events: asyncio.Queue[ev.Event] = asyncio.Queue()
        self._retiring: set[asyncio.Task[None]] = set()
        self._generation = 0
        self._built: set[str] = set()  # image ids this loop's builds produced (and not removed yet)
        self._prune_lock = asyncio.Lock()

    # ---- public -----------------------------------------------------------------------------------

    @property
    def current(self) -> WatchState:
        """The loop's state right now (a frozen snapshot, safe to keep and compare)."""
        return self._state

    def stop(self) -> None:
        """End the loop after the step in progress (a build in progress is abandoned)."""
        self._stop.set()
        self._wakeup.set()

    async def run(self) -> AsyncGenerator[ev.Event, None]:
        """Bind the ports, build and start, then follow changes until :meth:`stop` (or cancellation).

        Cleanup (forwarder, retiring and current containers) runs when the generator ends: after
        :meth:`stop` the last events ("stopped") are still yielded; a consumer that may leave the
        ``async for`` early should wrap it in ``contextlib.aclosing(loop.run())``.
        """
        self._bind_ports()
        tasks: list[asyncio.Task[None]] = []
        try:
            self._status("watching", str(self.context))
            tasks = [asyncio.create_task(self._watch(), name="dockyard-watch-files"),
                     asyncio.create_task(self._work(), name="dockyard-watch-work")]
            stopped = asyncio.create_task(self._stop.wait())
            try:
                while True:
                    getter = asyncio.ensure_future(self._events.get())
                    done, _ = await asyncio.wait({getter, stopped, *tasks}, return_when=asyncio.FIRST_COMPLETED)
                    if getter in done:
                        yield getter.result()
                        continue
                    getter.cancel()
                    for task in tasks:
                        error = task.exception() if task.done() and not task.cancelled() else None
                        if error is not None:
                            raise error
                    break
            finally:
                stopped.cancel()
            while not self._events.empty():
                yield self._events.get_nowait()
        finally:
            self._stop.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._shutdown()
        while not self._events.empty():
            yield self._events.get_nowait()

    # ---- events and state ---------------------------------------------------------------------------

    def _emit(self, event: ev.Event) -> None:
        self._events.put_nowait(event)

    def _status(self, phase: str, detail: str = "", **fields: Any) -> None:
        self._state = replace(self._state, phase=phase, detail=detail)
        self._emit(ev.WatchStatus(phase, detail, **fields))

    def _finish(self, cycle: Cycle) -> None:
        self._state = replace(self._state, history=(*self._state.history, cycle), last_error=cycle.error)
        self._emit(WatchCycle(cycle, self._state))

    def _cycle(self, trigger: Sequence[str], kind: str, outcome: str, started: float, **fields: Any) -> Cycle:
        return Cycle(len(self._state.history) + 1, tuple(trigger), kind, outcome, time.monotonic() - started,
                     time.time(), container=self._state.container, **fields)

    # ---- changes ----------------------------------------------------------------------------------

    async def _watch(self) -> None:
        import watchfiles

        from engine.build.context import BuildContext, read_ignore_patterns

        dockerfile = (self.options.build.dockerfile or self.context / "Dockerfile").resolve()
        ignore = BuildContext(self.context, read_ignore_patterns(self.context, self.options.build.dockerfile))
        relative = change_filter(self.context, dockerfile, ignore.is_ignored)
        watched = [self.context] + ([dockerfile.parent] if not dockerfile.is_relative_to(self.context) else [])

        def wanted(_change: watchfiles.Change, path: str) -> bool:
            return relative(path) is not None

        async for changes in watchfiles.awatch(
            *watched, watch_filter=wanted, debounce=self.options.cap_ms, step=WATCH_STEP_MS,
            stop_event=self._stop, rust_timeout=500, yield_on_timeout=False,
        ):
            paths = {rel for _, p in changes if (rel := relative(p)) is not None}
            if ".dockerignore" in paths or f"{dockerfile.name}.dockerignore" in paths:
                ignore = BuildContext(self.context, read_ignore_patterns(self.context, self.options.build.dockerfile))
                relative = change_filter(self.context, dockerfile, ignore.is_ignored)
            if self._buffer.add(paths, time.monotonic()):
                self._state = replace(self._state, pending=self._buffer.pending)
                self._wakeup.set()

    async def _next_batch(self) -> tuple[str, ...] | None:
        while not self._stop.is_set():
            due = self._buffer.due_at()
            if due is None:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            now = time.monotonic()
            batch = self._buffer.take(now)
            if batch is not None:
                self._state = replace(self._state, pending=self._buffer.pending)
                return batch
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), due - now)
        return None

    async def _work(self) -> None:
        await self._rebuild((INITIAL,))
        while (batch := await self._next_batch()) is not None:
            if "dockyard.toml" in batch and self.options.config_file is None:
                try:
                    self.plan = load_plan(self.context)
                except EngineError as exc:
                    self._emit(WatchFailed("failed", f"dockyard.toml: {exc}", stage="config",
                                           image_id=self._state.good_image_id, container_id=self._state.container))
            self._status("changed", f"{len(batch)} file(s): {', '.join(batch[:5])}", files=batch)
            rebuild, syncs = self.plan.classify(batch)
            if rebuild or self._state.container is None:
                await self._rebuild(batch)
            else:
                await self._sync(batch, syncs)

    # ---- ports ------------------------------------------------------------------------------------

    def _bind_ports(self) -> None:
        from engine.net.forward import Forwarder, bind_all
        from engine.net.ports import parse_publish

        mappings = [m for spec in self.options.run.publish for m in parse_publish(spec)]
        if not mappings:
            return
        bound = bind_all(mappings)  # PortInUseError before anything is built
        # Serving at once, with no target: until the first container is ready (or while the first build
        # fails) a client is refused at once instead of hanging in the listen backlog.
        self.forwarder = Forwarder(bound, None).start()
        self._state = replace(self._state, ports=tuple(
            f"{m.host_ip}:{m.host_port}->{m.container_port}/{m.protocol}" for m in bound.mappings))

    @property
    def _stop_timeout(self) -> float:
        """Grace for a container being replaced or restarted (``--stop-timeout``, else RETIRE_TIMEOUT)."""
        timeout = self.options.run.stop_timeout
        return float(timeout) if timeout is not None else RETIRE_TIMEOUT

    @property
    def mappings(self) -> list[Any]:
        return list(self.forwarder.mappings) if self.forwarder is not None else []

    # ---- rebuild and swap ---------------------------------------------------------------------------

    async def _rebuild(self, trigger: Sequence[str]) -> None:
        started = time.monotonic()
        self._status("building", ", ".join(trigger[:5]), files=tuple(trigger))
        image_id = manifest = None
        step: ev.StepStarted | None = None
        failed: ev.StepFailed | None = None
        try:
            async for event in self.engine.builds.build(self.options.build):
                self._emit(event)
                if isinstance(event, ev.StepStarted):
                    step = event
                    self._status("building", f"step {event.step}/{event.total}: {event.instruction}")
                elif isinstance(event, ev.StepFailed):
                    failed = event
                elif isinstance(event, ev.BuildFinished):
                    image_id, manifest = event.image_id, event.manifest_digest
        except EngineError as exc:
            exit_code = failed.exit_code if failed else getattr(exc, "exit_code", None)
            last_lines = failed.last_lines if failed else (exc.last_lines if isinstance(exc, BuildStepError) else ())
            self._fail("build", f"build failed: {exc}", started, trigger, "build failed",
                       step=failed.step if failed else (step.step if step else None),
                       instruction=step.instruction if step else None, exit_code=exit_code, last_lines=last_lines)
            return
        if image_id is None:
            self._fail("build", "build failed: the builder finished without an image", started, trigger,
                       "build failed")
            return
        build_seconds = time.monotonic() - started
        self._state = replace(self._state, image_id=image_id, manifest_digest=manifest)
        self._built.add(image_id)  # with no await between: a prune never sees it unprotected
        if image_id == self._state.good_image_id and self._state.container is not None:
            self._status("ready", f"image unchanged, {self._state.container} keeps serving", image_id=image_id,
                         container_id=self._state.container, seconds=time.monotonic() - started)
            self._finish(self._cycle(trigger, "rebuild", "unchanged", started, image_id=image_id,
                                     manifest_digest=manifest, build_seconds=build_seconds))
            return
        await self._swap(trigger, image_id, manifest, started, build_seconds)

    def _fail(self, stage: str, detail: str, started: float, trigger: Sequence[str], outcome: str,
              *, kind: str = "rebuild", **fields: Any) -> None:
        seconds = time.monotonic() - started
        if self._state.container is not None:
            detail += f" ({self._state.container} keeps serving)"
        self._state = replace(self._state, phase="failed", detail=detail)
        self._emit(WatchFailed("failed", detail, files=tuple(trigger), image_id=self._state.good_image_id,
                               container_id=self._state.container, seconds=seconds, stage=stage, **fields))
        self._finish(self._cycle(trigger, kind, outcome, started, error=detail,
                                 image_id=self._state.image_id if stage == "start" else None,
                                 manifest_digest=self._state.manifest_digest if stage == "start" else None))

    async def _next_name(self) -> str:
        if self._generation == 0:  # continue after containers a previous loop left (--keep)
            prefix = f"{self.options.name}-"
            with contextlib.suppress(EngineError):
                for summary in await self.engine.containers.list(all=True):
                    tail = summary.name.removeprefix(prefix)
                    if summary.name.startswith(prefix) and tail.isdigit():
                        self._generation = max(self._generation, int(tail))
        self._generation += 1
        return f"{self.options.name}-{self._generation}"

    async def _swap(self, trigger: Sequence[str], image_id: str, manifest: str | None, started: float,
                    build_seconds: float) -> None:
        name = await self._next_name()
        run_options = replace(self.options.run, name=name, detach=True, publish=(), publish_all=False,
                              remove=False, labels={**self.options.run.labels, WATCH_LABEL: self.options.name})
        self._status("starting", name, image_id=image_id)
        starting = time.monotonic()
        try:
            async for event in self.engine.containers.run(image_id, run_options, attach=False):
                self._emit(event)
            ip = await self._wait_ready(name, image_id)
        except EngineError as exc:
            exit_code, last_lines = await self._post_mortem(name)
            with contextlib.suppress(EngineError):
                await self.engine.containers.remove(name, force=True)
            self._fail("start", f"new container not ready: {exc}", started, trigger, "not ready",
                       exit_code=exit_code, last_lines=last_lines)
            return
        ready_seconds = time.monotonic() - starting
        old = self._state.container
        if self.forwarder is not None:
            self.forwarder.set_target(ip)
        self._state = replace(self._state, container=name, container_ip=ip, good_image_id=image_id,
                              good_manifest_digest=manifest)
        self._status("ready", name, image_id=image_id, container_id=name, seconds=ready_seconds)
        if old is not None:
            # The old container drains its open connections while the new one already serves.
            task = asyncio.create_task(self._retire(old))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)
        seconds = time.monotonic() - started
        self._status("swapped", f"{old or '-'} -> {name}", image_id=image_id, container_id=name, seconds=seconds)
        self._finish(self._cycle(trigger, "rebuild", "swapped", started, image_id=image_id, manifest_digest=manifest,
                                 build_seconds=build_seconds, ready_seconds=ready_seconds))

    async def _post_mortem(self, name: str) -> tuple[int | None, tuple[str, ...]]:
        """The exit code and last log lines of a container that did not get ready."""
        exit_code: int | None = None
        lines: list[str] = []
        with contextlib.suppress(EngineError):
            summary = await self.engine.containers.get(name)
            if summary.state != "running":
                exit_code = summary.exit_code
            async for line in self.engine.containers.logs(name, tail=10):
                lines.append(line.text.rstrip("\n"))
        return exit_code, tuple(lines[-10:])

    async def _retire(self, name: str) -> None:
        with contextlib.suppress(EngineError):
            await self.engine.containers.stop(name, timeout=self._stop_timeout)
        with contextlib.suppress(EngineError):
            await self.engine.containers.remove(name, force=True)
        await self._prune_images()

    async def _prune_images(self) -> None:
        """Each rebuild re-tags the image and leaves the one before untagged: once its container is gone,
        remove the images this loop built that no name and no container uses any more (never the last
        good one nor the newest), then gc their blobs (the build cache keeps its layers)."""
        async with self._prune_lock:
            keep = {self._state.good_image_id, self._state.image_id}
            candidates = sorted(self._built - {i for i in keep if i})
            if not candidates:
                return
            with contextlib.suppress(EngineError):
                removed = await self.engine.images.remove_dangling(candidates)
                self._built.difference_update(removed)
                if removed:
                    await self.engine.images.gc()

    async def _wait_ready(self, name: str, image_id: str) -> str:
        """Wait until the HEALTHCHECK passes or the first mapped TCP port accepts; returns the IP."""
        deadline = time.monotonic() + self.options.ready_timeout
        image = await self.engine.images.get(image_id)
        health = self.options.run.health
        test = (image.config.healthcheck or {}).get("Test") or []
        has_health = not health.disabled and (health.cmd is not None or (bool(test) and test[0] != "NONE"))
        ports = [m.container_port for m in self.mappings if m.protocol == "tcp"]
        summary = await self.engine.containers.get(name)
        ip: str | None = summary.ip_address
        if not ip:
            raise WatchError(f"container {name} has no address on the bridge network")
        checked = 0.0
        while True:
            now = time.monotonic()
            if now >= checked + 0.1 or has_health:
                summary = await self.engine.containers.get(name)
                checked = now
                if summary.state != "running":
                    raise WatchError(f"{name} exited with code {summary.exit_code}")
                if has_health and summary.health == "healthy":
                    return ip
                if has_health and summary.health == "unhealthy":
                    raise WatchError(f"{name} is unhealthy")
            if not has_health and (not ports or await _connects(ip, ports[0])):
                return ip
            if time.monotonic() >= deadline:
                raise WatchError(f"{name} did not get ready within {self.options.ready_timeout:g}s")
            await asyncio.sleep(0.05 if has_health else READY_POLL)

    # ---- sync -------------------------------------------------------------------------------------

    async def _sync(self, trigger: Sequence[str], syncs: dict[WatchRule, list[str]]) -> None:
        from engine.watch.sync import copy_into

        started = time.monotonic()
        name = self._state.container
        assert name is not None
        try:
            rootfs = await self._rootfs(name)
            for rule, files in syncs.items():
                await asyncio.to_thread(copy_into, self.context, rootfs, rule, files)
                if rule.action == "sync+restart":
                    await self.engine.containers.restart(name, timeout=self._stop_timeout)
                    summary = await self.engine.containers.get(name)
                    if summary.ip_address:
                        self._state = replace(self._state, container_ip=summary.ip_address)
                        if self.forwarder is not None:
                            self.forwarder.set_target(summary.ip_address)
                elif rule.action == "sync+exec":
                    code, output = await self.engine.containers.exec(name, list(rule.exec_command), capture=True)
                    if code:
                        lines = tuple(output.decode(errors="replace").splitlines()[-10:])
                        self._fail("sync", f"sync: {' '.join(rule.exec_command)} exited with code {code}", started,
                                   trigger, "sync failed", kind="sync", exit_code=code, last_lines=lines)
                        return
        except EngineError as exc:
            self._fail("sync", f"sync failed: {exc}", started, trigger, "sync failed", kind="sync")
            return
        seconds = time.monotonic() - started
        files = [f for fs in syncs.values() for f in fs]
        self._status("synced", ", ".join(files)[:200], files=tuple(files), image_id=self._state.good_image_id,
                     container_id=name, seconds=seconds)
        self._finish(self._cycle(trigger, "sync", "synced", started, image_id=self._state.good_image_id,
                                 manifest_digest=self._state.good_manifest_digest))

    async def _rootfs(self, name: str) -> Path:
        from engine.runtime.snapshots import is_mountpoint

        manager = self.engine.containers.manager
        cdir, _ = await asyncio.to_thread(manager.load, name)
        rootfs = Path(cdir.rootfs)
        if not await asyncio.to_thread(is_mountpoint, rootfs):
            raise WatchError(f"{name} is not running (its root filesystem is not mounted)")
        return rootfs

    # ---- the end ----------------------------------------------------------------------------------

    async def _shutdown(self) -> None:
        if self.forwarder is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.forwarder.stop)
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)
        name = self._state.container
        if name is not None and not self.options.keep:
            with contextlib.suppress(EngineError):
                await self.engine.containers.remove(name, force=True)
            self._state = replace(self._state, container=None, container_ip=None)
            self._status("stopped", f"removed {name}")
        else:
            self._status("stopped", f"{name} keeps running (without the mapped ports)" if name else "")


async def _connects(ip: str, port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(ip, port), 0.5)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True
