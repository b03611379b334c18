"""The layer file browser's tree: one layer's changes (flat paths) as nested nodes with subtree sizes."""

from __future__ import annotations

from dataclasses import dataclass, field

from tui.engine_protocols import LayerChangesLike


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
