"""4 Containers: a live table, a log pane (follow, search, timestamps, wrap, merged), stats sparklines,
stop / kill / restart / remove and a shell (the app suspends and hands over the terminal)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import deque
from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, Label, Sparkline

from engine.events import LogLine
from engine.summaries import ContainerStats, ContainerSummary
from tui.bridge import pump
from tui.engine_protocols import service
from tui.formatting import human_size, short_id, uptime
from tui.messages import ContainersChanged, LogUpdate
from tui.screens.confirm import ConfirmScreen
from tui.views.base import View
from tui.widgets.logview import LogEntry, LogView
from tui.widgets.table import Column, Row, VirtualTable

CONTAINER_COLUMNS = (
    Column("name", "NAME", 16), Column("image", "IMAGE", None), Column("state", "STATE", 8),
    Column("health", "HEALTH", 9), Column("uptime", "UPTIME", 6, "right"), Column("cpu", "CPU", 6, "right"),
    Column("mem", "MEM", 8, "right"), Column("ports", "PORTS", 24),
)
STATE_STYLE = {"running": "green", "exited": "dim", "created": "yellow", "paused": "yellow"}
HISTORY = 60


def container_rows(containers: list[ContainerSummary], stats: dict[str, ContainerStats], now: Any) -> list[Row]:
    rows = []
    for c in containers:
        s = stats.get(c.id) if c.state == "running" else None
        ports = ", ".join(f"{p.host_port}->{p.container_port}/{p.protocol}" for p in c.ports)
        rows.append(Row.make(c.id, [
            c.name, c.image, c.state, c.health or "-", uptime(c.started_at, now) if c.state == "running" else "-",
            f"{s.cpu_percent:.1f}%" if s else "-", human_size(s.memory_bytes) if s else "-", ports,
        ], STATE_STYLE.get(c.state, "")))
    return rows


class ContainersView(View):
    TITLE = "Containers"
    MUTATING = frozenset({"stop", "kill", "restart", "remove", "shell"})
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "stop", "Stop", id="containers.stop"),
        Binding("K", "kill", "Kill", id="containers.kill"),
        Binding("r", "restart", "Restart", id="containers.restart"),
        Binding("d", "remove", "Remove", id="containers.remove"),
        Binding("e", "shell", "Shell", id="containers.shell"),
        Binding("m", "merged", "Merged log", id="containers.merged-log"),
        Binding("t", "timestamps", "Timestamps", id="containers.timestamps"),
        Binding("w", "wrap", "Wrap", id="containers.wrap"),
        Binding("o", "focus_log", "Log pane", id="containers.focus-log"),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.containers: dict[str, ContainerSummary] = {}
        self.stats: dict[str, ContainerStats] = {}
        self.cpu: dict[str, deque[float]] = {}
        self.mem: dict[str, deque[float]] = {}
        self.merged = False
        self.log_target: str | None = None

    def compose(self) -> ComposeResult:
        yield Input(placeholder="filter containers…", classes="filter", id="containers-filter")
        yield VirtualTable(CONTAINER_COLUMNS, empty="no containers — run an image from Images (r)",
                           id="containers-table")
        with Horizontal(id="containers-bottom"):
            with Vertical(id="log-pane"):
                yield Label("logs", id="log-title")
                yield Input(placeholder="search the log…", id="log-search")
                yield LogView(id="container-log")
            with Vertical(id="stats-pane"):
                yield Label("CPU", id="cpu-label")
                yield Sparkline([], id="cpu-spark")
                yield Label("memory", id="mem-label")
                yield Sparkline([], id="mem-spark")

    def on_mount(self) -> None:
        self.query_one("#containers-filter").display = False
        self.query_one("#log-search").display = False
        self.call_after_refresh(self.reload)
        self.set_interval(self.dockyard.poll_interval, self.poll_stats, name="containers.stats")

    def api(self) -> Any:
        return service(self.engine, "containers")

    def main_table(self) -> VirtualTable:
        return self.query_one("#containers-table", VirtualTable)

    # ---- data ----------------------------------------------------------------------------------------
    def reload(self) -> None:
        if self.api() is not None:
            self.work(self._load, "containers.list", exclusive=True)

    async def _load(self) -> None:
        containers = await self.api().list(all=True)
        self.containers = {c.id: c for c in containers}
        self._show_rows()
        self.poll_stats()
        if self.merged:
            self.follow_all()

    def _show_rows(self) -> None:
        self.main_table().set_rows(container_rows(list(self.containers.values()), self.stats, self.now()))

    def poll_stats(self) -> None:
        running = [c for c in self.containers.values() if c.state == "running"]
        busy = any(w.group == "containers.stats" and w.is_running for w in self.workers)
        if running and not busy and self.api() is not None and self.is_attached:
            self.work(lambda: self._stats(running), "containers.stats")  # one sample round at a time

    async def _stats(self, running: list[ContainerSummary]) -> None:
        for container in running:
            stats = await self.api().stats(container.id)
            self.stats[container.id] = stats
            self.cpu.setdefault(container.id, deque(maxlen=HISTORY)).append(stats.cpu_percent)
            self.mem.setdefault(container.id, deque(maxlen=HISTORY)).append(float(stats.memory_bytes))
        self._show_rows()
        self._show_stats(self.main_table().current_key)

    def _show_stats(self, container_id: str | None) -> None:
        cpu = list(self.cpu.get(container_id or "", ()))
        mem = list(self.mem.get(container_id or "", ()))
        self.query_one("#cpu-spark", Sparkline).data = cpu
        self.query_one("#mem-spark", Sparkline).data = mem
        self.query_one("#cpu-label", Label).update(f"CPU {cpu[-1]:.1f}%" if cpu else "CPU -")
        self.query_one("#mem-label", Label).update(f"memory {human_size(mem[-1])}" if mem else "memory -")

    # ---- logs ----------------------------------------------------------------------------------------
    def on_virtual_table_highlighted(self, message: VirtualTable.Highlighted) -> None:
        if message.table.id != "containers-table":
            return
        self._show_stats(message.key)
        if not self.merged and message.key is not None and message.key != self.log_target:
            self.follow(message.key)

    def follow(self, container_id: str) -> None:
        api = self.api()
        container = self.containers.get(container_id)
        if api is None or container is None:
            return
        self.log_target = container_id
        self.query_one("#container-log", LogView).clear()
        self.query_one("#log-title", Label).update(f"logs: {container.name} (following)")
        self.work(lambda: pump(container_id, api.logs(container_id, follow=True), self), "containers.logs",
                  exclusive=True)

    def follow_all(self) -> None:
        api = self.api()
        if api is None:
            return
        self.workers.cancel_group(self, "containers.logs")
        log = self.query_one("#container-log", LogView)
        log.clear()
        self.log_target = None
        self.query_one("#log-title", Label).update(f"merged log of {len(self.containers)} containers")
        for container_id in self.containers:
            self.run_worker(pump(container_id, api.logs(container_id, follow=True), self),
                            name=f"logs {container_id}", group="containers.logs", exit_on_error=False)

    def on_log_update(self, message: LogUpdate) -> None:
        message.stop()
        self.add_log(message.op, message.event)

    def add_log(self, container_id: str, event: Any) -> None:
        if not isinstance(event, LogLine):
            return
        source = ""
        if self.merged:
            container = self.containers.get(container_id)
            source = container.name if container else short_id(container_id)
        elif container_id != self.log_target:
            return
        self.query_one("#container-log", LogView).write(
            LogEntry(event.text.rstrip("\n"), event.time, source, "red" if event.stream == "stderr" else ""))

    def action_merged(self) -> None:
        self.merged = not self.merged
        if self.merged:
            self.follow_all()
        else:
            self.workers.cancel_group(self, "containers.logs")
            key = self.main_table().current_key
            self.log_target = None
            if key:
                self.follow(key)

    def action_timestamps(self) -> None:
        log = self.query_one("#container-log", LogView)
        log.set_options(timestamps=not log.timestamps)

    def action_wrap(self) -> None:
        log = self.query_one("#container-log", LogView)
        log.set_options(wrap=not log.wrap)

    def action_focus_log(self) -> None:
        self.query_one("#container-log", LogView).focus()

    def action_filter(self) -> None:
        if isinstance(self.app.focused, LogView):
            box = self.query_one("#log-search", Input)
            box.display = True
            box.focus()
        else:
            super().action_filter()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "log-search":
            event.stop()
            self.query_one("#container-log", LogView).set_search(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "log-search":
            event.stop()
            self.query_one("#container-log", LogView).focus()

    def action_back(self) -> None:
        box = self.query_one("#log-search", Input)
        if box.display:
            box.value = ""
            box.display = False
            self.query_one("#container-log", LogView).set_search("")
            self.query_one("#container-log", LogView).focus()
            return
        super().action_back()

    # ---- actions -------------------------------------------------------------------------------------
    def names(self, ids: list[str]) -> list[str]:
        return [self.containers[i].name if i in self.containers else i for i in ids]

    def _lifecycle(self, verb: str, action: str) -> None:
        ids = self.main_table().selection()
        if not ids or not self.allowed(action):
            return

        async def job() -> None:
            for container_id, name in zip(ids, self.names(ids), strict=True):
                await getattr(self.api(), action)(container_id)
                self.command(f"dockyard {verb} {name}")
            self.post_message(ContainersChanged())

        self.work(job, f"containers.{action}")

    def action_stop(self) -> None:
        self._lifecycle("stop", "stop")

    def action_restart(self) -> None:
        self._lifecycle("restart", "restart")

    def action_kill(self) -> None:
        ids = self.main_table().selection()
        if ids and self.allowed("kill"):
            self.app.push_screen(ConfirmScreen(f"Kill {len(ids)} container(s)?", self.names(ids)),
                                 lambda ok: self._lifecycle("kill", "kill") if ok else None)

    def action_remove(self) -> None:
        ids = self.main_table().selection()
        if not ids or not self.allowed("remove"):
            return
        names = self.names(ids)

        async def remove(confirmed: bool | None) -> None:
            if not confirmed:
                return
            for container_id, name in zip(ids, names, strict=True):
                await self.api().remove(container_id, force=True)
                self.command(f"dockyard rm -f {name}")
            self.main_table().marked.clear()
            self.post_message(ContainersChanged())

        self.app.push_screen(ConfirmScreen(f"Remove {len(ids)} container(s) (running ones are killed)?", names),
                             self.after(remove, "containers.remove"))

    def action_shell(self) -> None:
        key = self.main_table().current_key
        if key is None or not self.allowed("shell"):
            return
        name = self.containers[key].name if key in self.containers else key
        dockyard = shutil.which("dockyard")
        argv = [dockyard] if dockyard else [sys.executable, "-m", "cli.main"]
        argv += ["exec", "-it", name, "sh"]
        self.command(f"dockyard exec -it {name} sh")
        try:
            with self.app.suspend():
                subprocess.run(argv, check=False, env=dict(os.environ))
        except Exception as exc:  # SuspendNotSupported (headless, web) and OSError become a notification
            self.dockyard.report_error(exc, "shell")
        self.refresh()
