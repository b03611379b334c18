"""write_layer: determinism, round trips through extract_layer, overlay upper conversion, COPY lists."""

from __future__ import annotations

import hashlib
import io
import os
import socket
import stat
import subprocess
import tarfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from engine.archive.compression import decompress_bytes
from engine.archive.layer_writer import (
    LayerItem,
    LayerResult,
    directory_items,
    file_list_items,
    overlay_upper_items,
    write_layer,
)
from engine.archive.untar import extract_layer
from tests.archive_helpers import tree_state, walk_listing

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="needs root (chown, mknod, trusted.* xattrs, overlay mounts)")


def _populate(root: Path) -> None:
    (root / "etc").mkdir(parents=True)
    (root / "etc/conf").write_text("key=value\n")
    (root / "bin").mkdir()
    (root / "bin/tool").write_bytes(os.urandom(300_000))
    (root / "bin/tool").chmod(0o755)
    os.link(root / "bin/tool", root / "bin/tool-alias")
    os.symlink("tool", root / "bin/link")
    os.symlink("/etc/conf", root / "abs-link")
    os.mkfifo(root / "pipe")
    (root / "empty-dir").mkdir(mode=0o700)
    (root / "ünïcode name").write_text("u")
    os.setxattr(root / "etc/conf", "user.note", b"\xff binary \x00 value")
    deep = root / ("d" * 60) / ("e" * 60) / ("f" * 60)
    deep.mkdir(parents=True)
    (deep / "long-path-file").write_text("long")


def _write(items: Iterable[LayerItem], **kw: Any) -> tuple[bytes, LayerResult]:
    out = io.BytesIO()
    result = write_layer(items, out, **kw)
    return out.getvalue(), result


def test_result_matches_the_bytes(tmp_path: Path) -> None:
    _populate(tmp_path / "src")
    blob, result = _write(directory_items(tmp_path / "src"))
    raw = decompress_bytes(blob)
    assert str(result.digest) == "sha256:" + hashlib.sha256(blob).hexdigest()
    assert str(result.diff_id) == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert result.size == len(blob) and result.uncompressed_size == len(raw)
    assert result.media_type == "application/vnd.oci.image.layer.v1.tar+gzip"
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names, key=lambda n: n.split("/"))
    assert all(m.uname == "" and m.gname == "" for m in members)
    alias = next(m for m in members if m.name == "bin/tool-alias")
    assert alias.islnk() and alias.linkname == "bin/tool"


