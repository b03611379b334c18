"""The command palette (ctrl+p): Textual's, made safe against keys a fast user (or a paste) sends.

Found by tests/test_tui_monkey.py against Textual 8.2 (pinned in tests/test_tui_robustness.py):

* page up/down on a terminal a few rows tall: with no room to lay out its options the list has no lines,
  and ``OptionList._move_page`` looked the highlighted option up in that empty table (KeyError, the app
  ended).  Without room there is no page to move by: the keys do nothing until the list is laid out.
* enter, enter: the first one picks the only match and closes the palette; the second one, already
  queued, reached the closed palette, which dismissed itself again: the screen below was popped
  (ScreenStackError, the app ended) or the picked command ran twice.  A closed palette ignores them.
"""

from __future__ import annotations

from typing import Any

from textual.await_complete import AwaitComplete
from textual.command import CommandList, CommandPalette
from textual.message import Message
from textual.widgets import Button, Input, OptionList

PAGE_ACTIONS = frozenset({"page_up", "page_down"})


class Palette(CommandPalette):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.closed = False

    def _action_command_list(self, action: str) -> None:
        if action in PAGE_ACTIONS:
            commands = self.query(CommandList)
            if not commands or not commands.first().scrollable_content_region:
                return
        super()._action_command_list(action)

    def dismiss(self, result: Any = None) -> AwaitComplete:
        self.closed = True
        return super().dismiss(result)

    # Handlers named by convention run before CommandPalette's own; prevent_default() stops those.
    def on_input_submitted(self, event: Input.Submitted) -> None:
        self._ignore_when_closed(event)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self._ignore_when_closed(event)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self._ignore_when_closed(event)

    def _ignore_when_closed(self, event: Message) -> None:
        if self.closed or self.app.screen is not self:
            event.stop()
            event.prevent_default()
