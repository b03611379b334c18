"""Dialogs answer once. Keys a fast user (or a paste) queues while a dialog closes reach it again —
`escape n` on a confirmation dismissed it twice and Textual raised InvalidStateError, ending the app
(found by tests/test_tui_monkey.py). The first answer wins; later ones are ignored."""

from __future__ import annotations

from typing import Any


class AnswerOnce:
    _answered = False

    def answer_once(self, result: Any = None) -> None:
        if self._answered:
            return
        self._answered = True
        self.dismiss(result)  # type: ignore[attr-defined]
