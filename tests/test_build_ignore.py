"""Hand-written .dockerignore cases: reading, ordering, parent matching, directory pruning."""

from __future__ import annotations

import pytest

from engine.build.ignore import IgnoreMatcher, MatchInfo, clean_path, read_ignore_file
from engine.errors import InvalidInputError


def test_read_ignore_file() -> None:
    text = "\ufeff# comment\n  node_modules  \r\n\n/build/\n!build/keep.txt\n ! spaced \n  # not a comment\n./a/../b"
    assert read_ignore_file(text) == [
        "node_modules", "build", "!build/keep.txt", "!spaced", "# not a comment", "b",
    ]
    assert read_ignore_file("") == []


@pytest.mark.parametrize(
    ("path", "cleaned"),
    [("", "."), ("a//b/./c/", "a/b/c"), ("../x", "../x"), ("/../x", "/x"), ("a/..", "."), ("/", "/")],
)
def test_clean_path(path: str, cleaned: str) -> None:
    assert clean_path(path) == cleaned


@pytest.mark.parametrize(
    ("patterns", "path", "ignored"),
    [
        (["*.log"], "app.log", True),
        (["*.log"], "logs/app.log", False),  # * never crosses a "/"
        (["**/*.log"], "logs/deep/app.log", True),
        (["docs"], "docs/a/b.md", True),  # a parent directory matched
        (["docs", "!docs/keep.md"], "docs/keep.md", False),
        (["docs", "!docs/keep.md"], "docs/other.md", True),
        (["!a", "a"], "a", True),  # the last matching pattern wins
        (["a", "!a", "a"], "a/b", True),
        (["tmp?"], "tmp1", True),
        (["tmp?"], "tmp12", False),
        (["[abc].txt"], "b.txt", True),
        (["*"], ".", False),  # the context root itself is never ignored
        (["./src//gen/"], "src/gen/x.py", True),  # patterns and paths are cleaned
        ([], "anything", False),
    ],
)
def test_matches(patterns: list[str], path: str, ignored: bool) -> None:
    matcher = IgnoreMatcher(patterns)
    assert matcher.matches(path) is ignored
    assert matcher.matches_using_parents(path)[0] is ignored


def test_matches_using_parents_walk_agrees_with_matches() -> None:
    matcher = IgnoreMatcher(["build", "!build/keep", "**/*.tmp", "!important.tmp"])
    tree = ["build", "build/out.o", "build/keep", "build/keep/x.tmp", "src", "src/a.tmp", "src/important.tmp",
            "important.tmp"]
    infos: dict[str, MatchInfo] = {}
    for path in tree:
        parent = path.rpartition("/")[0]
        result, infos[path] = matcher.matches_using_parents(path, infos.get(parent, MatchInfo()))
        assert result is matcher.matches(path), path


def test_bad_patterns() -> None:
    with pytest.raises(InvalidInputError, match='illegal exclusion pattern: "!"'):
        IgnoreMatcher(["ok", "!"])
    with pytest.raises(InvalidInputError, match="syntax error in pattern"):
        IgnoreMatcher(["a["])
    with pytest.raises(InvalidInputError):
        IgnoreMatcher(["x"]).matches_using_parents("a", MatchInfo((True, False)))


@pytest.mark.parametrize(
    ("patterns", "directory", "prunable"),
    [
        (["node_modules"], "node_modules", True),
        (["node_modules"], "src", False),  # not ignored at all
        (["vendor", "!vendor/keep"], "vendor", False),
        (["vendor", "!other/keep"], "vendor", True),
        (["vendor", "!*/keep"], "vendor", False),  # the wildcard could name vendor
        (["vendor", "!v?ndor/keep"], "vendor", False),
        (["vendor", "!x?ndor/keep"], "vendor", True),
        (["vendor", "!**/keep"], "vendor", False),
        (["a/b", "!a/c"], "a/b", True),
        (["a", "!a/b/c"], "a/x", True),
        (["a", "!a/b/c"], "a/b", False),
    ],
)
def test_excludes_dir_entirely(patterns: list[str], directory: str, prunable: bool) -> None:
    assert IgnoreMatcher(patterns).excludes_dir_entirely(directory) is prunable


def test_pruning_is_never_wrong() -> None:
    """Whenever a directory is called prunable, nothing below it is re-included."""
    patterns = ["a", "!a/b/c", "x/*", "!x/y*/z", "deep/**", "!deep/keep"]
    matcher = IgnoreMatcher(patterns)
    below = ["b/c", "b/c/d", "y1/z", "y/z", "keep", "q", "b", "z"]
    for directory in ["a", "a/x", "a/b", "x", "x/y1", "x/w", "deep", "deep/keep", "deep/other"]:
        if matcher.excludes_dir_entirely(directory):
            for rest in below:
                assert matcher.matches(f"{directory}/{rest}"), (directory, rest)
