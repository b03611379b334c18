"""6 Watch: the watch-and-rebuild loop's phases, its build log, current and last good image, history."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import Static

from engine.events import StepFailed, StepLog, StepStarted, WatchStatus
from tui.bridge import pump
from tui.formatting import seconds, short_id
from tui.messages import BuildUpdate, WatchUpdate
from tui.screens.form import Field, FormScreen
from tui.views.base import View
from tui.widgets.logview import LogEntry, LogView
from tui.widgets.table import Column, Row, VirtualTable

PHASES = ("watching", "changed", "building", "starting", "ready", "swapped", "synced", "failed")
HISTORY_COLUMNS = (
    Column("n", "#", 3, "right"), Column("when", "AT", 8), Column("files", "CHANGED", None),
    Column("result", "RESULT", 8), Column("time", "TOOK", 6, "right"), Column("image", "IMAGE", 12),
)


@dataclass
class Rebuild:
    number: int
    at: str
    files: tuple[str, ...]
    result: str = "building"
    took: float | None = None
    image: str = ""

    def row(self) -> Row:
        style = {"failed": "red", "building": "bold"}.get(self.result, "green")
        return Row.make(str(self.number), [str(self.number), self.at, ", ".join(self.files) or "-", self.result,
                                           seconds(self.took), short_id(self.image) if self.image else ""], style)


def phase_text(current: str, detail: str) -> Text:
    text = Text()
    for phase in PHASES:
        style = ("bold reverse red" if phase == "failed" else "bold reverse green") if phase == current else "dim"
        text.append(f" {phase} ", style=style)
        text.append(" ")
    if detail:
        text.append(f"\n{detail}")
    return text


class WatchView(View):
    TITLE = "Watch"
    MUTATING = frozenset({"start"})
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("w", "start", "Watch", id="watch.start"),
        Binding("x", "stop", "Stop watching", id="watch.stop"),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.phase = ""
        self.current_image = ""
        self.last_good = ""
        self.history: list[Rebuild] = []
        self.loop: Any = None

    def compose(self) -> ComposeResult:
        yield Static(phase_text("", "not watching — press w to watch a build context"), id="watch-phase")
        yield Static("", id="watch-images")
        with Horizontal():
            yield VirtualTable(HISTORY_COLUMNS, markable=False, empty="no rebuilds yet", id="watch-history")
            yield LogView(id="watch-log")

    def on_mount(self) -> None:
        self._show_images()

    def _show_images(self) -> None:
        self.query_one("#watch-images", Static).update(
            f"current image {short_id(self.current_image) or '-'}    last good {short_id(self.last_good) or '-'}")

    def action_start(self) -> None:
        if not self.allowed("start"):
            return
        if self.loop is not None:
            self.notify("already watching; x stops", severity="warning")
            return

        async def start(values: dict[str, str] | None) -> None:
            if not values:
                return
            from engine.build.builder import BuildOptions
            from engine.runtime.options import RunOptions
            from engine.watch.loop import WatchOptions

            typed = values["context"].strip() or "."
            context = Path(typed).resolve()
            given_tag = values["tag"].strip()
            tag = given_tag or f"{context.name}-dev:latest"  # what `dockyard watch` defaults to
            ports = tuple(values["ports"].split())
            self.command(" ".join(["dockyard watch", *([f"-t {given_tag}"] if given_tag else []),
                                   *(f"-p {p}" for p in ports), typed]))
            options = WatchOptions(build=BuildOptions(context=context, tags=(tag,)),
                                   run=RunOptions(publish=ports, detach=True), name=context.name)
            self.loop = self.engine.watch(options)
            try:
                # aclosing: when the worker is cancelled (the app quits) the loop's own cleanup still runs
                # (forwarder closed, container removed) instead of waiting for the generator's finalizer
                async with contextlib.aclosing(self.loop.run()) as events:
                    await pump(f"watch {typed}", events, self)
            finally:
                self.loop = None

        self.app.push_screen(FormScreen("Watch and rebuild", [
            Field("context", "Build context", "."), Field("tag", "Tag (default: <dir>-dev:latest)"),
            Field("ports", "Publish ports", placeholder="8080:80")], submit="Watch"),
            self.after(start, "watch"))

    async def stop_and_wait(self, timeout: float = 30.0) -> None:
        """Stop the loop and wait for its cleanup (forwarder closed, container removed): quitting the app
        cancels workers, and a cancelled cleanup would leave the watched container running."""
        if self.loop is None:
            return
        self.loop.stop()
        watching = [w for w in self.workers if w.node is self and w.group == "watch"]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.workers.wait_for_complete(watching), timeout)

    def action_stop(self) -> None:
        if self.loop is not None:
            self.loop.stop()
            self.command("# watch stopped (ctrl+c in `dockyard watch`)")

    def on_watch_update(self, message: WatchUpdate) -> None:
        if isinstance(message.event, WatchStatus):
            self.apply_status(message.event)

    def apply_status(self, status: WatchStatus) -> None:
        self.phase = status.phase
        self.query_one("#watch-phase", Static).update(phase_text(status.phase, status.detail))
        log = self.query_one("#watch-log", LogView)
        if status.phase == "changed":
            at = self.now().astimezone(_dt.UTC).strftime("%H:%M:%S")
            self.history.append(Rebuild(len(self.history) + 1, at, status.files))
            log.write(LogEntry(f"── change: {', '.join(status.files)}", style="bold"))
        elif status.phase in ("ready", "swapped", "synced", "failed") and self.history:
            entry = self.history[-1]
            entry.result = status.phase
            entry.took = status.seconds
            entry.image = status.image_id or ""
        if status.image_id and status.phase in ("ready", "swapped", "synced"):
            self.last_good = status.image_id
        if status.image_id:
            self.current_image = status.image_id
        if status.phase == "failed":
            log.write(LogEntry(f"   failed: {status.detail}", style="bold red"))
        self._show_images()
        self.query_one("#watch-history", VirtualTable).set_rows([h.row() for h in reversed(self.history)])

    def on_build_update(self, message: BuildUpdate) -> None:
        if message.op.startswith("watch "):
            event = message.event
            log = self.query_one("#watch-log", LogView)
            if isinstance(event, StepStarted):
                log.write(LogEntry(f"   step {event.step}/{event.total} {event.instruction}", style="bold"))
            elif isinstance(event, StepLog):
                log.write(LogEntry(f"   {event.line}"))
            elif isinstance(event, StepFailed):
                log.write(LogEntry(f"   {event.message}", style="red"))
