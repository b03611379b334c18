"""What every view shares: access to the engine, workers that never crash the app, the filter bar,
read-only gating and the command log."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import Input
from textual.worker import Worker

from tui.messages import CommandIssued
from tui.widgets.table import VirtualTable

if TYPE_CHECKING:
    from tui.app import DockyardApp

T = TypeVar("T")


class View(Vertical):
    """A tab of the app. Subclasses set TITLE, MUTATING (actions hidden in read-only mode), and
    implement :meth:`reload`."""

    TITLE: ClassVar[str] = ""
    MUTATING: ClassVar[frozenset[str]] = frozenset()
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "filter", "Filter", id="view.filter"),
        Binding("escape", "back", "Back", show=False, id="view.back"),
        Binding("R", "reload", "Reload", show=False, id="view.reload"),
    ]

    @property
    def dockyard(self) -> DockyardApp:
        from tui.app import DockyardApp

        app = self.app
        assert isinstance(app, DockyardApp)
        return app

    @property
    def engine(self) -> Any:
        return self.dockyard.engine

    def now(self) -> _dt.datetime:
        return self.dockyard.clock()

    # ---- lifecycle ---------------------------------------------------------------------------------
    def reload(self) -> None:
        """(Re)load this view's data in a worker."""

    def local_changed(self) -> None:
        """The local image store changed (views that show what is local override this)."""

    def action_reload(self) -> None:
        self.reload()

    def on_show(self) -> None:
        self.focus_main()

    def focus_main(self) -> None:
        table = self.main_table()
        if table is not None:
            table.focus()

    def main_table(self) -> VirtualTable | None:
        tables = list(self.query(VirtualTable))
        return tables[0] if tables else None

    # ---- workers -----------------------------------------------------------------------------------
    def work(self, job: Callable[[], Awaitable[Any]], name: str, *, exclusive: bool = False,
             group: str | None = None) -> Worker[Any]:
        """Run an engine call in a named worker. A failure becomes a notification (App handler)."""

        async def runner() -> Any:  # the coroutine is made only when the worker starts
            return await job()

        return self.run_worker(runner, name=name, group=group or name, exclusive=exclusive, exit_on_error=False)

    def after(self, job: Callable[[T], Awaitable[Any]], name: str) -> Callable[[T], None]:
        """A modal's callback that runs ``job(result)`` in a worker."""

        def callback(result: T) -> None:
            self.work(lambda: job(result), name)

        return callback

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.dockyard.on_worker_state_changed(event)

    def command(self, line: str) -> None:
        """Record the CLI equivalent of what the user just did."""
        self.post_message(CommandIssued(line))

    def allowed(self, action: str) -> bool:
        if self.dockyard.read_only and action in self.MUTATING:
            self.notify(f"read-only mode: {action} is disabled", severity="warning")
            return False
        return True

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in self.MUTATING and self.dockyard.read_only:
            return None  # shown disabled in the footer
        return True

    # ---- filter ------------------------------------------------------------------------------------
    def filter_input(self) -> Input | None:
        inputs = [i for i in self.query(Input) if i.has_class("filter")]
        return inputs[0] if inputs else None

    def action_filter(self) -> None:
        box = self.filter_input()
        if box is None:
            return
        box.display = True
        box.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.has_class("filter"):
            event.stop()
            self.apply_filter(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.has_class("filter"):
            event.stop()
            self.focus_main()

    def apply_filter(self, text: str) -> None:
        table = self.main_table()
        if table is not None:
            table.filter(text)

    def action_back(self) -> None:
        box = self.filter_input()
        if box is not None and (box.has_focus or box.value):
            box.value = ""
            box.display = False
            self.apply_filter("")
        self.focus_main()
