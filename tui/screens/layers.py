"""The layer file browser (in the spirit of dive): per layer, the files it adds, changes or deletes;
what the image wastes; export a file from a layer."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Label, Tree
from textual.worker import Worker

from engine.summaries import LayerSummary
from tui.engine_protocols import ImageChangesLike
from tui.formatting import human_size
from tui.layerfiles import Node, tree
from tui.screens.form import Field, FormScreen
from tui.screens.once import AnswerOnce
from tui.widgets.table import Column, Row, VirtualTable

if TYPE_CHECKING:
    from tui.app import DockyardApp

LAYER_COLUMNS = (Column("n", "#", 3, "right"), Column("size", "SIZE", 8, "right"),
                 Column("files", "FILES", 6, "right"), Column("created_by", "CREATED BY", None))
WASTE_COLUMNS = (Column("count", "COPIES", 6, "right"), Column("bytes", "WASTED", 8, "right"),
                 Column("path", "PATH", None))
KIND_STYLE = {"added": ("+", "green"), "modified": ("~", "yellow"), "deleted": ("-", "red")}


def node_label(node: Node) -> Text:
    mark, style = KIND_STYLE.get(node.kind, (" ", ""))
    text = Text()
    text.append(f"{mark} ", style=style)
    text.append(node.name + ("/" if node.children else ""), style=style or "bold")
    size = node.total
    if size:
        text.append(f"  {human_size(size)}", style="dim")
    return text


class LayersScreen(AnswerOnce, Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="layers.back"),
        Binding("x", "export", "Export file", id="layers.export"),
        Binding("tab", "cycle", "Next pane", show=False, id="layers.cycle"),
    ]

    def __init__(self, image: str) -> None:
        super().__init__()
        self.image = image
        self.layer_list: list[LayerSummary] = []
        self.changes: ImageChangesLike | None = None
        self.layer_of: dict[str, int] = {}  # row key -> index among the layers that have a blob

    @property
    def dockyard(self) -> DockyardApp:
        from tui.app import DockyardApp

        assert isinstance(self.app, DockyardApp)
        return self.app

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.dockyard.on_worker_state_changed(event)

    def compose(self) -> ComposeResult:
        yield Label(f"layers of {self.image}", id="layers-title")
        with Horizontal():
            with Vertical(id="layers-left"):
                yield VirtualTable(LAYER_COLUMNS, markable=False, id="layers-table")
                yield Label("", id="waste-summary")
                yield VirtualTable(WASTE_COLUMNS, markable=False, empty="nothing wasted", id="waste-table")
            tree_widget: Tree[Node] = Tree("/", id="layer-files")
            tree_widget.show_root = False
            yield tree_widget
        yield Footer()

    def on_mount(self) -> None:
        self.run_worker(self._load(), name="layers.load", exit_on_error=False)
        self.query_one("#layers-table", VirtualTable).focus()

    async def _load(self) -> None:
        images = self.dockyard.engine.images
        self.layer_list = await images.layers(self.image)
        self.changes = await images.layer_changes(self.image)
        changes = self.changes
        rows = []
        blob_index = 0
        for index, layer in enumerate(self.layer_list):
            files = ""
            key = f"empty-{index}"
            if not layer.empty_layer:
                key = f"layer-{blob_index}"
                self.layer_of[key] = blob_index
                if blob_index < len(changes.layers):
                    files = str(len(changes.layers[blob_index].changes))
                blob_index += 1
            rows.append(Row.make(key, [str(index), "" if layer.empty_layer else human_size(layer.size), files,
                                       " ".join(layer.created_by.split())], "dim" if layer.empty_layer else ""))
        self.query_one("#layers-table", VirtualTable).set_rows(rows, keep_cursor=False)
        efficiency = 1.0 if not changes.total_size else 1 - changes.wasted_bytes / changes.total_size
        self.query_one("#waste-summary", Label).update(
            f"wasted {human_size(changes.wasted_bytes)} of {human_size(changes.total_size)} "
            f"({efficiency:.2%} efficient) in {len(changes.inefficiencies)} path(s)")
        self.query_one("#waste-table", VirtualTable).set_rows(
            [Row.make(w.path, [str(w.versions), human_size(w.wasted_bytes), "/" + w.path.lstrip("/")])
             for w in changes.inefficiencies])

    def on_virtual_table_highlighted(self, message: VirtualTable.Highlighted) -> None:
        if message.table.id != "layers-table" or message.key is None:
            return
        widget: Tree[Node] = self.query_one("#layer-files", Tree)
        widget.clear()
        index = self.layer_of.get(message.key)
        if index is None or self.changes is None or index >= len(self.changes.layers):
            widget.root.label = "this step adds no layer"
            return
        layer = self.changes.layers[index]
        widget.root.label = f"layer {index}: {len(layer.changes)} changes"
        self._add(widget.root, tree(layer), depth=0)
        widget.root.expand()

    def _add(self, parent: Any, node: Node, depth: int) -> None:
        for child in sorted(node.children.values(), key=lambda n: (not n.children, n.name)):
            if child.children:
                branch = parent.add(node_label(child), data=child, expand=depth < 1)
                self._add(branch, child, depth + 1)
            else:
                parent.add_leaf(node_label(child), data=child)

    def on_virtual_table_selected(self, message: VirtualTable.Selected) -> None:
        if message.table.id == "layers-table":
            self.query_one("#layer-files", Tree).focus()

    def action_cycle(self) -> None:
        self.focus_next()

    def action_back(self) -> None:
        self.answer_once(None)

    def action_export(self) -> None:
        widget: Tree[Node] = self.query_one("#layer-files", Tree)
        cursor = widget.cursor_node
        layer = self.layer_of.get(self.query_one("#layers-table", VirtualTable).current_key or "")
        if cursor is None or cursor.data is None or layer is None:
            self.notify("select a file in the layer's tree first", severity="warning")
            return
        node = cursor.data
        if node.kind == "deleted" or node.children:
            self.notify("pick a file the layer adds or changes", severity="warning")
            return
        if self.dockyard.read_only:
            self.notify("read-only mode: export is disabled", severity="warning")
            return
        images = self.dockyard.engine.images

        async def export(values: dict[str, str] | None) -> None:
            if not values or not values["dest"].strip():
                return
            dest = Path(values["dest"].strip())
            written = await images.export_file(self.image, layer, node.path, dest)
            self.dockyard.record_command(f"# (no CLI verb yet) export {node.path} from layer {layer} "
                                         f"of {self.image} to {dest}")
            self.notify(f"wrote {human_size(written)} to {dest}")

        def callback(values: dict[str, str] | None) -> None:
            self.run_worker(export(values), name="layers.export", exit_on_error=False)

        self.app.push_screen(FormScreen(f"Export {node.path}", [
            Field("dest", "Save as", str(Path.cwd() / Path(node.path).name))], submit="Export"), callback)
