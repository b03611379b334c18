"""`?`: every binding of the app and its views, with its id (for [keymap] in the config file)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label

from tui.screens.once import AnswerOnce
from tui.widgets.table import Column, Row, VirtualTable


class HelpScreen(AnswerOnce, ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,question_mark", "close", "Close", id="help.close")]

    def __init__(self, sections: Iterable[tuple[str, list[tuple[str, str, str]]]]) -> None:
        """``sections``: (title, [(keys, description, binding id)])."""
        super().__init__()
        self.sections = list(sections)

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog wide"):
            yield Label("Keys — remap any of them in the config file: [keymap] <id> = \"<key>\"", id="help-title",
                        markup=False)
            yield VirtualTable([Column("where", "Where", 12), Column("keys", "Keys", 16),
                                Column("what", "Action", None), Column("id", "Binding id", 28)],
                               markable=False, id="help-table")

    def on_mount(self) -> None:
        rows = [Row.make(f"{title}:{binding_id}", [title, keys, what, binding_id])
                for title, bindings in self.sections for keys, what, binding_id in bindings]
        table = self.query_one(VirtualTable)
        table.set_rows(rows)
        table.focus()

    def action_close(self) -> None:
        self.answer_once(None)
