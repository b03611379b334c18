"""``Engine.watch``: start watch loops. ``engine.watch(options)`` gives a :class:`WatchLoop`;
``engine.watch.watch(context, tag=..., ports=...)`` streams a loop's events with default options
(the TUI's form), and ``engine.watch.active`` is the newest loop so a view can read its ``current``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from engine import events as ev
from engine.watch.loop import WatchLoop, WatchOptions


def default_name(context: Path) -> str:
    """A container name prefix from the context directory: letters, digits, ``-`` and ``_``."""
    import re

    base = re.sub(r"[^a-z0-9_.-]+", "-", context.resolve().name.lower()).strip("-._")
    return base or "app"


def options_for(context: Path, *, tag: str | None = None, ports: Sequence[str] = (), name: str | None = None,
                dockerfile: Path | None = None, keep: bool = False, config_file: Path | None = None,
                build_args: dict[str, str] | None = None, target: str | None = None,
                env: Sequence[str] = ()) -> WatchOptions:
    from engine.build.builder import BuildOptions
    from engine.runtime.options import RunOptions

    root = context.resolve()
    base = name or default_name(root)
    build = BuildOptions(context=root, dockerfile=dockerfile, tags=(tag or f"{base}-dev:latest",),
                         build_args=dict(build_args or {}), target=target)
    return WatchOptions(build=build, run=RunOptions(publish=tuple(ports), env=tuple(env)), name=base, keep=keep,
                        config_file=config_file)


class WatchService:
    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self.active: WatchLoop | None = None

    def __call__(self, options: WatchOptions) -> WatchLoop:
        return self.loop(options)

    def loop(self, options: WatchOptions) -> WatchLoop:
        loop = WatchLoop(self._engine, options)
        self.active = loop
        return loop

    async def watch(self, context: Path, *, tag: str, ports: Sequence[str] = ()) -> AsyncIterator[ev.Event]:
        """Run a loop with default options until the caller stops iterating (or cancels)."""
        loop = self.loop(options_for(context, tag=tag, ports=ports))
        events = loop.run()
        try:
            async for event in events:
                yield event
        finally:
            await events.aclose()
