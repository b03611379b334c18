"""The dockyard workbench: six views in tabs, a context bar, operations, footer, palette, help."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.lazy import Lazy
from textual.widgets import Footer, TabbedContent, TabPane
from textual.worker import Worker, WorkerState

from engine.errors import AuthenticationError, EngineError
from engine.events import BuildFinished, ImageStored, TransferFinished
from tui import messages as m
from tui.bridge import pump, pump_operation
from tui.commands import ActionsProvider
from tui.engine_protocols import service
from tui.screens.form import Field, FormScreen
from tui.screens.help import HelpScreen
from tui.screens.text import TextScreen
from tui.views.base import View
from tui.views.build import BuildView
from tui.views.containers import ContainersView
from tui.views.images import ImagesView
from tui.views.ports import PortsView
from tui.views.registry import RegistryView
from tui.views.watch import WatchView
from tui.widgets.header import ContextBar
from tui.widgets.logview import LogView
from tui.widgets.progress import OperationsPanel
from tui.widgets.table import VirtualTable

VIEWS: tuple[tuple[str, type[View]], ...] = (
    ("images", ImagesView), ("build", BuildView), ("registry", RegistryView),
    ("containers", ContainersView), ("ports", PortsView), ("watch", WatchView),
)
DEFAULT_REGISTRY = "localhost:5000"


def utc_now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


class DockyardApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "dockyard"
    COMMANDS = App.COMMANDS | {ActionsProvider}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit", id="app.quit"),
        Binding("question_mark", "help", "Help", id="app.help"),
        Binding("L", "command_log", "Command log", id="app.command-log"),
        *[Binding(str(n), f"show_view('{view_id}')", view.TITLE, show=False, id=f"app.view-{view_id}")
          for n, (view_id, view) in enumerate(VIEWS, start=1)],
    ]

    def __init__(self, engine: Any, *, read_only: bool = False, clock: Callable[[], _dt.datetime] = utc_now,
                 keymap: dict[str, str] | None = None, registries: list[str] | None = None,
                 bootstrap: Callable[[DockyardApp], Any] | None = None, poll_interval: float = 2.0,
                 port_probe: Callable[[str, int], Awaitable[bool]] | None = None) -> None:
        super().__init__()
        self.engine = engine
        self.read_only = read_only
        self.clock = clock
        self.commands: list[str] = []
        self.user_keymap = dict(keymap or {})
        self.registries = list(registries or [])
        self.active_registry = DEFAULT_REGISTRY if DEFAULT_REGISTRY in self.registries or not self.registries \
            else self.registries[0]
        self.bootstrap = bootstrap
        self.poll_interval = poll_interval  # seconds between stats samples
        self.port_probe = port_probe  # does host:port answer? (None: a TCP connect; tests pass their own)

    def compose(self) -> ComposeResult:
        yield ContextBar(id="context")
        with TabbedContent(id="views"):
            for n, (view_id, view_class) in enumerate(VIEWS, start=1):
                with TabPane(f"{n} {view_class.TITLE}", id=view_id):
                    view = view_class(id=f"view-{view_id}")
                    yield view if n == 1 else Lazy(view)  # hidden tabs mount after the first frame
        yield OperationsPanel(id="operations")
        yield Footer()

    def on_mount(self) -> None:
        if self.user_keymap:
            self.set_keymap(self.user_keymap)
        self.show_context()
        self.call_after_refresh(self.start_background)  # the first frame comes before engine imports

    def start_background(self) -> None:
        containers = service(self.engine, "containers")
        if containers is not None and hasattr(containers, "events"):
            self.run_worker(pump("events", containers.events(), self), name="containers.events",
                            group="events", exit_on_error=False)
        if self.bootstrap is not None:
            self.run_worker(self.bootstrap(self), name="bootstrap", group="bootstrap", exit_on_error=False)

    def show_context(self) -> None:
        config = self.engine.config
        self.query_one(ContextBar).show(store=str(config.store_dir), runtime=str(config.runtime),
                                        registry=self.active_registry, read_only=self.read_only)

    def set_active_registry(self, registry: str) -> None:
        self.active_registry = registry
        self.show_context()

    # ---- views -------------------------------------------------------------------------------------
    def view(self, view_id: str) -> View:
        return self.query_one(f"#view-{view_id}", View)

    def views(self, *view_ids: str) -> Iterator[View]:
        """The mounted ones among ``view_ids`` (hidden tabs mount just after the first frame)."""
        for view_id in view_ids:
            found = self.query(f"#view-{view_id}")
            if found:
                yield found.first(View)

    def action_show_view(self, view_id: str) -> None:
        self.query_one(TabbedContent).active = view_id
        for view in self.views(view_id):
            view.focus_main()

    async def run_view_action(self, view_id: str, action: str) -> None:
        if view_id == "*":
            view_id = str(self.query_one(TabbedContent).active)
        if view_id:
            self.action_show_view(view_id)
            await self.view(view_id).run_action(action)
        else:
            await self.run_action(action)

    # ---- bindings (help, palette) ------------------------------------------------------------------
    def all_bindings(self) -> Iterator[tuple[str, str, str, str, str, str]]:
        """(view id, section, action, description, binding id, default key) for every binding with an id.

        The view id is "" for app actions, "*" for keys every view shares (run on the active view) and
        "-" for keys of a widget (tables, logs: not palette commands).
        """
        sections: list[tuple[str, str, type[Any]]] = [("", "App", type(self)), ("*", "Views", View)]
        sections += [(view_id, view.TITLE, view) for view_id, view in VIEWS]
        sections += [("-", "Tables", VirtualTable), ("-", "Logs", LogView)]
        for view_id, title, cls in sections:
            for binding in cls.__dict__.get("BINDINGS", []):
                if isinstance(binding, Binding) and binding.id:
                    yield view_id, title, binding.action, binding.description, binding.id, binding.key

    def key_for(self, binding_id: str, default: str) -> str:
        keys = self._keymap.get(binding_id, default)
        return ", ".join(self.get_key_display(Binding(k.strip(), "")) for k in keys.split(","))

    def help_sections(self) -> list[tuple[str, list[tuple[str, str, str]]]]:
        grouped: dict[str, list[tuple[str, str, str]]] = {}
        for _, title, _action, description, binding_id, key in self.all_bindings():
            grouped.setdefault(title, []).append((self.key_for(binding_id, key), description, binding_id))
        grouped["App"].append(("ctrl+p", "Command palette (every action)", "app.command-palette"))
        return list(grouped.items())

    async def action_quit(self) -> None:
        """q / ctrl+q: a running watch loop is stopped first, so its container does not outlive the app."""
        for view in self.views("watch"):
            await view.stop_and_wait()  # type: ignore[attr-defined]
        self.exit()

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.help_sections()))

    def action_command_palette(self) -> None:
        from tui.screens.palette import Palette

        if self.use_command_palette and not isinstance(self.screen, Palette):
            self.push_screen(Palette(id="--command-palette"))

    def action_command_log(self) -> None:
        text = "\n".join(self.commands) or "# nothing yet: actions you take show their CLI equivalent here"
        self.push_screen(TextScreen("Command log (CLI equivalents)", text, language="bash"))

    # ---- messages up ---------------------------------------------------------------------------------
    def on_command_issued(self, message: m.CommandIssued) -> None:
        self.record_command(message.command)

    def record_command(self, line: str) -> None:
        self.commands.append(line)
        self.query_one(OperationsPanel).show_command(line)

    def on_transfer_update(self, message: m.TransferUpdate) -> None:
        self.query_one(OperationsPanel).feed(message.op, message.event)

    def on_build_update(self, message: m.BuildUpdate) -> None:
        if not message.op.startswith("watch "):  # the Watch view shows the loop's own rebuilds
            self.query_one(OperationsPanel).feed(message.op, message.event)
        if isinstance(message.event, BuildFinished):
            self.images_changed()

    def on_note(self, message: m.Note) -> None:
        if isinstance(message.event, ImageStored):
            self.images_changed()

    def on_operation_ended(self, message: m.OperationEnded) -> None:
        self.query_one(OperationsPanel).finish(message.op)
        if message.error is None:
            self.notify(f"{message.op}: done", timeout=3)

    def on_images_changed(self, message: m.ImagesChanged) -> None:
        self.images_changed()

    def images_changed(self) -> None:
        for view in self.views("images"):
            view.reload()
        for view in self.views("registry"):
            view.local_changed()

    def on_containers_changed(self, message: m.ContainersChanged) -> None:
        self.containers_changed()

    def on_container_update(self, message: m.ContainerUpdate) -> None:
        self.containers_changed()

    def containers_changed(self) -> None:
        for view in self.views("containers", "ports"):
            view.reload()

    # ---- the one error handler -----------------------------------------------------------------------
    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Workers report to the node that started them (the message does not bubble): views and screens
        forward theirs here."""
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            self.report_error(event.worker.error, event.worker.name)

    def report_error(self, error: BaseException, where: str = "") -> None:
        """Every failure the user meets ends here: one line in a notification, never a crash."""
        text = str(error) if isinstance(error, EngineError) else f"{type(error).__name__}: {error}"
        text = " ".join(text.split())
        self.notify(text, title=where or "error", severity="error", timeout=8)
        if isinstance(error, AuthenticationError):
            self.prompt_login(self.active_registry)

    # ---- long operations (they outlive the view that started them) ---------------------------------
    def start_pull(self, reference: str) -> None:
        registry = service(self.engine, "registry")
        if registry is None:
            self.notify("the registry service is not available in this engine", severity="warning")
            return
        op = f"pull {reference}"
        self.record_command(f"dockyard pull {reference}")
        self.run_worker(self._transfer(op, lambda: registry.pull(reference)), name=op, group="transfers",
                        exit_on_error=False)

    def start_push(self, reference: str, *, source: str | None = None) -> None:
        registry = service(self.engine, "registry")
        if registry is None:
            self.notify("the registry service is not available in this engine", severity="warning")
            return
        op = f"push {reference}"

        async def job() -> None:
            from_image = source if source and source != reference else None
            self.record_command(" ".join(["dockyard push", *([from_image] if from_image else []), reference]))
            await self._transfer(op, lambda: registry.push(reference, source=from_image))
            for view in self.views("registry"):
                view.reload()

        self.run_worker(job(), name=op, group="transfers", exit_on_error=False)

    async def _transfer(self, op: str, start: Callable[[], Any]) -> None:
        self.query_one(OperationsPanel).operation(op)
        terminal = await pump_operation(op, start(), self)
        if any(isinstance(e, TransferFinished | ImageStored) for e in terminal):
            self.images_changed()

    def prompt_login(self, registry: str) -> None:
        api = service(self.engine, "registry")
        if api is None or self.read_only:
            return

        async def login(values: dict[str, str] | None) -> None:
            if not values:
                return
            await api.login(values["registry"], values["username"], values["password"])
            self.record_command(f"dockyard login {values['registry']} -u {values['username']} --password-stdin")
            self.notify(f"logged in to {values['registry']}")
            for view in self.views("registry"):
                view.reload()

        def callback(values: dict[str, str] | None) -> None:
            self.run_worker(login(values), name="registry.login", exit_on_error=False)

        self.push_screen(FormScreen(f"Log in to {registry}", [
            Field("registry", "Registry", registry), Field("username", "Username"),
            Field("password", "Password", password=True)], submit="Log in"), callback)


def make_app(engine: Any, **options: Any) -> DockyardApp:
    """The one app factory: `dockyard`, the tests, the screenshots and the benchmark all use it."""
    return DockyardApp(engine, **options)


def run_app(root: str | None = None, read_only: bool = False) -> None:
    """`dockyard` with no argument."""
    from engine.api import Engine
    from engine.config import EngineConfig
    from tui import settings
    from tui.bootstrap import first_run

    config = EngineConfig.from_env(Path(root) if root else None)
    engine = Engine(config)
    registries = list(dict.fromkeys([DEFAULT_REGISTRY, *config.registries,
                                     *settings.saved_registries(config.config_file)]))
    app = make_app(engine, read_only=read_only, keymap=settings.keymap(config.config_file),
                   registries=registries, bootstrap=None if read_only else first_run)
    app.run()
