"""The one-line context bar: store, runtime, active registry, read-only flag."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class ContextBar(Static):
    DEFAULT_CSS = """
    ContextBar { height: 1; background: $primary-background; color: $text; padding: 0 1; }
    """

    def show(self, *, store: str, runtime: str, registry: str, read_only: bool) -> None:
        text = Text()
        text.append("dockyard", style="bold")
        for label, value in (("store", store), ("runtime", runtime), ("registry", registry)):
            text.append(f"  {label} ", style="dim")
            text.append(value)
        if read_only:
            text.append("  READ-ONLY", style="bold reverse")
        self.update(text)
