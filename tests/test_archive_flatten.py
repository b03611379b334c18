"""flatten_layers and image_layer_changes on hand-made layer stacks."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

import pytest

from engine.archive.changes import image_layer_changes, list_layer_changes
from engine.archive.flatten import flatten_layers
from engine.archive.untar import extract_layer
from engine.errors import ArchiveError
from tests.archive_helpers import make_tar, tree_state

LAYERS: list[list[dict[str, Any]]] = [
    [
        {"name": "d/", "type": "dir", "mode": 0o700},
        {"name": "d/orig", "content": "original"},
        {"name": "d/link", "type": "hardlink", "linkname": "d/orig"},
        {"name": "d/link2", "type": "hardlink", "linkname": "d/orig"},
        {"name": "x/old", "content": "old" * 100},
        {"name": "keep", "content": "keep"},
    ],
    [
        {"name": "d/orig", "content": "replaced"},
        {"name": "x/", "type": "dir", "mode": 0o755},
        {"name": "x/.wh..wh..opq"},
        {"name": "x/new", "content": "new"},
        {"name": "crosslink", "type": "hardlink", "linkname": "keep"},
    ],
    [{"name": "d/", "type": "dir", "mode": 0o751, "mtime": 5}, {"name": "d/late", "content": "late"}],
]


def _stack(tmp: Path, layers: list[list[dict[str, Any]]]) -> Path:
    dest = tmp / "stacked"
    for entries in layers:
        extract_layer(io.BytesIO(make_tar(entries)), dest)
    return dest


def test_flatten_equals_stacked_extraction(tmp_path: Path) -> None:
    expected = tree_state(_stack(tmp_path, LAYERS))
    flat = io.BytesIO()
    stats = flatten_layers([io.BytesIO(make_tar(e)) for e in LAYERS], flat)
    flat.seek(0)
    with tarfile.open(fileobj=io.BytesIO(flat.getvalue())) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names.index("d") < names.index("d/link")  # the final (top-layer) header of d comes first
    assert next(m for m in members if m.name == "d").mode == 0o751
    assert names.count("d") == 1 and stats.entries == len(members)
    link = next(m for m in members if m.name == "d/link")
    assert link.isreg()  # its original was overwritten: the link now carries the old data
    assert next(m for m in members if m.name == "d/link2").linkname == "d/link"
    flat_dir = tmp_path / "flat"
    extract_layer(flat, flat_dir)
    state = tree_state(flat_dir)
    assert state == expected
    assert (flat_dir / "d/link").read_text() == "original"
    assert (flat_dir / "d/link").stat().st_ino == (flat_dir / "d/link2").stat().st_ino


def test_flatten_needs_seekable_streams() -> None:
    class Pipe(io.RawIOBase):
        def tell(self) -> int:
            raise OSError("not seekable")

    with pytest.raises(ArchiveError, match="seekable"):
        flatten_layers([Pipe()], io.BytesIO())  # type: ignore[list-item]


def test_flatten_refuses_file_under_file() -> None:
    layers = [make_tar([{"name": "a", "content": "x"}]), make_tar([{"name": "a/b", "content": "y"}])]
    with pytest.raises(ArchiveError, match="not a directory"):
        flatten_layers([io.BytesIO(b) for b in layers], io.BytesIO())


def test_layer_changes() -> None:
    single = list_layer_changes(io.BytesIO(make_tar(LAYERS[1])))
    assert [(c.path, c.kind, c.opaque) for c in single] == [
        ("d/orig", "added", False), ("x", "added", False), ("x", "modified", True), ("x/new", "added", False),
        ("crosslink", "added", False),
    ]
    image = image_layer_changes(io.BytesIO(make_tar(e)) for e in LAYERS)
    second = {(c.path, c.kind) for c in image.layers[1].changes}
    assert {("d/orig", "modified"), ("x", "modified"), ("x/old", "deleted"), ("x/new", "added")} <= second
    assert image.layers[0].wasted_bytes == len("original") + 300
    assert image.wasted_bytes == 308
    assert [i.path for i in image.inefficiencies] == ["x/old", "d/orig"]
    assert image.inefficiencies[1].versions == 2
