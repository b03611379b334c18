"""A log view on the line API: keeps up to ``max_lines`` lines and renders only the visible ones.

Follows the tail (unless the user scrolled up), searches with highlight (n / N jump), toggles
timestamps and wrapping. Wrapping is computed per line on demand and cached for the current width.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

from rich.cells import set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip


@dataclass(frozen=True, slots=True)
class LogEntry:
    text: str
    time: str = ""  # RFC 3339
    source: str = ""  # container name in the merged log, "" otherwise
    style: str = ""  # "red" for stderr, "bold" for step headers, ...


class LogView(ScrollView, can_focus=True):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "scroll_lines(-1)", "Up", show=False, id="log.up"),
        Binding("down", "scroll_lines(1)", "Down", show=False, id="log.down"),
        Binding("pageup", "scroll_lines(-20)", "Page up", show=False, id="log.page-up"),
        Binding("pagedown", "scroll_lines(20)", "Page down", show=False, id="log.page-down"),
        Binding("home,g", "top", "Top", show=False, id="log.top"),
        Binding("end,G", "tail", "Follow", show=False, id="log.follow"),
        Binding("n", "next_match(1)", "Next match", show=False, id="log.next-match"),
        Binding("N", "next_match(-1)", "Previous match", show=False, id="log.previous-match"),
    ]
    COMPONENT_CLASSES = {"log-view--match", "log-view--time", "log-view--source", "log-view--current"}
    DEFAULT_CSS = """
    LogView { height: 1fr; }
    LogView > .log-view--match { background: $warning 60%; color: $text; }
    LogView > .log-view--current { background: $accent; color: $text; }
    LogView > .log-view--time { color: $text-muted; }
    LogView > .log-view--source { color: $secondary; text-style: bold; }
    """

    def __init__(self, *, max_lines: int = 50_000, name: str | None = None, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.max_lines = max_lines
        self.entries: list[LogEntry] = []
        self.timestamps = False
        self.wrap = False
        self.follow = True
        self.search = ""
        self._current_match: int | None = None
        self._rows: list[tuple[int, int]] = []  # (entry index, wrapped piece) when wrapping
        self._rows_width = 0
        self._widest = 0

    # ---- data --------------------------------------------------------------------------------------
    def clear(self) -> None:
        self.entries.clear()
        self._rows.clear()
        self._widest = 0
        self._current_match = None
        self._relayout()

    def write(self, entry: LogEntry) -> None:
        self.extend([entry])

    def extend(self, entries: Iterable[LogEntry]) -> None:
        new = list(entries)
        if not new:
            return
        self.entries.extend(new)
        overflow = len(self.entries) - self.max_lines
        if overflow > 0:
            del self.entries[:overflow]
            self._rows_width = 0  # the wrap index shifted: rebuild lazily
        for entry in new:
            self._widest = max(self._widest, len(self._prefix(entry)) + len(entry.text))
        if self.wrap and self._rows_width:
            start = len(self.entries) - len(new)
            for index in range(start, len(self.entries)):
                self._rows.extend((index, piece) for piece in range(self._pieces(index)))
        self._relayout()
        if self.follow:
            self.call_after_refresh(self._tail)

    def _tail(self) -> None:
        if self.follow:
            self.scroll_to(y=self.max_scroll_y, animate=False, immediate=True)

    def set_options(self, *, timestamps: bool | None = None, wrap: bool | None = None) -> None:
        """Toggle timestamps / wrapping; the line at the top stays at the top (unless following)."""
        row = int(self.scroll_offset.y)
        top = (self._rows[row][0] if row < len(self._rows) else 0) if self.wrap and self._rows_width else row
        if timestamps is not None:
            self.timestamps = timestamps
        if wrap is not None:
            self.wrap = wrap
        self._rows_width = 0
        self._widest = max((len(self._prefix(e)) + len(e.text) for e in self.entries), default=0)
        self._relayout()
        if self.follow:
            self.call_after_refresh(self._tail)
        elif self.entries:
            self.scroll_to_entry(min(top, len(self.entries) - 1))

    def set_search(self, text: str) -> int:
        """Highlight ``text``; jump to its last occurrence. Returns the number of matching lines."""
        self.search = text
        self._current_match = None
        if text:
            self.follow = False
            self.action_next_match(-1)
        self.refresh()
        return sum(1 for e in self.entries if text and text.lower() in e.text.lower())

    def scroll_to_entry(self, index: int) -> None:
        self.follow = False
        row = index
        if self.wrap:
            self._ensure_rows()
            row = next((r for r, (i, piece) in enumerate(self._rows) if i == index and piece == 0), 0)
        self.scroll_to(y=row, animate=False, immediate=True)
        self.refresh()

    # ---- layout ------------------------------------------------------------------------------------
    def _prefix(self, entry: LogEntry) -> str:
        prefix = ""
        if entry.source:
            prefix += f"{entry.source} | "
        if self.timestamps and entry.time:
            prefix += entry.time + " "
        return prefix

    def _pieces(self, index: int) -> int:
        entry = self.entries[index]
        width = max(1, self._rows_width)
        total = len(self._prefix(entry)) + len(entry.text)
        return max(1, -(-total // width))

    def _ensure_rows(self) -> None:
        width = max(1, self.size.width - 1)
        if self._rows_width == width:
            return
        self._rows_width = width
        self._rows = [(index, piece) for index in range(len(self.entries)) for piece in range(self._pieces(index))]

    def _relayout(self) -> None:
        if self.wrap:
            self._ensure_rows()
            self.virtual_size = Size(self.size.width, len(self._rows))
        else:
            self.virtual_size = Size(self._widest + 1, len(self.entries))
        self.refresh()

    def on_resize(self) -> None:
        self._relayout()

    # ---- rendering ---------------------------------------------------------------------------------
    def render_line(self, y: int) -> Strip:
        width = self.size.width
        base = self.rich_style
        row = int(self.scroll_offset.y) + y
        if self.wrap:
            self._ensure_rows()
            if row >= len(self._rows):
                return Strip.blank(width, base)
            index, piece = self._rows[row]
        else:
            if row >= len(self.entries):
                return Strip.blank(width, base)
            index, piece = row, 0
        entry = self.entries[index]
        segments = self._segments(entry, index, base)
        strip = Strip(segments)
        if self.wrap:
            start = piece * self._rows_width
            strip = strip.crop(start, start + self._rows_width)
        else:
            x = int(self.scroll_offset.x)
            strip = strip.crop(x, x + width)
        return strip.extend_cell_length(width, base)

    def _segments(self, entry: LogEntry, index: int, base: Style) -> list[Segment]:
        segments: list[Segment] = []
        if entry.source:
            segments.append(Segment(f"{entry.source} | ", base + self.get_component_rich_style("log-view--source")))
        if self.timestamps and entry.time:
            segments.append(Segment(entry.time + " ", base + self.get_component_rich_style("log-view--time")))
        style = base + Style.parse(entry.style) if entry.style else base
        text = entry.text
        needle = self.search.lower()
        if not needle or needle not in text.lower():
            segments.append(Segment(text, style))
            return segments
        match_style = self.get_component_rich_style(
            "log-view--current" if index == self._current_match else "log-view--match")
        lower = text.lower()
        position = 0
        while True:
            found = lower.find(needle, position)
            if found < 0:
                segments.append(Segment(text[position:], style))
                break
            segments.append(Segment(text[position:found], style))
            segments.append(Segment(text[found:found + len(needle)], style + match_style))
            position = found + len(needle)
        return segments

    # ---- actions -----------------------------------------------------------------------------------
    def action_scroll_lines(self, delta: int) -> None:
        self.follow = False
        self.scroll_relative(y=delta, animate=False)

    def action_top(self) -> None:
        self.follow = False
        self.scroll_home(animate=False)

    def action_tail(self) -> None:
        self.follow = True
        self.scroll_end(animate=False)

    def action_next_match(self, direction: int) -> None:
        needle = self.search.lower()
        if not needle or not self.entries:
            return
        count = len(self.entries)
        start = self._current_match if self._current_match is not None else (count if direction < 0 else -1)
        for step in range(1, count + 1):
            index = (start + direction * step) % count
            if needle in self.entries[index].text.lower():
                self._current_match = index
                self.scroll_to_entry(index)
                return

    def visible_text(self) -> list[str]:
        """The plain text of the lines on screen (for tests)."""
        return [set_cell_size(self.render_line(y).text, self.size.width).rstrip() for y in range(self.size.height)]
