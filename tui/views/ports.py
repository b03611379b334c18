"""5 Ports: every published port, its container, and whether the host side answers; add a mapping by
recreating the container with the same configuration."""

from __future__ import annotations

import asyncio
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Input, Label

from engine.summaries import ContainerSummary, PortSummary
from tui.engine_protocols import service
from tui.messages import ContainersChanged
from tui.recreate import recreate_command
from tui.screens.form import Field, FormScreen
from tui.views.base import View
from tui.widgets.table import Column, Row, VirtualTable

PORT_COLUMNS = (
    Column("host", "HOST", 22), Column("arrow", "", 2), Column("target", "CONTAINER PORT", 14),
    Column("container", "CONTAINER", None), Column("state", "STATE", 8), Column("answers", "ANSWERS", 7),
)


def port_key(container: ContainerSummary, port: PortSummary) -> str:
    return f"{container.id}/{port.host_ip}:{port.host_port}/{port.protocol}"


def port_rows(containers: list[ContainerSummary], answers: dict[str, bool | None]) -> list[Row]:
    rows = []
    for container in containers:
        for port in container.ports:
            key = port_key(container, port)
            answer = answers.get(key)
            shown = {None: "…", True: "yes", False: "no"}[answer] if container.state == "running" else "-"
            if port.protocol != "tcp":
                shown = "n/a"
            style = "green" if answer else ("red" if answer is False and container.state == "running" else "dim")
            rows.append(Row.make(key, [f"{port.host_ip or '0.0.0.0'}:{port.host_port}", "->",
                                       f"{port.container_port}/{port.protocol}", container.name, container.state,
                                       shown], style if container.state == "running" else "dim"))
    return rows


async def answers(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts a TCP connection on host:port."""
    target = "127.0.0.1" if host in ("", "0.0.0.0") else ("::1" if host == "::" else host)
    try:
        _reader, writer = await asyncio.wait_for(asyncio.open_connection(target, port), timeout)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


class PortsView(View):
    TITLE = "Ports"
    MUTATING = frozenset({"add_port"})
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "add_port", "Add mapping", id="ports.add"),
        Binding("c", "probe", "Check ports", id="ports.probe"),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.containers: list[ContainerSummary] = []
        self.answers: dict[str, bool | None] = {}

    def compose(self) -> ComposeResult:
        yield Input(placeholder="filter ports…", classes="filter", id="ports-filter")
        yield Label("", id="ports-status")
        yield VirtualTable(PORT_COLUMNS, markable=False, empty="no published ports", id="ports-table")

    def on_mount(self) -> None:
        self.query_one("#ports-filter").display = False
        self.call_after_refresh(self.reload)

    def reload(self) -> None:
        if service(self.engine, "containers") is not None:
            self.work(self._load, "ports.list", exclusive=True)

    async def _load(self) -> None:
        self.containers = await self.engine.containers.list(all=True)
        self._show_rows()
        await self._probe()

    def _show_rows(self) -> None:
        table = self.query_one("#ports-table", VirtualTable)
        table.set_rows(port_rows(self.containers, self.answers))
        count = sum(len(c.ports) for c in self.containers)
        self.query_one("#ports-status", Label).update(f"{count} published port(s)")

    async def _probe(self) -> None:
        probe = self.dockyard.port_probe or answers
        for container in self.containers:
            if container.state != "running":
                continue
            for port in container.ports:
                if port.protocol == "tcp":
                    self.answers[port_key(container, port)] = await probe(port.host_ip, port.host_port)
        self._show_rows()

    def action_probe(self) -> None:
        self.work(self._probe, "ports.probe", exclusive=True)

    def action_add_port(self) -> None:
        table = self.query_one("#ports-table", VirtualTable)
        key = table.current_key
        names = [c.name for c in self.containers]
        current = next((c.name for c in self.containers if key and key.startswith(c.id + "/")), names[0] if names
                       else "")
        if not self.allowed("add_port"):
            return

        async def add(values: dict[str, str] | None) -> None:
            if not values or not values["spec"].strip():
                return
            name, spec = values["container"].strip(), values["spec"].strip()
            # the list on screen may be older than the container: the engine resolves names, ids and prefixes
            target = next((c.id for c in self.containers if name in (c.name, c.id)), name)
            self.notify(f"recreating {name} with {spec}…", timeout=3)
            try:
                # the engine keeps every option the container was created with (volumes, labels, limits,
                # health) and brings the old one back if the new one cannot start
                new = await self.engine.containers.recreate(target, add_publish=(spec,))
            finally:
                self.post_message(ContainersChanged())
            self.command(recreate_command(new.name, new.image, spec))
            self.notify(f"{new.name} recreated with {spec}")

        self.app.push_screen(FormScreen("Add a port mapping (the container is recreated)", [
            Field("container", "Container", current), Field("spec", "Mapping", placeholder="8081:80/tcp")],
            submit="Recreate"), self.after(add, "ports.add"))

