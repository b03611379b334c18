"""3 Registry: registries, a repository list that pages in the background and filters instantly, tags with
what a pull would cost, manifest detail; pull, delete (with sibling tags), copy the reference."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Input, Label, Static

from tui import settings
from tui.engine_protocols import service
from tui.formatting import ago, human_size, short_id
from tui.screens.confirm import ConfirmScreen
from tui.screens.form import Field, FormScreen
from tui.screens.text import TextScreen
from tui.views.base import View
from tui.widgets.table import Column, Row, VirtualTable

TAG_DEBOUNCE = 0.15  # seconds
DETAILS_AHEAD = 30  # tags whose details load without being highlighted
REGISTRY_COLUMNS = (Column("registry", "REGISTRY", None),)
REPO_COLUMNS = (Column("repository", "REPOSITORY", None),)
TAG_COLUMNS = (
    Column("tag", "TAG", None), Column("digest", "DIGEST", 12), Column("size", "SIZE", 7, "right"),
    Column("platforms", "PLATFORMS", 11), Column("created", "CREATED", 8), Column("local", "LOCAL", 5),
    Column("pull", "PULL", 7, "right"),
)


def tag_cells(tag: str, details: Any | None, now: Any) -> list[str]:
    """A tag row; columns past the name stay empty until its details arrive."""
    if details is None:
        return [tag, "", "", "", "", "", ""]
    layers = len(getattr(details, "layers", ()) or ())
    local = getattr(details, "local_layers", 0)
    return [tag, short_id(str(details.digest)), human_size(details.size), ",".join(details.platforms),
            ago(details.created, now), f"{local}/{layers}", human_size(details.pull_bytes)]


def detail_text(reference: str, details: Any) -> Text:
    text = Text()
    text.append(f"{reference}\n", style="bold")
    rows = [("digest", str(details.digest)), ("media type", str(getattr(details, "media_type", "") or "-")),
            ("size", human_size(details.size)), ("platforms", ", ".join(details.platforms) or "-"),
            ("created", str(details.created or "-")),
            ("local", f"{details.local_layers} of {len(details.layers)} layers already in the store"),
            ("pull cost", human_size(details.pull_bytes))]
    for label, value in rows:
        text.append(f"{label:<11}", style="dim")
        text.append(f"{value}\n")
    for layer in details.layers:
        local = bool(getattr(layer, "local", False))
        text.append("  ● " if local else "  ○ ", style="green" if local else "yellow")
        text.append(f"{short_id(str(layer.digest))}  {human_size(layer.size):>8}\n")
    text.rstrip()
    return text


class RegistryView(View):
    TITLE = "Registry"
    MUTATING = frozenset({"pull", "delete", "add_registry", "login"})
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("p", "pull", "Pull", id="registry.pull"),
        Binding("d", "delete", "Delete", id="registry.delete"),
        Binding("y", "copy", "Copy ref", id="registry.copy"),
        Binding("i", "inspect", "Manifest", id="registry.inspect"),
        Binding("a", "add_registry", "Add registry", id="registry.add"),
        Binding("l", "login", "Log in", id="registry.login"),
        Binding("tab", "cycle", "Next pane", show=False, id="registry.cycle"),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.details: dict[str, Any] = {}  # full reference -> tag details
        self.repository: str | None = None
        self.loading = False

    def compose(self) -> ComposeResult:
        with Horizontal():
            with Vertical(id="registry-left"):
                yield VirtualTable(REGISTRY_COLUMNS, markable=False, empty="no registries — press a",
                                   id="registry-list")
                yield Input(placeholder="filter repositories…", classes="filter", id="repo-filter")
                yield Label("", id="repo-status")
                yield VirtualTable(REPO_COLUMNS, markable=False, empty="no repositories", id="repo-list")
            with Vertical(id="registry-right"):
                yield VirtualTable(TAG_COLUMNS, empty="select a repository", id="tag-list")
                with VerticalScroll(id="tag-detail-scroll", classes="detail"):
                    yield Static("", id="tag-detail")

    def on_mount(self) -> None:
        self.query_one("#repo-filter").display = False
        self.call_after_refresh(self.reload)

    def main_table(self) -> VirtualTable:
        return self.query_one("#repo-list", VirtualTable)

    def api(self) -> Any:
        return service(self.engine, "registry")

    # ---- loading -------------------------------------------------------------------------------------
    def reload(self) -> None:
        self.work(self._load_registries, "registry.registries", exclusive=True)

    def local_changed(self) -> None:
        """Local images changed: the LOCAL / PULL columns of the shown tags may be stale."""
        if self.repository:
            self.details.clear()
            self.load_tags(self.repository)

    async def _load_registries(self) -> None:
        api = self.api()
        known = list(self.dockyard.registries)
        if api is not None:
            known += [r for r in await api.known_registries() if r not in known]
        table = self.query_one("#registry-list", VirtualTable)
        table.set_rows([Row.make(r, [r]) for r in known])
        table.move_to(self.dockyard.active_registry)
        if self.dockyard.active_registry in known and api is not None:
            # A reload (after a push, a login, R) must refresh the repositories even when the cursor
            # already sat on the active registry and so no highlight event fires.
            self.load_repositories(self.dockyard.active_registry)
        if api is None:
            self.query_one("#repo-status", Label).update("registry service not available in this engine")

    def on_virtual_table_highlighted(self, message: VirtualTable.Highlighted) -> None:
        table_id = message.table.id
        if message.key is None:
            return
        if table_id == "registry-list":
            if message.key != self.dockyard.active_registry or not self.main_table().total_count:
                self.dockyard.set_active_registry(message.key)
                self.load_repositories(message.key)
        elif table_id == "repo-list":
            self.repository = message.key
            self.load_tags(message.key)
        elif table_id == "tag-list":
            self.work(lambda: self._detail(message.key or ""), "registry.detail", exclusive=True)

    def on_virtual_table_selected(self, message: VirtualTable.Selected) -> None:
        if message.table.id == "repo-list":
            self.query_one("#tag-list", VirtualTable).focus()
        elif message.table.id == "registry-list":
            self.main_table().focus()

    def load_repositories(self, registry: str) -> None:
        api = self.api()
        if api is None:
            return
        table = self.main_table()
        table.set_rows([], keep_cursor=False)
        self.query_one("#tag-list", VirtualTable).set_rows([])
        status = self.query_one("#repo-status", Label)

        async def load() -> None:
            count = 0
            status.update(f"{registry}: loading…")
            async for page in api.repositories(registry):
                table.append_rows([Row.make(f"{registry}/{name}", [name]) for name in page])
                count += len(page)
                status.update(f"{registry}: {count:,} repositories (loading…)")
                await asyncio.sleep(0)
            status.update(f"{registry}: {count:,} repositories")

        self.work(load, "registry.repositories", exclusive=True)

    def load_tags(self, repository: str) -> None:
        api = self.api()
        if api is None:
            return
        table = self.query_one("#tag-list", VirtualTable)
        table.set_rows([], keep_cursor=False)
        now = self.now()

        async def load() -> None:
            await asyncio.sleep(TAG_DEBOUNCE)  # arrowing through repositories loads only where it stops
            first: list[str] = []
            async for page in api.tags(repository):
                table.append_rows([Row.make(f"{repository}:{t}", tag_cells(t, None, now)) for t in page])
                first.extend(page[: DETAILS_AHEAD - len(first)])
            for tag in first:  # details for the first screenful in the background; the rest on demand
                reference = f"{repository}:{tag}"
                table.update_row(Row.make(reference, tag_cells(tag, await self._fetch(reference), now)))

        self.work(load, "registry.tags", exclusive=True)

    async def _fetch(self, reference: str) -> Any:
        if reference not in self.details:
            self.details[reference] = await self.api().tag_details(reference)
        return self.details[reference]

    async def _detail(self, reference: str) -> None:
        details = await self._fetch(reference)
        self.query_one("#tag-detail", Static).update(detail_text(reference, details))
        tag = reference.rsplit(":", 1)[1]
        self.query_one("#tag-list", VirtualTable).update_row(
            Row.make(reference, tag_cells(tag, details, self.now())))

    # ---- actions -------------------------------------------------------------------------------------
    def tags(self) -> list[str]:
        return self.query_one("#tag-list", VirtualTable).selection()

    def action_cycle(self) -> None:
        order = ["registry-list", "repo-list", "tag-list"]
        focused = self.app.focused
        current = order.index(focused.id) if focused is not None and focused.id in order else -1
        self.query_one(f"#{order[(current + 1) % len(order)]}", VirtualTable).focus()

    def action_pull(self) -> None:
        if not self.allowed("pull"):
            return
        for reference in self.tags():
            self.dockyard.start_pull(reference)

    def action_copy(self) -> None:
        references = self.tags()
        if not references:
            return
        self.app.copy_to_clipboard(references[0])
        self.notify(f"copied {references[0]}")

    def action_inspect(self) -> None:
        references = self.tags()
        if not references:
            return
        reference = references[0]

        async def show() -> None:
            data = await self.api().inspect(reference)
            self.command(f"dockyard registry inspect {reference}")
            self.app.push_screen(TextScreen.json(reference, data))

        self.work(show, "registry.inspect")

    def action_delete(self) -> None:
        references = self.tags()
        if not references or not self.allowed("delete"):
            return
        repository = references[0].rsplit(":", 1)[0]

        async def confirm() -> None:
            lines: list[str] = []
            for reference in references:
                siblings = await self.api().sibling_tags(reference)
                lines.append(f"  {reference}")
                lines.extend(f"  {repository}:{t}   (shares the digest, goes too)" for t in siblings
                             if f"{repository}:{t}" not in references)
            async def delete(confirmed: bool | None) -> None:
                await self._delete(confirmed, references, repository)

            self.app.push_screen(
                ConfirmScreen(f"Delete {len(references)} tag(s) and their manifests from the registry?", lines),
                self.after(delete, "registry.delete"))

        self.work(confirm, "registry.delete-check")

    async def _delete(self, confirmed: bool | None, references: list[str], repository: str) -> None:
        if not confirmed:
            return
        for reference in references:
            await self.api().delete(reference)
            self.command(f"dockyard registry rm {reference}")
        self.query_one("#tag-list", VirtualTable).marked.clear()
        self.details.clear()
        self.notify(f"deleted {len(references)} tag(s)")
        self.load_tags(repository)

    def action_add_registry(self) -> None:
        if not self.allowed("add_registry"):
            return

        async def add(values: dict[str, str] | None) -> None:
            if not values or not values["registry"].strip():
                return
            registry = values["registry"].strip()
            settings.save_registry(self.engine.config.config_file, registry)
            if registry not in self.dockyard.registries:
                self.dockyard.registries.append(registry)
            self.dockyard.set_active_registry(registry)
            self.notify(f"saved {registry} in {self.engine.config.config_file}")
            await self._load_registries()

        self.app.push_screen(FormScreen("Add a registry", [Field("registry", "Registry host[:port]",
                                                                 placeholder="registry.example.com")],
                                        submit="Add"), self.after(add, "registry.add"))

    def action_login(self) -> None:
        if self.allowed("login"):
            self.dockyard.prompt_login(self.dockyard.active_registry)
