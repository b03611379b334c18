"""An in-memory model of a layered filesystem built from tar headers alone (no data, no disk).

Layers are applied bottom-up with OCI whiteout semantics: an entry replaces what was at its path (a
directory over a directory keeps the children), ``.wh.x`` removes ``x`` and its subtree when it came from
a lower layer, ``.wh..wh..opq`` removes a directory's lower-layer contents.  Paths are logical archive
paths; symlinks are not followed.  Used by :mod:`engine.archive.flatten` (export) and
:mod:`engine.archive.changes` (the layer browser).
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field

from engine.archive.reader import clean_member_path
from engine.archive.untar import WHITEOUT_META_PREFIX, WHITEOUT_OPAQUE, WHITEOUT_PREFIX
from engine.errors import ArchiveError, UnsafeArchiveError

Key = tuple[int, int]
"""(layer index, member ordinal within the layer): identifies one tar entry of one layer."""


@dataclass(slots=True, eq=False)
class Node:
    layer: int
    ordinal: int  # -1 for a directory implied by a path, with no entry of its own
    type: bytes
    size: int
    mode: int
    origin: Key | None = None  # for hardlinks: the entry whose inode they share
    info: tarfile.TarInfo | None = None  # kept for directories only
    children: dict[str, Node] | None = None

    @property
    def key(self) -> Key:
        return (self.layer, self.ordinal)

    @property
    def implied(self) -> bool:
        return self.ordinal < 0

    @property
    def is_dir(self) -> bool:
        return self.children is not None


@dataclass(frozen=True, slots=True)
class Removed:
    path: str
    node: Node


@dataclass(slots=True)
class Applied:
    """What applying one member did: the path it names, what it replaced or removed."""

    path: str
    kind: str  # "entry", "whiteout", "opaque", "ignored"
    node: Node | None = None
    previous: Node | None = None
    removed: list[Removed] = field(default_factory=list)


def classify(name: str) -> tuple[str, tuple[str, ...]]:
    """("entry" | "whiteout" | "opaque" | "ignored", path parts of the affected path)."""
    parts = clean_member_path(name)
    if not parts:
        return "ignored", parts
    base = parts[-1]
    if base == WHITEOUT_OPAQUE:
        return "opaque", parts[:-1]
    if base.startswith(WHITEOUT_META_PREFIX):
        return "ignored", parts
    if base.startswith(WHITEOUT_PREFIX):
        target = base[len(WHITEOUT_PREFIX):]
        if target in ("", ".", ".."):
            raise UnsafeArchiveError(f"invalid whiteout entry {name!r}")
        return "whiteout", (*parts[:-1], target)
    return "entry", parts


class FsTree:
    def __init__(self) -> None:
        self.root = Node(-1, -1, tarfile.DIRTYPE, 0, 0o755, children={})

    def apply(self, member: tarfile.TarInfo, layer: int, ordinal: int) -> Applied:
        kind, parts = classify(member.name)
        path = "/".join(parts)
        if kind == "ignored":
            return Applied(path, kind)
        if kind == "whiteout":
            return self._whiteout(parts, path, layer)
        if kind == "opaque":
            applied = Applied(path, kind)
            directory = self._lookup(parts)
            if directory is not None and directory.children is not None:
                self._clear_lower(directory, path, layer, applied.removed)
            return applied
        return self._entry(member, parts, path, layer, ordinal)

    def _lookup(self, parts: tuple[str, ...]) -> Node | None:
        node = self.root
        for comp in parts:
            if node.children is None:
                return None
            child = node.children.get(comp)
            if child is None:
                return None
            node = child
        return node

    def _parent(self, parts: tuple[str, ...], layer: int, name: str) -> Node:
        node = self.root
        for comp in parts[:-1]:
            assert node.children is not None
            child = node.children.get(comp)
            if child is None:
                child = Node(layer, -1, tarfile.DIRTYPE, 0, 0o755, children={})
                node.children[comp] = child
            elif child.children is None:
                raise ArchiveError(f"{name!r}: {comp} is not a directory in the layers below")
            node = child
        return node

    def _entry(
        self, member: tarfile.TarInfo, parts: tuple[str, ...], path: str, layer: int, ordinal: int
    ) -> Applied:
        parent = self._parent(parts, layer, member.name)
        assert parent.children is not None
        previous = parent.children.get(parts[-1])
        node = Node(layer, ordinal, member.type, member.size if member.isreg() else 0, member.mode)
        applied = Applied(path, "entry", node, previous)
        if member.isdir():
            node.info = member
            node.children = {}
            if previous is not None and previous.children is not None:
                node.children = previous.children  # a directory over a directory merges
        elif previous is not None and previous.children is not None:
            self._collect(previous, path, applied.removed)
        if member.islnk():
            target = self._lookup(clean_member_path(member.linkname))
            if target is None or target.children is not None:
                raise ArchiveError(f"hardlink {member.name!r}: target {member.linkname!r} is not a file")
            node.origin = target.origin or target.key
        parent.children[parts[-1]] = node
        return applied

    def _whiteout(self, parts: tuple[str, ...], path: str, layer: int) -> Applied:
        applied = Applied(path, "whiteout")
        parent = self._lookup(parts[:-1])
        if parent is None or parent.children is None:
            return applied
        victim = parent.children.get(parts[-1])
        if victim is None or victim.layer >= layer:
            return applied  # whiteouts hide lower layers only
        del parent.children[parts[-1]]
        self._collect(victim, path, applied.removed)
        return applied

    def _clear_lower(self, directory: Node, path: str, layer: int, removed: list[Removed]) -> None:
        assert directory.children is not None
        for name in list(directory.children):
            child = directory.children[name]
            child_path = f"{path}/{name}" if path else name
            if child.layer < layer:
                del directory.children[name]
                self._collect(child, child_path, removed)
            elif child.children is not None:
                self._clear_lower(child, child_path, layer, removed)

    def _collect(self, node: Node, path: str, out: list[Removed]) -> None:
        out.append(Removed(path, node))
        if node.children:
            for name, child in node.children.items():
                self._collect(child, f"{path}/{name}", out)

    def walk(self) -> Iterator[tuple[str, Node]]:
        """Every node of the current state, parents first, names sorted."""
        stack: list[tuple[str, Node]] = [("", self.root)]
        while stack:
            path, node = stack.pop()
            if path:
                yield path, node
            if node.children:
                for name in sorted(node.children, reverse=True):
                    stack.append((f"{path}/{name}" if path else name, node.children[name]))
