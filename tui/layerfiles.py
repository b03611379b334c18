"""Pure helpers for the layer file browser: a tree of one layer's changes, and what an image wastes
(bytes a layer stores for a path that a later layer overwrites or deletes)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from tui.engine_protocols import LayerChangesLike


@dataclass(frozen=True, slots=True)
class Wasted:
    path: str
    count: int  # how many layers stored a copy that is not the final one
    bytes: int


@dataclass
class Node:
    name: str
    path: str
    kind: str = ""  # added | modified | deleted for files, "" for directories only implied
    size: int = 0
    children: dict[str, Node] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.size + sum(c.total for c in self.children.values())


def tree(changes: LayerChangesLike) -> Node:
    root = Node("/", "/")
    for change in changes.changes:
        parts = [p for p in change.path.strip("/").split("/") if p]
        node = root
        for depth, part in enumerate(parts):
            path = "/" + "/".join(parts[: depth + 1])
            node = node.children.setdefault(part, Node(part, path))
        node.kind, node.size = change.kind, change.size
    return root


def wasted(layers: Sequence[LayerChangesLike]) -> tuple[int, list[Wasted]]:
    """(total bytes wasted, per path, most wasteful first)."""
    stored: dict[str, list[int]] = {}  # path -> sizes of its copies so far
    waste: dict[str, tuple[int, int]] = {}
    for layer in layers:
        for change in layer.changes:
            earlier = stored.get(change.path, [])
            if earlier:
                count, total = waste.get(change.path, (0, 0))
                waste[change.path] = (count + len(earlier), total + sum(earlier))
                earlier = []
            if change.kind != "deleted":
                earlier = [change.size]
            stored[change.path] = earlier
    rows = sorted((Wasted(path, count, size) for path, (count, size) in waste.items() if size or count),
                  key=lambda w: (-w.bytes, w.path))
    return sum(w.bytes for w in rows), rows
