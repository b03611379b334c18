"""extract_layer on hand-made archives: hostile ones (in addition to the peer cases) and fidelity."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from engine.archive.untar import extract_layer, extract_layer_for_overlay
from engine.errors import ArchiveError, DigestMismatchError, NoSpaceError, UnsafeArchiveError
from tests.archive_helpers import make_tar, snapshot, walk_listing

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="needs root (ownership, device nodes, trusted xattrs, mounts)")


def _untar(entries: list[dict[str, Any]], dest: Path, **kw: Any) -> Any:
    return extract_layer(io.BytesIO(make_tar(entries)), dest, **kw)


@pytest.fixture
def box(tmp_path: Path) -> tuple[Path, Path]:
    """dest plus a sibling 'outside' dir holding a secret; the test asserts the sibling never changes."""
    dest = tmp_path / "dest"
    outside = tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    before = snapshot(tmp_path, exclude=dest)
    yield dest, outside
    assert snapshot(tmp_path, exclude=dest) == before


HOSTILE = {
    "symlink replaced by a later directory entry is not followed": [
        {"name": "a", "type": "dir", "mode": 0o755},
        {"name": "a/x", "content": "x"},
        {"name": "a", "type": "symlink", "linkname": "../outside"},
        {"name": "a/y", "content": "pwned"},
    ],
    "symlink chain climbing out": [
        {"name": "l1", "type": "symlink", "linkname": "l2/.."},
        {"name": "l2", "type": "symlink", "linkname": "../outside"},
        {"name": "l1/secret", "content": "pwned"},
    ],
    "absolute symlink with dotdot": [
        {"name": "abs", "type": "symlink", "linkname": "/../outside"},
        {"name": "abs/secret", "content": "pwned"},
    ],
    "hardlink through a symlinked directory": [
        {"name": "l", "type": "symlink", "linkname": "../outside"},
        {"name": "h", "type": "hardlink", "linkname": "l/secret"},
    ],
    "whiteout through a symlink": [
        {"name": "l", "type": "symlink", "linkname": "../outside"},
        {"name": "l/.wh.secret"},
    ],
    "whiteout of a parent path": [{"name": "../.wh.outside"}],
    "opaque through a symlink": [
        {"name": "l", "type": "symlink", "linkname": ".."},
        {"name": "l/.wh..wh..opq"},
    ],
    "nested dotdot in name": [{"name": "a/b/../../../outside/secret", "content": "pwned"}],
}


@pytest.mark.parametrize("entries", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_archives_are_refused(box: tuple[Path, Path], entries: list[dict[str, Any]]) -> None:
    dest, outside = box
    with pytest.raises(UnsafeArchiveError):
        _untar(entries, dest)
    assert (outside / "secret").read_bytes() == b"secret"


def test_absolute_symlink_resolves_inside_dest(box: tuple[Path, Path]) -> None:
    dest, outside = box
    _untar([{"name": "ln", "type": "symlink", "linkname": str(outside)}, {"name": "ln/new", "content": "in"}], dest)
    assert (dest / str(outside).lstrip("/") / "new").read_bytes() == b"in"
    assert not (outside / "new").exists()


def test_symlink_loop(box: tuple[Path, Path]) -> None:
    dest, _ = box
    with pytest.raises(ArchiveError, match="too many levels"):
        _untar([{"name": "a", "type": "symlink", "linkname": "b"}, {"name": "b", "type": "symlink",
                "linkname": "a"}, {"name": "a/f"}], dest)


def test_file_over_existing_symlink_replaces_the_link(box: tuple[Path, Path]) -> None:
    dest, outside = box
    os.symlink(str(outside / "secret"), dest / "s")
    _untar([{"name": "s", "content": "mine"}], dest)
    assert not (dest / "s").is_symlink() and (dest / "s").read_bytes() == b"mine"


@pytest.mark.parametrize("blob", [b"not a tar at all" * 100, b"", gzip.compress(b"junk" * 200)])
def test_garbage_is_an_archive_error(tmp_path: Path, blob: bytes) -> None:
    with pytest.raises(ArchiveError):
        extract_layer(io.BytesIO(blob), tmp_path)


def test_truncated_archive(tmp_path: Path) -> None:
    data = make_tar([{"name": "big", "content": b"x" * 100_000}])
    with pytest.raises(ArchiveError, match="truncated"):
        extract_layer(io.BytesIO(data[:50_000]), tmp_path)


def test_unknown_entry_type(tmp_path: Path) -> None:
    data = bytearray(make_tar([{"name": "v", "type": "fifo"}]))
    data[156:157] = b"V"  # volume header type
    data[148:156] = b"%06o\0 " % (sum(data[:148]) + 8 * 32 + sum(data[156:512]))
    with pytest.raises(ArchiveError, match="unsupported type"):
        extract_layer(io.BytesIO(bytes(data)), tmp_path)


def test_diff_id_and_bomb_guard(tmp_path: Path) -> None:
    data = make_tar([{"name": "f", "content": b"a" * 300_000}])
    good = "sha256:" + hashlib.sha256(data).hexdigest()
    stats = extract_layer(io.BytesIO(gzip.compress(data)), tmp_path / "a", expected_diff_id=good)
    assert stats.diff_id == good and stats.compression == "gzip" and stats.uncompressed_size == len(data)
    with pytest.raises(DigestMismatchError):
        extract_layer(io.BytesIO(data), tmp_path / "b", expected_diff_id="sha256:" + "0" * 64)
    with pytest.raises(ArchiveError, match="bomb"):
        extract_layer(io.BytesIO(gzip.compress(data)), tmp_path / "c", max_bytes=100_000)


def test_metadata_is_restored(tmp_path: Path) -> None:
    seen: list[tuple[str, int]] = []
    stats = _untar(
        [
            {"name": "d/", "type": "dir", "mode": 0o750, "mtime": 1_000_000},
            {"name": "d/f", "content": "data", "mode": 0o640, "mtime": 2_000_000, "xattrs": {"user.k": "v"}},
            {"name": "d/l", "type": "symlink", "linkname": "f", "mtime": 3_000_000},
            {"name": "d/h", "type": "hardlink", "linkname": "d/f"},
            {"name": "d/p", "type": "fifo", "mode": 0o600},
            {"name": "d/x", "xattrs": {"trusted.overlay.opaque": "y"}},
        ],
        tmp_path,
        on_entry=lambda name, size: seen.append((name, size)),
    )
    d = tmp_path / "d"
    assert stat.S_IMODE(d.stat().st_mode) == 0o750 and d.stat().st_mtime == 1_000_000
    assert stat.S_IMODE((d / "f").stat().st_mode) == 0o640 and (d / "f").stat().st_mtime == 2_000_000
    assert os.getxattr(d / "f", "user.k") == b"v"
    assert os.lstat(d / "l").st_mtime == 3_000_000 and os.readlink(d / "l") == "f"
    assert (d / "h").stat().st_ino == (d / "f").stat().st_ino
    assert stat.S_ISFIFO((d / "p").lstat().st_mode)
    assert "trusted.overlay.opaque" not in os.listxattr(d / "x")
    assert stats.xattrs_skipped == 1 and stats.files == 2 and stats.hardlinks == 1 and stats.fifos == 1
    assert seen[1] == ("d/f", 4)


@needs_root
def test_ownership_setuid_and_devices_as_root(tmp_path: Path) -> None:
    entries = [
        {"name": "f", "content": "x", "uid": 1234, "gid": 5678, "mode": 0o4755},
        {"name": "null", "type": "char", "devmajor": 1, "devminor": 3, "mode": 0o666},
        {"name": "d", "type": "dir", "uid": 42, "gid": 43},
    ]
    _untar(entries, tmp_path / "owned")
    st = (tmp_path / "owned/f").stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1234, 5678, 0o4755)
    dev = (tmp_path / "owned/null").lstat()
    assert stat.S_ISCHR(dev.st_mode) and os.major(dev.st_rdev) == 1 and os.minor(dev.st_rdev) == 3
    assert (tmp_path / "owned/d").stat().st_uid == 42
    _untar(entries, tmp_path / "mine", same_owner=False)
    assert (tmp_path / "mine/f").stat().st_uid == 0


def test_whiteouts_spare_this_layers_entries_and_clear_merged_dirs(tmp_path: Path) -> None:
    _untar([{"name": "d/sub/old", "content": "o"}, {"name": "keep", "content": "k"}, {"name": "gone"}], tmp_path)
    _untar(
        [
            {"name": "d/sub/", "type": "dir", "mode": 0o755},
            {"name": "d/sub/new", "content": "n"},
            {"name": "d/.wh..wh..opq"},
            {"name": "fresh"},
            {"name": ".wh.fresh"},
            {"name": ".wh.gone"},
            {"name": ".wh.never-existed"},
            {"name": ".wh..wh.plnk"},
        ],
        tmp_path,
    )
    assert walk_listing(tmp_path) == ["d/", "d/sub/", "d/sub/new", "fresh", "keep"]


def test_whiteouts_kept_as_files_when_not_applied(tmp_path: Path) -> None:
    _untar([{"name": "a"}, {"name": ".wh.a"}], tmp_path, apply_whiteouts=False)
    assert walk_listing(tmp_path) == [".wh.a", "a"]


@needs_root
def test_overlay_style_whiteouts(tmp_path: Path) -> None:
    stats = extract_layer_for_overlay(
        io.BytesIO(make_tar([{"name": "d/", "type": "dir"}, {"name": "d/.wh..wh..opq"}, {"name": ".wh.x"},
                             {"name": "d/n", "content": "n"}])),
        tmp_path,
    )
    wh = (tmp_path / "x").lstat()
    assert stat.S_ISCHR(wh.st_mode) and wh.st_rdev == 0
    assert os.getxattr(tmp_path / "d", "trusted.overlay.opaque") == b"y"
    assert stats.whiteouts == 1 and stats.opaque_dirs == 1


@needs_root
def test_overlay_snapshots_mount_like_stacked_extraction(tmp_path: Path) -> None:
    layers = [
        [{"name": "a/one", "content": "1"}, {"name": "a/two", "content": "2"}, {"name": "b/x", "content": "x"},
         {"name": "c", "content": "c"}],
        [{"name": ".wh.c"}, {"name": "a/", "type": "dir", "mode": 0o755}, {"name": "a/.wh..wh..opq"},
         {"name": "a/three", "content": "3"}, {"name": "b/.wh.x"}],
    ]
    stacked = tmp_path / "stacked"
    lowers = []
    for i, entries in enumerate(layers):
        _untar(entries, stacked)
        lower = tmp_path / f"lower{i}"
        extract_layer_for_overlay(io.BytesIO(make_tar(entries)), lower)
        lowers.append(str(lower))
    merged = tmp_path / "merged"
    merged.mkdir()
    opts = "lowerdir=" + ":".join(reversed(lowers))
    if subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(merged)]).returncode:
        pytest.skip("this kernel refuses overlay mounts here")
    try:
        assert walk_listing(merged) == walk_listing(stacked) == ["a/", "a/three", "b/"]
    finally:
        subprocess.run(["umount", str(merged)], check=True)


@needs_root
def test_no_space_is_reported(tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(small)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        with pytest.raises(NoSpaceError, match="no space"):
            _untar([{"name": "big", "content": b"z" * 1_000_000}], small)
    finally:
        subprocess.run(["umount", str(small)], check=True)
