"""Debouncing (pure, with a fake clock), the change filter, and sync copies into a directory tree."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.watch.changes import ChangeBuffer, change_filter
from engine.watch.rules import WatchRule
from engine.watch.sync import copy_into


def test_a_burst_becomes_one_batch_after_the_quiet_period() -> None:
    buf = ChangeBuffer(quiet=0.2, cap=1.5)
    assert buf.due_at() is None and buf.take(0.0) is None
    for i in range(20):  # 20 saves, 10 ms apart
        buf.add([f"f{i % 3}"], 10.0 + i * 0.01)
    assert buf.take(10.3) is None  # 0.11 s after the last save: still quiet-waiting
    assert buf.due_at() == pytest.approx(10.39)
    assert buf.take(10.39) == ("f0", "f1", "f2")
    assert buf.due_at() is None and buf.pending == ()


def test_the_cap_ends_a_never_quiet_burst() -> None:
    buf = ChangeBuffer(quiet=0.2, cap=1.0)
    t = 0.0
    while t < 0.99:
        buf.add(["a"], t)
        assert buf.take(t) is None
        t += 0.1
    assert buf.due_at() == pytest.approx(1.0)
    assert buf.take(1.0) == ("a",)


def test_changes_after_a_take_start_the_next_batch() -> None:
    buf = ChangeBuffer(quiet=0.2, cap=1.0)
    buf.add(["a"], 0.0)
    assert buf.take(0.2) == ("a",)
    assert buf.add(["b"], 0.5) and not buf.add([], 0.6)
    assert buf.pending == ("b",) and buf.due_at() == pytest.approx(0.7)


def test_bad_periods() -> None:
    with pytest.raises(ValueError):
        ChangeBuffer(quiet=0, cap=1)
    with pytest.raises(ValueError):
        ChangeBuffer(quiet=1, cap=0.5)


def test_change_filter(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    relative = change_filter(ctx, ctx / "Dockerfile", lambda rel: rel.startswith("build/"))
    assert relative(str(ctx / "site/index.html")) == "site/index.html"
    assert relative(str(ctx / "Dockerfile")) == "Dockerfile"
    assert relative(str(ctx / "build/out.o")) is None
    assert relative(str(ctx / ".git/index")) is None
    assert relative(str(ctx / "site/.index.html.swp")) is None
    assert relative(str(tmp_path / "elsewhere")) is None
    outside = change_filter(ctx, tmp_path / "df" / "Dev.Dockerfile", lambda rel: True)
    assert outside(str(tmp_path / "df" / "Dev.Dockerfile")) == "Dev.Dockerfile"  # counts even if ignored


def test_copy_into_a_root_filesystem(tmp_path: Path) -> None:
    ctx, root = tmp_path / "ctx", tmp_path / "rootfs"
    (ctx / "site/new").mkdir(parents=True)
    (ctx / "site/index.html").write_text("hello")
    (ctx / "site/new/a.html").write_text("a")
    (ctx / "site/new/a.draft").write_text("draft")
    os.symlink("index.html", ctx / "site/link.html")
    (root / "www").mkdir(parents=True)
    (root / "www/old.html").write_text("old")
    os.symlink("/www", root / "srv")  # an absolute link inside the container resolves inside the root
    rule = WatchRule("site", "sync", "/srv", ignore=("*.draft",))
    written = copy_into(ctx, root, rule, ["site/index.html", "site/new", "site/link.html", "site/old.html"])
    assert written == 3
    assert (root / "www/index.html").read_text() == "hello"
    assert (root / "www/new/a.html").read_text() == "a"
    assert not (root / "www/new/a.draft").exists()
    assert os.readlink(root / "www/link.html") == "index.html"
    assert not (root / "www/old.html").exists()  # gone from the context: removed from the container
    assert not list(root.rglob("*.dockyard-sync"))
