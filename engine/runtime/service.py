"""``engine.containers``: the async container API the CLI and the TUI use.

Blocking work (mounts, runc, netlink) runs in worker threads; long operations are async iterators
of events (engine/events.py).  The state is all on disk, so several processes (two CLIs and a TUI)
can act on the same containers.
"""

from __future__ import annotations

import builtins
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from engine.config import EngineConfig
from engine.errors import ConflictError, ContainerRuntimeError, InvalidInputError
from engine.runtime import cgroups
from engine.runtime.manager import ContainerManager, Started
from engine.runtime.options import RunOptions
from engine.runtime.record import ContainerRecord

if TYPE_CHECKING:  # imported where used: ``dockyard run`` pays for none of these
    from engine.events import Event, LogLine
    from engine.runtime.attach import AttachClient
    from engine.summaries import ContainerStats, ContainerSummary, PortSummary

T = TypeVar("T")


async def _thread(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    import asyncio  # imported lazily: ``dockyard run`` uses the blocking path and skips asyncio's ~30 ms

    return await asyncio.to_thread(func, *args, **kwargs)


async def _sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


class ContainerService:
    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.manager = ContainerManager(config)

    # ---- lifecycle -----------------------------------------------------------------------------------

    async def create(self, image: str, options: RunOptions) -> ContainerSummary:
        record = await _thread(self.manager.create, image, options, dict(os.environ))
        return self.manager.summary(record)

    async def run(self, image: str, options: RunOptions, *, attach: bool | None = None) -> AsyncIterator[Event]:
        """Create and start; events: created, PortBound per port, running.

        With ``attach`` (default: not ``options.detach``) the process starts when the caller
        connects with :meth:`attach`, so no output is missed.
        """
        from engine.events import ContainerStateChanged, PortBound

        wait_attach = (not options.detach) if attach is None else attach
        started = await _thread(self.manager.run, image, options, dict(os.environ),
                                          wait_attach=wait_attach)
        record = started.record
        yield ContainerStateChanged(record.id, record.name, "created")
        for port in started.ports:
            yield PortBound(record.id, port.host_ip, port.host_port, port.container_port, port.protocol)
        state = started.record.state
        yield ContainerStateChanged(record.id, record.name, state.status,
                                    health=state.health.status if state.health else None)

    def run_blocking(self, image: str, options: RunOptions, *, attach: bool | None = None) -> Started:
        """``run`` without an event loop (the CLI's hot path); same semantics as :meth:`run`."""
        wait_attach = (not options.detach) if attach is None else attach
        return self.manager.run(image, options, dict(os.environ), wait_attach=wait_attach)

    async def start(self, name: str, *, attach: bool = False) -> ContainerSummary:
        started = await _thread(self.manager.start, name, wait_attach=attach)
        return self.manager.summary(started.record)

    async def stop(self, name: str, timeout: float | None = None) -> ContainerSummary:
        record = await _thread(self.manager.stop, name, timeout)
        return self.manager.summary(record)

    async def kill(self, name: str, signal: str | int = "SIGKILL") -> ContainerSummary:
        record = await _thread(self.manager.kill, name, signal)
        return self.manager.summary(record)

    async def restart(self, name: str, timeout: float | None = None) -> ContainerSummary:
        await _thread(self.manager.stop, name, timeout)
        return await self.start(name)

    async def recreate(self, name: str, *, publish: Sequence[str] | None = None, add_publish: Sequence[str] = (),
                       timeout: float | None = None) -> ContainerSummary:
        """The container again, with the options it was created with (volumes, labels, limits, health, ...)
        and ``publish`` as its -p specs (None keeps them) plus ``add_publish``; same name and image.

        The old container is stopped and removed only once the new one runs; if the new one fails (a host
        port in use) the old one is back as it was and the error says so (engine/runtime/recreate.py).
        """
        from engine.runtime.recreate import recreate

        record = await _thread(recreate, self.manager, name, publish=publish, add_publish=add_publish,
                               timeout=timeout, caller_env=dict(os.environ))
        return self.manager.summary(record)

    async def remove(self, name: str, *, force: bool = False) -> str:
        return await _thread(self.manager.remove, name, force=force)

    async def wait(self, name: str) -> int:
        cdir = await _thread(self.manager.find, name)
        while True:
            record = await _thread(self.manager.wait_exit, cdir, 0.5)
            if record.state.status != "running":
                return record.state.exit_code
            await _sleep(0)

    def attach(self, name: str) -> AttachClient:
        """Connect to a running (or waiting) container's stdio; see engine.runtime.attach.pump."""
        from engine.runtime.attach import AttachClient

        cdir = self.manager.find(name)
        if not cdir.attach_socket.exists():
            raise ConflictError("you cannot attach to a stopped container, start it first")
        return AttachClient(cdir.attach_socket)

    # ---- views -------------------------------------------------------------------------------------------

    async def list(self, *, all: bool = False) -> builtins.list[ContainerSummary]:
        records = await _thread(self.manager.records)
        summaries = [self.manager.summary(r) for r in records]
        return summaries if all else [s for s in summaries if s.state == "running"]

    async def get(self, name: str) -> ContainerSummary:
        _, record = await _thread(self.manager.load, name)
        return self.manager.summary(record)

    async def inspect(self, name: str) -> dict[str, Any]:
        return await _thread(self.manager.inspect, name)

    async def inspect_container(self, name: str) -> dict[str, Any]:
        """docker ``inspect`` JSON of one container (the lead's ``inspect`` command calls this)."""
        return await self.inspect(name)

    async def port(self, name: str) -> builtins.list[PortSummary]:
        summary = await self.get(name)
        return builtins.list(summary.ports)

    async def logs(self, name: str, *, follow: bool = False, tail: int | None = None,
                   poll_interval: float = 0.05) -> AsyncIterator[LogLine]:
        """Entries of the json-file log; with ``follow`` keeps going until the container stops."""
        from engine.events import LogLine
        from engine.runtime.logs import read_entries, read_from

        cdir = await _thread(self.manager.find, name)
        entries, offset = await _thread(read_entries, cdir.log, tail)
        for entry in entries:
            yield LogLine(cdir.id, entry.stream, entry.text, entry.time)
        if not follow:
            return
        while True:
            record: ContainerRecord | None
            try:
                record = await _thread(cdir.load)
            except Exception:
                record = None
            entries, offset = await _thread(read_from, cdir.log, offset)
            for entry in entries:
                yield LogLine(cdir.id, entry.stream, entry.text, entry.time)
            if record is None or (record.state.status != "running" and record.state.monitor_pid == 0):
                entries, offset = await _thread(read_from, cdir.log, offset)
                for entry in entries:
                    yield LogLine(cdir.id, entry.stream, entry.text, entry.time)
                return
            await _sleep(poll_interval)

    async def stats(self, name: str, interval: float = 0.5) -> ContainerStats:
        """One sample of cpu (over ``interval``), memory and pids."""
        from engine.summaries import ContainerStats

        _, record = await _thread(self.manager.load, name)
        if record.state.status != "running":
            return ContainerStats(record.id, 0.0, 0, None, 0)
        first = await _thread(cgroups.sample, record.id)
        t0 = time.monotonic()
        await _sleep(interval)
        second = await _thread(cgroups.sample, record.id)
        if first is None or second is None:
            return ContainerStats(record.id, 0.0, 0, None, 0)
        return ContainerStats(record.id, cgroups.cpu_percent(first, second, time.monotonic() - t0),
                              second.memory_bytes, second.memory_limit, second.pids)

    async def stats_stream(self, names: Sequence[str], interval: float = 1.0) -> AsyncIterator[ContainerStats]:
        """A sample per container every ``interval`` (cpu measured over the interval)."""
        from engine.summaries import ContainerStats

        records = [(await _thread(self.manager.load, n))[1] for n in names]
        previous = {r.id: cgroups.sample(r.id) for r in records}
        last = time.monotonic()
        while True:
            await _sleep(interval)
            now = time.monotonic()
            for record in records:
                current = await _thread(cgroups.sample, record.id)
                before = previous.get(record.id)
                if current is None:
                    yield ContainerStats(record.id, 0.0, 0, None, 0)
                    continue
                cpu = cgroups.cpu_percent(before, current, now - last) if before else 0.0
                previous[record.id] = current
                yield ContainerStats(record.id, cpu, current.memory_bytes, current.memory_limit, current.pids)
            last = now

    async def exec(self, name: str, command: Sequence[str], *, tty: bool = False, interactive: bool = False,
                   env: Sequence[str] = (), workdir: str | None = None, user: str | None = None,
                   capture: bool = False) -> tuple[int, bytes]:
        """Run ``command`` in the container (``runc exec``).  Without ``capture`` the process uses this
        process's stdio (``-it`` gives an interactive terminal); with it, output is returned."""
        return await _thread(self.exec_sync, name, command, tty=tty, interactive=interactive,
                                       env=env, workdir=workdir, user=user, capture=capture)

    def exec_sync(self, name: str, command: Sequence[str], *, tty: bool = False, interactive: bool = False,
                  env: Sequence[str] = (), workdir: str | None = None, user: str | None = None,
                  capture: bool = False) -> tuple[int, bytes]:
        import json
        import subprocess
        import tempfile

        from engine.runtime.spec import exec_process
        from engine.runtime.userdb import lookup_user_in_rootfs

        cdir, record = self.manager.load(name)
        if record.state.status != "running":
            raise ConflictError(f"container {record.name} is not running")
        if not command:
            raise InvalidInputError("exec needs a command")
        spec = json.loads(cdir.spec.read_bytes())
        exec_user = lookup_user_in_rootfs(cdir.rootfs, user) if user is not None else None
        process = exec_process(spec["process"], command, tty=tty, env=env, workdir=workdir, user=exec_user)
        runtime = self.manager._runtime_for(record)
        with tempfile.NamedTemporaryFile("w", dir=cdir.path, prefix=".exec-", suffix=".json") as fh:
            json.dump(process, fh)
            fh.flush()
            args = runtime.exec_args(record.id, Path(fh.name), tty=tty)
            if capture:
                result = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, check=False)
                return result.returncode, result.stdout + result.stderr
            stdin = None if interactive else subprocess.DEVNULL
            proc = subprocess.run(args, stdin=stdin, check=False)
            if proc.returncode != 0 and tty and not os.isatty(0):
                raise ContainerRuntimeError("exec -t needs a terminal on stdin")
            return proc.returncode, b""

    # ---- events ---------------------------------------------------------------------------------------------

    async def gc_network(self) -> Any:
        """Remove network namespaces, veths and addresses of containers that no longer exist (crash
        leftovers). Every container directory counts as alive, even one still being created."""
        def collect() -> Any:
            live = [cdir.id for cdir in self.manager.dirs()]
            return self.manager._network().gc(live)

        return await _thread(collect)

    async def events(self, interval: float = 0.5) -> AsyncIterator[Event]:
        """State and health changes of every container, by polling the records (cheap: small files)."""
        from engine.events import ContainerStateChanged, HealthChanged

        seen: dict[str, tuple[str, str | None, str]] = {}
        first = True
        while True:
            records = await _thread(self.manager.records)
            current: dict[str, tuple[str, str | None, str]] = {}
            for record in records:
                health = record.state.health.status if record.state.health else None
                key = (record.state.status, health, record.name)
                current[record.id] = key
                before = seen.get(record.id)
                if first:
                    continue
                if before is None or before[0] != key[0]:
                    yield ContainerStateChanged(record.id, record.name, record.state.status,
                                                exit_code=record.state.exit_code
                                                if record.state.status == "exited" else None, health=health)
                if health is not None and (before is None or before[1] != health):
                    output = ""
                    if record.state.health and record.state.health.log:
                        output = str(record.state.health.log[-1].get("Output", ""))
                    yield HealthChanged(record.id, health, output)
            if not first:
                for cid, key in seen.items():
                    if cid not in current:
                        yield ContainerStateChanged(cid, key[2], "removed")
            seen = current
            first = False
            await _sleep(interval)


def parse_env_files(paths: Sequence[str], read: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """Read ``--env-file`` paths (at the edge) into lines for ``RunOptions.env_file_lines``."""
    from engine.runtime.options import parse_env_file

    out: list[str] = []
    for path in paths:
        try:
            text = read[path] if read is not None else Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidInputError(f"cannot read env file {path}: {exc.strerror}") from exc
        out.extend(parse_env_file(text))
    return tuple(out)
