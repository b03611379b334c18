"""Every case of moby/go-archive's untar tests (peer-data/go-archive/untar-cases.json) against extract_layer.

Each case runs in tmp/dest with its pre-existing environment; whatever the expected outcome, nothing in
tmp outside dest may change (a snapshot of the siblings is compared before and after).
"""

from __future__ import annotations

import io
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from engine.archive.untar import ExtractStats, extract_layer, extract_layer_for_overlay
from engine.errors import ArchiveError, EngineError, UnsafeArchiveError
from tests.archive_helpers import make_tar, snapshot, walk_listing
from tests.peerdata import peer_dir

CASES_FILE = peer_dir("go-archive") / "untar-cases.json"
CASES: list[dict[str, Any]] = json.loads(CASES_FILE.read_text())["cases"]
VICTIM_CONTENT = b"victim content 1700000000.123456789\n"


def _prepare(tmp: Path, case: dict[str, Any]) -> Path:
    dest = tmp / "dest"
    dest.mkdir()
    for item in case.get("environment", {}).get("pre_existing", []):
        path = dest / item["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        if item["type"] == "dir":
            path.mkdir(exist_ok=True)
            path.chmod(int(item["mode"], 8))
        elif item["type"] == "file":
            content = item.get("content", "")
            data = VICTIM_CONTENT if content.startswith("<unique") else content.encode()
            path.write_bytes(data)
            path.chmod(int(item["mode"], 8))
        elif item["type"] == "symlink":
            os.symlink(item["linkname"], path)
        else:  # pragma: no cover - the data set has no other kinds
            raise AssertionError(f"unknown pre_existing type {item['type']}")
    return dest


def _extract(case: dict[str, Any], data: bytes, dest: Path) -> ExtractStats:
    api = case["api"]
    same_owner = False if "NoLchown=true" in api else None
    if "WhiteoutFormat=overlay" in api:
        return extract_layer_for_overlay(io.BytesIO(data), dest, same_owner=same_owner)
    layer_api = "UnpackLayer" in api or "ApplyLayer" in api
    return extract_layer(io.BytesIO(data), dest, apply_whiteouts=layer_api, same_owner=same_owner)


def _check_expected_error(case: dict[str, Any], exc: EngineError) -> None:
    kind = case.get("expect_error", "")
    if "breakout" in kind or "path-escape" in kind:
        assert isinstance(exc, UnsafeArchiveError), f"{type(exc).__name__}: {exc}"
    elif "invalid whiteout entry" in kind:
        assert "invalid whiteout entry" in str(exc)
    else:
        assert isinstance(exc, ArchiveError), f"{type(exc).__name__}: {exc}"


def _check_tree(case: dict[str, Any], dest: Path) -> None:
    expected = case.get("expected_tree")
    if expected is not None:
        present = {
            str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_symlink() or not p.is_dir()
        }
        if not expected:
            assert list(dest.iterdir()) == []
        assert present == {item["path"] for item in expected}
        _check_items(dest, expected)
    _check_items(dest, case.get("expected_tree_includes", []))
    for rel, mode in case.get("expected_modes", {}).items():
        assert oct(stat.S_IMODE((dest / rel).lstat().st_mode)) == mode.split()[0], rel


def _check_items(dest: Path, items: list[dict[str, Any]]) -> None:
    for item in items:
        path = dest / item["path"]
        st = path.lstat()
        if item["type"] == "symlink":
            assert stat.S_ISLNK(st.st_mode) and os.readlink(path) == item["linkname"]
        elif item["type"] == "file":
            assert stat.S_ISREG(st.st_mode)
            assert path.read_bytes() == item["content"].encode()
        if "nlink" in item:
            assert st.st_nlink == item["nlink"]
        if "same_inode_as" in item:
            assert st.st_ino == (dest / item["same_inode_as"]).lstat().st_ino


def _no_victim_content_inside(dest: Path) -> None:
    for p in dest.rglob("*"):
        if p.is_file() and not p.is_symlink():
            assert p.read_bytes() != VICTIM_CONTENT, f"{p} has victim/hello's content"


def _run_layers(case: dict[str, Any], dest: Path) -> None:
    for layer in case["layers"]:
        _extract(case, make_tar(layer["entries"]), dest)
        if "expected_tree" in layer:
            assert walk_listing(dest) == layer["expected_tree"]
    _check_tree({k: v for k, v in case.items() if k != "expected_tree"}, dest)


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_peer_untar_case(case: dict[str, Any], tmp_path: Path) -> None:
    if case.get("requires_root") and os.geteuid() != 0:
        pytest.skip("upstream runs this case only as root (ownership / mode semantics)")
    dest = _prepare(tmp_path, case)
    outside_before = snapshot(tmp_path, exclude=dest)
    umasks = [0o022, 0o027] if "umask" in case["api"] else [None]
    for umask in umasks:
        if umask is not None:
            previous = os.umask(umask)
        try:
            _run_case(case, dest)
        finally:
            if umask is not None:
                os.umask(previous)
        assert snapshot(tmp_path, exclude=dest) == outside_before, "something outside dest changed"
        if umask is not None and umask != umasks[-1]:
            for child in dest.iterdir():
                _rmtree(child)


def _run_case(case: dict[str, Any], dest: Path) -> None:
    if "layers" in case:
        _run_layers(case, dest)
        return
    data = make_tar(case["entries"])
    expect = case["expect"]
    try:
        stats = _extract(case, data, dest)
    except EngineError as exc:
        assert expect != "ok", f"expected success, got {type(exc).__name__}: {exc}"
        if expect == "error":
            _check_expected_error(case, exc)
        elif expect == "ok_or_breakout_error":
            assert isinstance(exc, UnsafeArchiveError), f"not a breakout error: {type(exc).__name__}: {exc}"
        stats = None
    else:
        assert expect != "error", f"expected an error ({case.get('expect_error')}), extraction succeeded"
        _check_tree(case, dest)
        assert stats.entries == sum(1 for e in case["entries"] if e["type"] != "pax_global_header")
    if expect == "ok_or_breakout_error":
        _no_victim_content_inside(dest)
    _case_specific_checks(case, dest)


def _case_specific_checks(case: dict[str, Any], dest: Path) -> None:
    test = case["test"]
    if test == "TestUntarSiblingPrefixContained":
        assert not (dest / "grab").exists()
    elif test == "TestUnpackRejectsRelativeEscapeBeforeAbsoluteSymlink":
        assert not (dest / "target" / "file").exists()
    elif test == "TestHandleTarTypeBlockCharFifoDeviceRange":
        assert not (dest / "dev").exists()
    elif test == "TestXGlobalNoParent":
        assert not (dest / "foo").exists()


def _rmtree(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        for child in path.iterdir():
            _rmtree(child)
        path.rmdir()
    else:
        path.unlink()


def test_peer_cases_all_transcribed() -> None:
    assert len(CASES) == 60