def test_same_tree_same_digest_and_mtime_clamp(tmp_path: Path) -> None:
    for name in ("a", "b"):
        _populate(tmp_path / name)
        (tmp_path / name / "bin/tool").write_bytes(b"same content")
    os.utime(tmp_path / "b/etc/conf", (2_000_000_000, 2_000_000_000))
    _, ra = _write(directory_items(tmp_path / "a"), mtime_clamp=1_000_000)
    _, ra2 = _write(directory_items(tmp_path / "a"), mtime_clamp=1_000_000)
    _, rb = _write(directory_items(tmp_path / "b"), mtime_clamp=1_000_000)
    assert ra.digest == ra2.digest == rb.digest
    _, unclamped = _write(directory_items(tmp_path / "b"))
    assert unclamped.diff_id != rb.diff_id


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_round_trip(tmp_path: Path, compression: str) -> None:
    src = tmp_path / "src"
    _populate(src)
    if ROOT:
        os.chown(src / "etc/conf", 1000, 2000)
        (src / "bin/tool").chmod(0o4755)
        os.mknod(src / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        os.setxattr(src / "bin/tool", "security.capability",
                    bytes.fromhex("0100000200200000000000000000000000000000"))
    blob, result = _write(directory_items(src), compression=compression)
    dest = tmp_path / "dest"
    stats = extract_layer(io.BytesIO(blob), dest, expected_diff_id=str(result.diff_id))
    assert tree_state(dest) == tree_state(src)
    assert stats.compression == compression
    assert (dest / "bin/tool").stat().st_ino == (dest / "bin/tool-alias").stat().st_ino


def test_sockets_are_skipped_and_prefix(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("f")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(src / "sock"))
    try:
        blob, _ = _write(directory_items(src, prefix="/app/"))
    finally:
        sock.close()
    with tarfile.open(fileobj=io.BytesIO(decompress_bytes(blob))) as tar:
        assert tar.getnames() == ["app", "app/f"]


def test_file_list_items_for_copy(tmp_path: Path) -> None:
    (tmp_path / "dir/sub").mkdir(parents=True)
    (tmp_path / "dir/sub/x").write_text("x")
    (tmp_path / "one").write_text("1")
    items = file_list_items(
        [("/srv/one", tmp_path / "one"), ("srv/dir", tmp_path / "dir")], uid=1000, gid=1000, mode=0o640
    )
    assert [i.name for i in items] == ["srv/dir", "srv/dir/sub", "srv/dir/sub/x", "srv/one"]
    blob, _ = _write(items)
    with tarfile.open(fileobj=io.BytesIO(decompress_bytes(blob))) as tar:
        members = tar.getmembers()
    assert {(m.uid, m.gid, m.mode) for m in members} == {(1000, 1000, 0o640)}


def test_whiteout_layers_round_trip(tmp_path: Path) -> None:
    """Layers written with whiteout markers, extracted stacked, give the expected tree."""
    base = tmp_path / "base"
    (base / "keep").mkdir(parents=True)
    (base / "keep/a").write_text("a")
    (base / "opaque").mkdir()
    (base / "opaque/old").write_text("old")
    (base / "gone").write_text("gone")
    upper = tmp_path / "upper"
    (upper / "opaque").mkdir(parents=True)
    (upper / "opaque/new").write_text("new")
    items = [
        LayerItem(".wh.gone"),
        LayerItem("opaque", upper / "opaque"),
        LayerItem("opaque/.wh..wh..opq"),
        LayerItem("opaque/new", upper / "opaque/new"),
    ]
    lower_blob, _ = _write(directory_items(base))
    upper_blob, _ = _write(items)
    dest = tmp_path / "dest"
    extract_layer(io.BytesIO(lower_blob), dest)
    extract_layer(io.BytesIO(upper_blob), dest)
    assert walk_listing(dest) == ["keep/", "keep/a", "opaque/", "opaque/new"]


@needs_root
def test_overlay_upper_conversion_matches_the_merged_view(tmp_path: Path) -> None:
    """Change a real overlay mount, turn its upper dir into a layer, apply it onto the lower: same tree."""
    lower, upper, work, merged = (tmp_path / n for n in ("lower", "upper", "work", "merged"))
    for d in (upper, work, merged):
        d.mkdir()
    _populate(lower)
    (lower / "etc/sub").mkdir()
    (lower / "etc/sub/deep").write_text("deep")
    opts = f"lowerdir={lower},upperdir={upper},workdir={work},redirect_dir=off,metacopy=off,index=off"
    if subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(merged)]).returncode:
        pytest.skip("this kernel refuses overlay mounts here")
    try:
        os.unlink(merged / "bin/tool-alias")
        os.unlink(merged / "pipe")
        subprocess.run(["rm", "-rf", str(merged / "etc")], check=True)
        (merged / "etc").mkdir()
        (merged / "etc/conf").write_text("new\n")
        (merged / "bin/added").write_text("added")
        expected = tree_state(merged)
    finally:
        subprocess.run(["umount", str(merged)], check=True)
    assert stat.S_ISCHR((upper / "pipe").lstat().st_mode)
    items = list(overlay_upper_items(upper))
    names = [i.name for i in items]
    assert ".wh.pipe" in names and "bin/.wh.tool-alias" in names and "etc/.wh..wh..opq" in names
    lower_blob, _ = _write(directory_items(lower))
    upper_blob, _ = _write(items)
    dest = tmp_path / "dest"
    extract_layer(io.BytesIO(lower_blob), dest)
    extract_layer(io.BytesIO(upper_blob), dest)
    actual = tree_state(dest)
    # the kernel gives the merged view's root and copied-up dirs their own mtimes/xattrs; compare content
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        assert actual[key][:5] == value[:5], key
