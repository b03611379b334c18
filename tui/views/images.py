"""1 Images: local images, their config and layers; run, tag, push, remove, inspect, layer files."""

from __future__ import annotations

import shlex
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Input, Static

from engine.summaries import ImageSummary, LayerSummary
from tui.bridge import pump
from tui.engine_protocols import service
from tui.formatting import ago, human_size, short_id
from tui.messages import ContainersChanged
from tui.recreate import run_command
from tui.screens.confirm import ConfirmScreen
from tui.screens.form import Field, FormScreen
from tui.screens.text import TextScreen
from tui.views.base import View
from tui.widgets.table import Column, Row, VirtualTable

IMAGE_COLUMNS = (
    Column("repository", "REPOSITORY", None), Column("tag", "TAG", 14), Column("id", "IMAGE ID", 12),
    Column("created", "CREATED", 9), Column("size", "SIZE", 8, "right"),
)
LAYER_COLUMNS = (Column("size", "SIZE", 8, "right"), Column("created_by", "CREATED BY", None))


def image_rows(images: list[ImageSummary], now: Any) -> list[Row]:
    """One row per tag (docker images), untagged images as <none>."""
    rows: list[Row] = []
    for image in images:
        names = image.repo_tags or ("<none>:<none>",)
        for name in names:
            repo, _, tag = name.rpartition(":")
            if "/" in tag or not repo:
                repo, tag = name, ""
            key = name if image.repo_tags else image.id
            rows.append(Row.make(key, [repo, tag, short_id(image.id), ago(image.created, now),
                                       human_size(image.size)]))
    return rows


def config_text(data: dict[str, Any]) -> Text:
    """The run configuration of an inspected image, one labelled line per setting."""
    config = data.get("Config") or {}
    text = Text(no_wrap=True, overflow="ellipsis")

    def line(label: str, value: Any) -> None:
        text.append(f"{label:<12}", style="bold")
        text.append(f"{value}\n")

    line("Id", short_id(str(data.get("Id", ""))))
    line("Platform", f"{data.get('Os', '')}/{data.get('Architecture', '')}")
    line("Entrypoint", shlex.join(config.get("Entrypoint") or []) or "-")
    line("Cmd", shlex.join(config.get("Cmd") or []) or "-")
    line("WorkingDir", config.get("WorkingDir") or "-")
    line("User", config.get("User") or "-")
    line("Ports", ", ".join(sorted(config.get("ExposedPorts") or {})) or "-")
    line("Volumes", ", ".join(sorted(config.get("Volumes") or {})) or "-")
    env = config.get("Env") or []
    line("Env", env[0] if env else "-")
    for item in env[1:]:
        line("", item)
    labels = config.get("Labels") or {}
    line("Labels", "-" if not labels else "")
    for key, value in sorted(labels.items()):
        line("", f"{key}={value}")
    text.rstrip()
    return text


def layer_rows(layers: list[LayerSummary]) -> list[Row]:
    return [Row.make(f"{index}:{layer.digest}", ["" if layer.empty_layer else human_size(layer.size),
                                                  " ".join(layer.created_by.split())],
                     "dim" if layer.empty_layer else "")
            for index, layer in enumerate(layers)]


def push_target(name: str, registry: str) -> str:
    """Where a push goes by default: the name itself when it names a registry, else the active one."""
    first = name.split("/", 1)[0]
    if "/" in name and ("." in first or ":" in first or first == "localhost"):
        return name
    return f"{registry}/{name}"


