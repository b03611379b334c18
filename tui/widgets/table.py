"""A virtual table: thousands of rows, only the visible ones rendered (line API), instant filtering.

Rows are plain strings; filtering is a substring match over a precomputed lower-case key, so
10,000 rows filter in a few milliseconds and a repaint draws only the lines on screen.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from rich.cells import set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    label: str
    width: int | None = None  # None: share the remaining width
    justify: str = "left"  # left | right


@dataclass(frozen=True, slots=True)
class Row:
    key: str
    cells: tuple[str, ...]
    style: str = ""  # a Rich style for the whole row ("green", "dim", "bold red")
    search: str = field(default="", compare=False)

    @staticmethod
    def make(key: str, cells: Sequence[str], style: str = "") -> Row:
        cells = tuple(cells)
        return Row(key, cells, style, " ".join(cells).lower())


class VirtualTable(ScrollView, can_focus=True):
    """A keyboard-first table with a fixed header, a cursor, marks (space) and a filter."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "cursor(-1)", "Up", show=False, id="table.up"),
        Binding("down", "cursor(1)", "Down", show=False, id="table.down"),
        Binding("pageup", "page(-1)", "Page up", show=False, id="table.page-up"),
        Binding("pagedown", "page(1)", "Page down", show=False, id="table.page-down"),
        Binding("home,g", "edge(0)", "First", show=False, id="table.first"),
        Binding("end,G", "edge(1)", "Last", show=False, id="table.last"),
        Binding("enter", "select", "Open", show=False, id="table.select"),
        Binding("space", "mark", "Mark", id="table.mark"),
    ]
    COMPONENT_CLASSES = {
        "virtual-table--header", "virtual-table--cursor", "virtual-table--marked", "virtual-table--empty",
    }
    DEFAULT_CSS = """
    VirtualTable { height: 1fr; }
    VirtualTable > .virtual-table--header { text-style: bold; background: $panel; color: $text; }
    VirtualTable > .virtual-table--cursor { background: $block-cursor-blurred-background; }
    VirtualTable:focus > .virtual-table--cursor { background: $block-cursor-background;
        color: $block-cursor-foreground; text-style: bold; }
    VirtualTable > .virtual-table--marked { color: $warning; text-style: bold; }
    VirtualTable > .virtual-table--empty { color: $text-muted; text-style: italic; }
    """

    class Highlighted(Message):
        def __init__(self, table: VirtualTable, key: str | None) -> None:
            super().__init__()
            self.table = table
            self.key = key

        @property
        def control(self) -> VirtualTable:
            return self.table

    class Selected(Highlighted):
        """enter (or a click on the highlighted row)."""

    cursor = reactive(0, init=False)

    def __init__(self, columns: Sequence[Column], *, empty: str = "nothing here", markable: bool = True,
                 name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.columns = tuple(columns)
        self.empty_text = empty
        self.markable = markable
        self._rows: list[Row] = []
        self._index: dict[str, int] = {}
        self._view: list[int] = []
        self._filter = ""
        self.marked: set[str] = set()
        self._widths: list[int] = [len(c.label) for c in self.columns]
        self._width_cache: tuple[object, list[int]] = (None, [])

    # ---- data (attributes down) -------------------------------------------------------------------
    def set_rows(self, rows: Iterable[Row], *, keep_cursor: bool = True) -> None:
        current = self.current_key if keep_cursor else None
        self._rows = list(rows)
        self._index = {r.key: i for i, r in enumerate(self._rows)}
        self.marked &= self._index.keys()
        self._measure(self._rows, reset=True)
        self._apply_filter(current)

    def append_rows(self, rows: Sequence[Row]) -> None:
        """Add rows (a page from the background); the cursor row and filter stay put."""
        start = len(self._rows)
        self._rows.extend(rows)
        self._index.update((r.key, start + i) for i, r in enumerate(rows))
        self._measure(rows, reset=False)
        needle = self._filter
        self._view.extend(i for i in range(start, len(self._rows)) if not needle or needle in self._rows[i].search)
        self._resize()
        if start == 0 and self._view:
            self._post_highlight()

    def filter(self, text: str) -> None:
        self._filter = text.strip().lower()
        self._apply_filter(self.current_key)

    @property
    def filter_text(self) -> str:
        return self._filter

    @property
    def row_count(self) -> int:
        return len(self._view)

    @property
    def total_count(self) -> int:
        return len(self._rows)

    @property
    def current_key(self) -> str | None:
        if not self._view:
            return None
        return self._rows[self._view[min(self.cursor, len(self._view) - 1)]].key

    @property
    def current_row(self) -> Row | None:
        if not self._view:
            return None
        return self._rows[self._view[min(self.cursor, len(self._view) - 1)]]

    def update_row(self, row: Row) -> bool:
        """Replace the row with the same key in place (no re-filter, no re-measure); False if absent."""
        index = self._index.get(row.key)
        if index is None:
            return False
        self._rows[index] = row
        self.refresh()
        return True

    def get_row(self, key: str) -> Row | None:
        index = self._index.get(key)
        return None if index is None else self._rows[index]

    def row_keys(self) -> list[str]:
        """Every row key (unfiltered), in order."""
        return [r.key for r in self._rows]

    def selection(self) -> list[str]:
        """Marked keys in table order, or the cursor row when nothing is marked."""
        if self.marked:
            return [r.key for r in self._rows if r.key in self.marked]
        key = self.current_key
        return [key] if key is not None else []

    def move_to(self, key: str) -> bool:
        for pos, index in enumerate(self._view):
            if self._rows[index].key == key:
                self.cursor = pos
                return True
        return False

    # ---- internals ---------------------------------------------------------------------------------
    def _measure(self, rows: Sequence[Row], *, reset: bool) -> None:
        if reset:
            self._widths = [len(c.label) for c in self.columns]
        widths = self._widths
        for i, column in enumerate(self.columns):
            if column.width is not None:
                widths[i] = column.width
                continue
            longest = max((len(r.cells[i]) for r in rows if i < len(r.cells)), default=0)
            widths[i] = min(max(widths[i], longest), 80)

    def _apply_filter(self, keep: str | None) -> None:
        needle = self._filter
        rows = self._rows
        self._view = [i for i, r in enumerate(rows) if needle in r.search] if needle else list(range(len(rows)))
        position = 0
        if keep is not None:
            for pos, index in enumerate(self._view):
                if rows[index].key == keep:
                    position = pos
                    break
        self._resize()
        self.set_reactive(VirtualTable.cursor, position)
        self._scroll_cursor_visible()
        self.refresh()
        self._post_highlight()

    def _resize(self) -> None:
        self.virtual_size = Size(max(self.size.width, 1), len(self._view) + 1)
        self.refresh()

    def _layout_widths(self, total: int) -> list[int]:
        widths = list(self._widths)
        flexible = [i for i, c in enumerate(self.columns) if c.width is None]
        used = sum(widths) + 2 * (len(widths) - 1) + 2
        if flexible:
            last = flexible[-1]
            widths[last] = max(6, widths[last] + total - used)
        return widths

    def _format(self, cells: Sequence[str], widths: list[int]) -> str:
        parts = []
        for i, column in enumerate(self.columns):
            text = cells[i] if i < len(cells) else ""
            width = widths[i]
            if len(text) > width:
                text = text[: max(0, width - 1)] + "…"
            parts.append(set_cell_size(text, width) if column.justify == "left" else text.rjust(width))
        return " " + "  ".join(parts) + " "

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if self._width_cache[0] != (width, tuple(self._widths)):
            self._width_cache = ((width, tuple(self._widths)), self._layout_widths(width))
        widths = self._width_cache[1]
        base = self.rich_style
        if y == 0:
            style = self.get_component_rich_style("virtual-table--header")
            text = self._format([c.label for c in self.columns], widths)
            return Strip([Segment(set_cell_size(text, width), base + style)], width)
        position = int(self.scroll_offset.y) + y - 1
        if not self._view:
            if y == 1:
                style = self.get_component_rich_style("virtual-table--empty")
                return Strip([Segment(set_cell_size(" " + self.empty_text, width), base + style)], width)
            return Strip.blank(width, base)
        if position >= len(self._view):
            return Strip.blank(width, base)
        row = self._rows[self._view[position]]
        style = base + Style.parse(row.style) if row.style else base
        marked = row.key in self.marked
        if marked:
            style += self.get_component_rich_style("virtual-table--marked")
        if position == self.cursor:
            style += self.get_component_rich_style("virtual-table--cursor")
        text = self._format(row.cells, widths)
        if marked:
            text = "•" + text[1:]
        return Strip([Segment(set_cell_size(text, width), style)], width)

    def on_resize(self) -> None:
        self._resize()

    def watch_cursor(self, old: int, new: int) -> None:
        top = int(self.scroll_offset.y)
        self._scroll_cursor_visible()
        if int(self.scroll_offset.y) == top:  # repaint just the two rows that changed
            self.refresh_line(old + 1)  # virtual line (the header is line 0)
            self.refresh_line(new + 1)
        else:
            self.refresh()
        self._post_highlight()

    def _post_highlight(self) -> None:
        self.post_message(self.Highlighted(self, self.current_key))

    def _scroll_cursor_visible(self) -> None:
        visible = max(1, self.size.height - 1)
        top = int(self.scroll_offset.y)
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False, immediate=True)
        elif self.cursor >= top + visible:
            self.scroll_to(y=self.cursor - visible + 1, animate=False, immediate=True)

    # ---- actions -----------------------------------------------------------------------------------
    def action_cursor(self, delta: int) -> None:
        if self._view:
            self.cursor = max(0, min(len(self._view) - 1, self.cursor + delta))

    def action_page(self, direction: int) -> None:
        self.action_cursor(direction * max(1, self.size.height - 2))

    def action_edge(self, end: int) -> None:
        if self._view:
            self.cursor = len(self._view) - 1 if end else 0

    def action_select(self) -> None:
        if self._view:
            self.post_message(self.Selected(self, self.current_key))

    def action_mark(self) -> None:
        key = self.current_key
        if key is None or not self.markable:
            return
        self.marked.symmetric_difference_update({key})
        self.refresh()
        self.action_cursor(1)

    def on_click(self, event: events.Click) -> None:
        position = int(self.scroll_offset.y) + event.y - 1
        if event.y == 0 or not 0 <= position < len(self._view):
            return
        if position == self.cursor and event.chain >= 2:
            self.action_select()
        else:
            self.cursor = position
