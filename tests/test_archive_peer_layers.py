"""go-containerregistry's whiteout images (peer-data mutate/testdata): stacked extraction, flattening and
the layer-change view must all agree on the final filesystem."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from engine.archive.changes import image_layer_changes
from engine.archive.flatten import flatten_layers
from engine.archive.untar import extract_layer
from tests.archive_helpers import walk_listing
from tests.peerdata import peer_dir

TESTDATA = peer_dir("go-containerregistry-testdata", "pkg", "v1", "mutate", "testdata")

# image tarball -> final filesystem (what ggcr's mutate.Extract yields for it)
EXPECTED = {
    "whiteout_image.tar": ["bar.txt"],
    "whiteout_dir.tar": ["a/", "a/baz", "b/", "b/bar"],
    "overwritten_file.tar": ["bar.txt", "foo.txt"],
}


def _layers(image: str) -> list[bytes]:
    with tarfile.open(TESTDATA / image) as tar:
        manifest_file = tar.extractfile("manifest.json")
        assert manifest_file is not None
        manifest = json.load(manifest_file)[0]
        out = []
        for name in manifest["Layers"]:
            member = tar.extractfile(name)
            assert member is not None
            out.append(member.read())
        return out


@pytest.mark.parametrize("image", sorted(EXPECTED))
def test_stacked_extraction_and_flatten_agree(image: str, tmp_path: Path) -> None:
    layers = _layers(image)
    root = tmp_path / "root"
    for data in layers:
        extract_layer(io.BytesIO(data), root)
    assert walk_listing(root) == EXPECTED[image]

    flat = io.BytesIO()
    stats = flatten_layers([io.BytesIO(d) for d in layers], flat)
    assert stats.layers == len(layers)
    flat.seek(0)
    with tarfile.open(fileobj=flat) as tar:
        names = sorted(m.name + ("/" if m.isdir() else "") for m in tar)
    assert names == sorted(EXPECTED[image])
    flat.seek(0)
    again = tmp_path / "again"
    extract_layer(flat, again)
    assert walk_listing(again) == EXPECTED[image]


def test_overwritten_file_keeps_symlink(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for data in _layers("overwritten_file.tar"):
        extract_layer(io.BytesIO(data), root)
    assert (root / "foo.txt").is_symlink()
    assert (root / "foo.txt").read_bytes() == (root / "bar.txt").read_bytes()


def test_changes_of_whiteout_image() -> None:
    changes = image_layer_changes(io.BytesIO(d) for d in _layers("whiteout_image.tar"))
    first, second, third = changes.layers
    assert {(c.path, c.kind) for c in first.changes} == {("bar.txt", "added"), ("foo.txt", "added")}
    assert ("foo.txt", "deleted") in {(c.path, c.kind) for c in second.changes}
    assert third.changes == ()
    assert first.wasted_bytes == 4 and changes.wasted_bytes == 4
    assert changes.total_size == 8 and changes.efficiency == pytest.approx(0.5)
    assert changes.inefficiencies[0].path == "foo.txt"


def test_changes_of_overwritten_file() -> None:
    changes = image_layer_changes(io.BytesIO(d) for d in _layers("overwritten_file.tar"))
    second = changes.layers[1]
    kinds = {c.path: (c.kind, c.type) for c in second.changes}
    assert kinds["foo.txt"] == ("modified", "symlink") and kinds["bar.txt"] == ("added", "file")
    assert changes.wasted_bytes == 4


def test_changes_of_whiteout_dir_reports_subtree() -> None:
    changes = image_layer_changes(io.BytesIO(d) for d in _layers("whiteout_dir.tar"))
    deleted = [c for c in changes.layers[2].changes if c.kind == "deleted"]
    assert [c.path for c in deleted] == ["a"]
    assert [(c.path, c.kind) for c in changes.layers[3].changes] == [("a", "added"), ("a/baz", "added")]