class ImagesView(View):
    TITLE = "Images"
    MUTATING = frozenset({"run", "tag", "push", "remove", "files"})
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "run", "Run", id="images.run"),
        Binding("t", "tag", "Tag", id="images.tag"),
        Binding("p", "push", "Push", id="images.push"),
        Binding("d", "remove", "Remove", id="images.remove"),
        Binding("i", "inspect", "Inspect", id="images.inspect"),
        Binding("f", "layers", "Layers & files", id="images.layers"),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.images: dict[str, ImageSummary] = {}

    def compose(self) -> ComposeResult:
        yield Input(placeholder="filter images…", classes="filter", id="images-filter")
        with Horizontal():
            yield VirtualTable(IMAGE_COLUMNS, empty="no images — build one (2) or pull one (3)", id="images-table")
            with Vertical(id="image-detail", classes="detail"):
                with VerticalScroll(id="image-config-scroll"):
                    yield Static("", id="image-config")
                yield VirtualTable(LAYER_COLUMNS, markable=False, empty="", id="image-layers")

    def on_mount(self) -> None:
        self.query_one("#images-filter").display = False
        self.call_after_refresh(self.reload)

    def reload(self) -> None:
        self.work(self._load, "images.list", exclusive=True)

    async def _load(self) -> None:
        images = await self.engine.images.list()
        self.images = {}
        for image in images:
            for name in image.repo_tags or (image.id,):
                self.images[name] = image
        self.query_one("#images-table", VirtualTable).set_rows(image_rows(images, self.now()))

    def on_virtual_table_highlighted(self, message: VirtualTable.Highlighted) -> None:
        if message.table.id != "images-table":
            return
        key = message.key
        if key is None:
            self.query_one("#image-config", Static).update("")
            self.query_one("#image-layers", VirtualTable).set_rows([])
            return
        self.work(lambda: self._detail(key), "images.detail", exclusive=True)

    def on_virtual_table_selected(self, message: VirtualTable.Selected) -> None:
        if message.table.id == "images-table":
            self.action_layers()

    async def _detail(self, name: str) -> None:
        data = await self.engine.images.inspect(name)
        layers = await self.engine.images.layers(name)
        self.query_one("#image-config", Static).update(config_text(data))
        self.query_one("#image-layers", VirtualTable).set_rows(layer_rows(layers), keep_cursor=False)

    # ---- actions -----------------------------------------------------------------------------------
    def current(self) -> str | None:
        return self.query_one("#images-table", VirtualTable).current_key

    def selection(self) -> list[str]:
        return self.query_one("#images-table", VirtualTable).selection()

    def action_inspect(self) -> None:
        name = self.current()
        if name is None:
            return

        async def show() -> None:
            data = await self.engine.images.inspect(name)
            self.command(f"dockyard image inspect {name}")
            self.app.push_screen(TextScreen.json(f"inspect {name}", [data]))

        self.work(show, "images.inspect")

    def action_layers(self) -> None:
        name = self.current()
        if name is None:
            return
        from tui.screens.layers import LayersScreen

        self.command(f"dockyard history {name}")
        self.app.push_screen(LayersScreen(name))

    def action_tag(self) -> None:
        name = self.current()
        if name is None or not self.allowed("tag"):
            return

        async def submit(values: dict[str, str] | None) -> None:
            if not values or not values["target"].strip():
                return
            target = values["target"].strip()
            await self.engine.images.tag(name, target)
            self.command(f"dockyard tag {name} {target}")
            self.notify(f"tagged {target}")
            self.reload()

        self.app.push_screen(FormScreen(f"Tag {name}", [Field("target", "New reference", name)], submit="Tag"),
                             self.after(submit, "images.tag"))

    def action_push(self) -> None:
        name = self.current()
        if name is None or not self.allowed("push"):
            return

        def submit(values: dict[str, str] | None) -> None:
            if values and values["reference"].strip():
                self.dockyard.start_push(values["reference"].strip(), source=name)

        default = push_target(name, self.dockyard.active_registry)
        self.app.push_screen(FormScreen(f"Push {name}", [Field("reference", "Push to", default)], submit="Push"),
                             submit)

    def action_run(self) -> None:
        name = self.current()
        if name is None or not self.allowed("run"):
            return
        containers = service(self.engine, "containers")
        if containers is None:
            self.notify("the container service is not available in this engine", severity="warning")
            return
        async def submit(values: dict[str, str] | None) -> None:
            if values is None:
                return
            from engine.runtime.options import RunOptions

            specs = tuple(p for p in values["ports"].replace(",", " ").split() if p)
            container_name = values["name"].strip() or None
            options = RunOptions(name=container_name, publish=specs, detach=True)
            self.command(run_command(name, options))
            await pump(f"run {name}", containers.run(name, options), self)
            self.notify(f"started {container_name or name}")
            self.post_message(ContainersChanged())

        async def ask() -> None:
            # Offer the image's own EXPOSEd ports on the same host ports, as a user would type them.
            data = await self.engine.images.inspect(name)
            exposed = sorted((data.get("Config") or {}).get("ExposedPorts") or {})
            default = " ".join(f"{port.split('/')[0]}:{port}" if not port.endswith("/tcp")
                               else f"{port[:-4]}:{port[:-4]}" for port in exposed)
            self.app.push_screen(
                FormScreen(f"Run {name}", [Field("name", "Container name (optional)"),
                                           Field("ports", "Publish ports (host:container, space separated)",
                                                 default, placeholder="8080:80")], submit="Run"),
                self.after(submit, "images.run"))

        self.work(ask, "images.run")

    def action_remove(self) -> None:
        names = self.selection()
        if not names or not self.allowed("remove"):
            return

        async def remove(confirmed: bool | None) -> None:
            if not confirmed:
                return
            for name in names:
                await self.engine.images.remove(name)
                self.command(f"dockyard rmi {name}")
            self.query_one("#images-table", VirtualTable).marked.clear()
            self.notify(f"removed {len(names)} image{'s' if len(names) != 1 else ''}")
            self.reload()

        self.app.push_screen(ConfirmScreen(f"Remove {len(names)} image(s)?", names),
                             self.after(remove, "images.remove"))
