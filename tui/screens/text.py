"""Read-only text in a modal: inspect JSON, manifests, the command log."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from tui.screens.once import AnswerOnce


class TextScreen(AnswerOnce, ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q", "close", "Close", id="text.close")]

    def __init__(self, title: str, text: str, *, language: str | None = None) -> None:
        super().__init__()
        self.title_text = title
        self.text = text
        self.language = language

    @classmethod
    def json(cls, title: str, data: Any) -> TextScreen:
        return cls(title, json.dumps(data, indent=2, sort_keys=False), language="json")

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog wide"):
            yield Label(self.title_text, id="text-title")
            with VerticalScroll(id="text-body"):
                from rich.syntax import Syntax  # pygments: loaded when a dialog first needs it

                body = Syntax(self.text, self.language, theme="ansi_dark", word_wrap=True) if self.language \
                    else self.text
                yield Static(body, markup=False, id="text-content")

    def on_mount(self) -> None:
        self.query_one("#text-body").focus()

    def action_close(self) -> None:
        self.answer_once(None)
