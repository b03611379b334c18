"""The build context: source selection (globs, directories, .dockerignore) and the COPY content hash."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.build.context import BuildContext, read_ignore_patterns
from engine.errors import BuildError


def make(tmp_path: Path, files: dict[str, str], ignore: str | None = None) -> BuildContext:
    root = tmp_path / "ctx"
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    root.mkdir(exist_ok=True)
    if ignore is not None:
        (root / ".dockerignore").write_text(ignore)
    return BuildContext(root, read_ignore_patterns(root, None), hash_cache=tmp_path / "hashes.json")


def rels(ctx: BuildContext, source: str) -> list[str]:
    return [entry.rel for top in ctx.select(source) for entry in ctx.walk(top)]


def test_globs_match_per_component(tmp_path: Path) -> None:
    ctx = make(tmp_path, {"a.txt": "", "b.txt": "", "c.md": "", "sub/d.txt": "", "sub/e.md": ""})
    assert rels(ctx, "*.txt") == ["a.txt", "b.txt"]
    assert rels(ctx, "sub/*.md") == ["sub/e.md"]
    assert rels(ctx, "?.md") == ["c.md"]
    assert rels(ctx, "[ab].txt") == ["a.txt", "b.txt"]


def test_directory_walk_is_sorted_and_recursive(tmp_path: Path) -> None:
    ctx = make(tmp_path, {"src/b/x": "", "src/a": "", "src/b/y": ""})
    assert rels(ctx, "src") == ["src", "src/a", "src/b", "src/b/x", "src/b/y"]
    assert rels(ctx, "./src/../src/") == ["src", "src/a", "src/b", "src/b/x", "src/b/y"]


def test_dockerignore_excludes_and_reincludes(tmp_path: Path) -> None:
    ctx = make(tmp_path, {"app/main.py": "", "app/cache.pyc": "", "logs/a.log": "", "logs/keep.log": "",
                          "secret.env": ""}, ignore="**/*.pyc\nlogs\n!logs/keep.log\nsecret.env\n")
    everything = rels(ctx, ".")
    assert "app/main.py" in everything and "app/cache.pyc" not in everything
    assert "logs/keep.log" in everything and "logs/a.log" not in everything
    assert "secret.env" not in everything
    with pytest.raises(BuildError, match=r"excluded by \.dockerignore"):
        ctx.select("secret.env")


def test_missing_and_outside_sources_are_errors(tmp_path: Path) -> None:
    ctx = make(tmp_path, {"a": ""})
    with pytest.raises(BuildError, match="not found"):
        ctx.select("nope")
    with pytest.raises(BuildError, match="outside the build context"):
        ctx.select("../etc/passwd")
    with pytest.raises(BuildError, match="matches nothing"):
        ctx.select("*.zip")


def test_hash_ignores_mtime_but_not_content_mode_or_name(tmp_path: Path) -> None:
    ctx = make(tmp_path, {"src/a.txt": "one", "src/b.txt": "two"})
    first = ctx.content_hash(["src"])
    os.utime(ctx.root / "src/a.txt", (1, 1))
    assert BuildContext(ctx.root, hash_cache=tmp_path / "hashes.json").content_hash(["src"]) == first
    (ctx.root / "src/a.txt").write_text("ONE")
    edited = BuildContext(ctx.root).content_hash(["src"])
    assert edited != first
    os.chmod(ctx.root / "src/a.txt", 0o600)
    assert BuildContext(ctx.root).content_hash(["src"]) != edited
    os.rename(ctx.root / "src/b.txt", ctx.root / "src/c.txt")
    assert BuildContext(ctx.root).content_hash(["src"]) not in (first, edited)


def test_hash_covers_symlink_targets(tmp_path: Path) -> None:
    ctx = make(tmp_path, {"f": "x"})
    os.symlink("f", ctx.root / "link")
    first = ctx.content_hash(["link"])
    os.unlink(ctx.root / "link")
    os.symlink("g", ctx.root / "link")
    assert BuildContext(ctx.root).content_hash(["link"]) != first


def test_hash_cache_is_keyed_by_stat(tmp_path: Path) -> None:
    """A stale cached digest is never used: same size, new content and mtime -> new hash."""
    ctx = make(tmp_path, {"f": "aaaa"})
    first = ctx.content_hash(["f"])
    assert (tmp_path / "hashes.json").exists()
    (ctx.root / "f").write_text("bbbb")
    os.utime(ctx.root / "f", ns=(5, 5))
    again = BuildContext(ctx.root, hash_cache=tmp_path / "hashes.json")
    assert again.content_hash(["f"]) != first


def test_ignore_file_beside_dockerfile_wins(tmp_path: Path) -> None:
    ctx = make(tmp_path, {"a": "", "b": ""}, ignore="a\n")
    dockerfile = ctx.root / "Custom.Dockerfile"
    dockerfile.write_text("FROM scratch\n")
    (ctx.root / "Custom.Dockerfile.dockerignore").write_text("b\n")
    assert read_ignore_patterns(ctx.root, dockerfile) == ["b"]
    assert read_ignore_patterns(ctx.root, None) == ["a"]
