"""Layer contents as changes, for the dive-like layer browser: pure over tar headers.

:func:`list_layer_changes` reads one layer on its own (entries are "added", whiteouts "deleted",
opaque markers flag their directory).  :func:`image_layer_changes` reads an image's layers bottom-up and
tells added from modified, expands whiteouts and opaque directories into what they delete, and counts
wasted bytes: bytes a layer stores that a later layer overwrites or deletes.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO, Literal

from engine.archive.fstree import Applied, FsTree, Removed, classify
from engine.archive.reader import LayerReader

ChangeKind = Literal["added", "modified", "deleted"]

_TYPE_NAMES = {
    tarfile.REGTYPE: "file", tarfile.AREGTYPE: "file", tarfile.CONTTYPE: "file", tarfile.GNUTYPE_SPARSE: "file",
    tarfile.DIRTYPE: "dir", tarfile.SYMTYPE: "symlink", tarfile.LNKTYPE: "hardlink", tarfile.CHRTYPE: "char",
    tarfile.BLKTYPE: "block", tarfile.FIFOTYPE: "fifo",
}


@dataclass(frozen=True, slots=True)
class Change:
    path: str
    kind: ChangeKind
    type: str  # file, dir, symlink, hardlink, char, block, fifo ("" for a deletion)
    size: int
    mode: int
    opaque: bool = False  # the directory hides everything lower layers had in it


@dataclass(frozen=True, slots=True)
class LayerChanges:
    index: int
    changes: tuple[Change, ...]
    size: int  # bytes of file data the layer carries
    wasted_bytes: int  # of those, bytes that later layers overwrite or delete


@dataclass(frozen=True, slots=True)
class Inefficiency:
    path: str
    versions: int  # how many layers wrote this path
    wasted_bytes: int


@dataclass(frozen=True, slots=True)
class ImageChanges:
    layers: tuple[LayerChanges, ...]
    total_size: int
    wasted_bytes: int
    inefficiencies: tuple[Inefficiency, ...]  # worst first

    @property
    def efficiency(self) -> float:
        return 1.0 if self.total_size == 0 else 1.0 - self.wasted_bytes / self.total_size


def _type_name(member_type: bytes) -> str:
    return _TYPE_NAMES.get(member_type, "other")


def list_layer_changes(stream: BinaryIO, *, max_bytes: int | None = None) -> list[Change]:
    """The entries of one layer as changes, without knowledge of the layers below."""
    out: list[Change] = []
    with LayerReader(stream, max_bytes=max_bytes) as reader:
        for member in reader:
            kind, parts = classify(member.name)
            path = "/".join(parts)
            if kind == "entry":
                size = member.size if member.isreg() else 0
                out.append(Change(path, "added", _type_name(member.type), size, member.mode))
            elif kind == "whiteout":
                out.append(Change(path, "deleted", "", 0, 0))
            elif kind == "opaque":
                out.append(Change(path, "modified", "dir", 0, 0, opaque=True))
        reader.finish()
    return out


def image_layer_changes(layer_streams: Iterable[BinaryIO], *, max_bytes: int | None = None) -> ImageChanges:
    """Changes of every layer (streams bottom-up, as in the manifest) and the image's wasted bytes."""
    tree = FsTree()
    per_layer: list[tuple[list[Change], int]] = []
    wasted: list[int] = []
    versions: dict[str, int] = {}
    path_waste: dict[str, int] = {}

    def waste(removed: Iterable[Removed]) -> None:
        for r in removed:
            if r.node.implied or r.node.size == 0:
                continue
            wasted[r.node.layer] += r.node.size
            path_waste[r.path] = path_waste.get(r.path, 0) + r.node.size

    for index, stream in enumerate(layer_streams):
        changes: list[Change] = []
        size = 0
        wasted.append(0)
        with LayerReader(stream, max_bytes=max_bytes) as reader:
            for ordinal, member in enumerate(reader):
                applied = tree.apply(member, index, ordinal)
                if applied.kind == "entry":
                    size += applied.node.size if applied.node else 0
                    versions[applied.path] = versions.get(applied.path, 0) + 1
                changes.extend(_changes_of(applied))
                prev = applied.previous
                waste(applied.removed)
                if prev is not None and prev.children is None:
                    waste([Removed(applied.path, prev)])
            reader.finish()
        per_layer.append((changes, size))
    layers = tuple(
        LayerChanges(i, tuple(changes), size, wasted[i]) for i, (changes, size) in enumerate(per_layer)
    )
    worst = sorted(path_waste.items(), key=lambda kv: (-kv[1], kv[0]))
    return ImageChanges(
        layers=layers,
        total_size=sum(size for _, size in per_layer),
        wasted_bytes=sum(wasted),
        inefficiencies=tuple(Inefficiency(p, max(versions.get(p, 1), 1), w) for p, w in worst),
    )


def _changes_of(applied: Applied) -> list[Change]:
    out: list[Change] = []
    if applied.kind == "entry" and applied.node is not None:
        node = applied.node
        modified = applied.previous is not None and not applied.previous.implied
        out.append(Change(applied.path, "modified" if modified else "added", _type_name(node.type),
                          node.size, node.mode))
    elif applied.kind == "opaque":
        out.append(Change(applied.path, "modified", "dir", 0, 0, opaque=True))
    # a whiteout, an opaque directory or a file over a directory deletes whole subtrees: report their
    # tops (what a tree view collapses to), with the bytes they held
    tops: dict[str, int] = {}
    top = ""
    for r in applied.removed:  # pre-order: a subtree's nodes follow its top
        if top and r.path.startswith(top + "/"):
            tops[top] += r.node.size
        else:
            top = r.path
            tops[top] = r.node.size
    out.extend(Change(p, "deleted", "", size, 0) for p, size in tops.items())
    return out
