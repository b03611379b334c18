""".dockerignore / .containerignore: reading the file and matching paths, as moby/patternmatcher does (pure).

Rules (Docker's, not .gitignore's):

* A pattern is matched against the whole slash-separated path relative to the context root, after
  Go's ``path.Clean`` of both. ``*`` matches any run of non-``/`` characters, ``?`` one non-``/``
  character, ``[a-z]`` / ``[^a-z]`` a character class, ``\\`` escapes the next character, and ``**``
  matches any number of directories (``**/`` and a leading or trailing ``**`` included).
* A path is also ignored when one of its parent directories matches (``docs`` ignores ``docs/a/b``).
* Patterns apply in order; ``!pattern`` re-includes what earlier patterns ignored, and a later plain
  pattern can ignore it again. The last pattern that matches wins.
* In the file: lines starting with ``#`` are comments, blank lines are dropped, surrounding whitespace is
  trimmed, patterns are cleaned and a leading ``/`` is dropped (``/foo`` is ``foo``).

Public API::

    read_ignore_file(text: str) -> list[str]            # the file's patterns, in order
    IgnoreMatcher(patterns: Iterable[str])              # raises InvalidInputError for a bad pattern
        .matches(relpath: str) -> bool                  # is it excluded from the context?
        .matches_using_parents(relpath, parent: MatchInfo = MatchInfo()) -> tuple[bool, MatchInfo]
                                                        # the same, reusing the parent dir's result
                                                        # during a top-down walk
        .excludes_dir_entirely(reldir: str) -> bool     # True: the directory is ignored and no
                                                        # "!" pattern can re-include anything below
                                                        # it, so a walk may skip it without reading it
        .patterns: tuple[IgnorePattern, ...]; .has_exclusions: bool

``matches`` is patternmatcher's ``MatchesOrParentMatches`` (what BuildKit uses for contexts), with the
package-level quirk that the context root (".") itself never matches. A pattern whose character class is
valid glob syntax but not a valid regular expression (``[z-a]``) is accepted when the matcher is built and
raises InvalidInputError each time it is used, as upstream does.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

from engine.errors import InvalidInputError

__all__ = ["IgnoreMatcher", "IgnorePattern", "MatchInfo", "clean_path", "read_ignore_file"]

_BOM = "\ufeff"
_REGEX_ESCAPE = frozenset(".+()|{}$")


def clean_path(path: str) -> str:
    """Go's path.Clean: the shortest equivalent slash path ("" -> ".", "a//b/../c/" -> "a/c")."""
    if not path:
        return "."
    rooted = path.startswith("/")
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append("..")
            continue
        parts.append(part)
    joined = "/".join(parts)
    if rooted:
        return "/" + joined
    return joined or "."


def _parent(path: str) -> str:
    """Go's path.Dir."""
    return clean_path(path[: path.rfind("/") + 1])


def read_ignore_file(text: str) -> list[str]:
    """The patterns of a .dockerignore file, in order (moby/patternmatcher ignorefile.ReadAll)."""
    patterns: list[str] = []
    for number, line in enumerate(text.split("\n")):
        if line.endswith("\r"):
            line = line[:-1]
        if number == 0 and line.startswith(_BOM):
            line = line[len(_BOM):]
        if line.startswith("#"):
            continue
        pattern = line.strip()
        if not pattern:
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = clean_path(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
        patterns.append("!" + pattern if invert else pattern)
    return patterns


class _BadPattern(Exception):
    pass


def _check_glob(pattern: str) -> None:
    """Raise _BadPattern where Go's filepath.Match would return ErrBadPattern (Unix rules)."""

    def escaped_char(i: int) -> int:
        if i >= len(pattern) or pattern[i] in "-]":
            raise _BadPattern
        if pattern[i] == "\\":
            i += 1
            if i >= len(pattern):
                raise _BadPattern
        i += 1
        if i >= len(pattern):
            raise _BadPattern  # a class must still be closed
        return i

    i = 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "\\":
            if i >= len(pattern):
                raise _BadPattern
            i += 1
        elif ch == "[":
            if i < len(pattern) and pattern[i] == "^":
                i += 1
            ranges = 0
            while True:
                if i < len(pattern) and pattern[i] == "]" and ranges:
                    i += 1
                    break
                i = escaped_char(i)
                if pattern[i] == "-":
                    i = escaped_char(i + 1)
                ranges += 1


def _glob_regex(pattern: str) -> tuple[str, str]:
    """(match type, regex body) the way patternmatcher compiles a cleaned pattern for "/" paths."""
    out: list[str] = []
    kind = "exact"
    i = 0
    first = True
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "*":
            if i < len(pattern) and pattern[i] == "*":
                i += 1
                if i < len(pattern) and pattern[i] == "/":
                    i += 1
                if i >= len(pattern):
                    if kind == "exact":
                        kind = "prefix"
                    else:
                        out.append(".*")
                        kind = "regexp"
                else:
                    out.append("(.*/)?")
                    kind = "regexp"
                if first:
                    kind = "suffix"
            else:
                out.append("[^/]*")
                kind = "regexp"
        elif ch == "?":
            out.append("[^/]")
            kind = "regexp"
        elif ch in _REGEX_ESCAPE:
            out.append("\\" + ch)
        elif ch == "\\":
            if i < len(pattern):
                out.append("\\" + pattern[i])
                i += 1
                kind = "regexp"
            else:
                out.append("\\")
        elif ch in "[]":
            out.append(ch)
            kind = "regexp"
        else:
            out.append(ch)
        first = False
    return kind, "".join(out)


def _compile(body: str) -> re.Pattern[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # Python's "possible nested set" hint
        try:
            return re.compile(body)
        except re.error as exc:
            raise _BadPattern(str(exc)) from None


class IgnorePattern:
    """One cleaned pattern; ``exclusion`` is True for a ``!`` pattern (the "!" is not in ``text``)."""

    __slots__ = ("_kind", "_regex", "dirs", "exclusion", "text")

    def __init__(self, text: str, exclusion: bool) -> None:
        self.text = text
        self.exclusion = exclusion
        self.dirs = tuple(text.split("/"))
        self._kind: str | None = None
        self._regex: re.Pattern[str] | None = None

    def __repr__(self) -> str:
        return f"IgnorePattern({'!' if self.exclusion else ''}{self.text})"

    def match(self, path: str) -> bool:
        """Does this pattern match ``path`` exactly (no parent logic)? InvalidInputError if unusable."""
        if self._kind is None:
            kind, body = _glob_regex(self.text)
            if kind == "regexp":
                try:
                    self._regex = _compile(body)
                except _BadPattern:
                    raise InvalidInputError(
                        f'.dockerignore: syntax error in pattern "{self.text}"'
                    ) from None
            self._kind = kind
        if self._kind == "exact":
            return path == self.text
        if self._kind == "prefix":
            return path.startswith(self.text[:-2])
        if self._kind == "suffix":
            suffix = self.text[2:]
            return path.endswith(suffix) or (suffix.startswith("/") and path == suffix[1:])
        assert self._regex is not None
        return self._regex.fullmatch(path) is not None

    def may_match_below(self, dirs: list[str]) -> bool:
        """Could this pattern match ``dirs`` or something below it? (conservative: True when unsure)"""
        if "**" in self.text:
            return True
        for part, name in zip(self.dirs, dirs, strict=False):
            kind, body = _glob_regex(part)
            if kind == "exact":
                if part != name:
                    return False
                continue
            try:
                if _compile(body).fullmatch(name) is None:
                    return False
            except _BadPattern:
                return True
        return True


@dataclass(frozen=True)
class MatchInfo:
    """Per-pattern results for a directory, handed to its children by matches_using_parents."""

    parent_matched: tuple[bool, ...] = ()


class IgnoreMatcher:
    """An ordered list of .dockerignore patterns (see the module docstring)."""

    def __init__(self, patterns: Iterable[str]) -> None:
        compiled: list[IgnorePattern] = []
        for raw in patterns:
            text = raw.strip()
            if not text:
                continue
            text = clean_path(text)
            exclusion = text.startswith("!")
            if exclusion:
                if len(text) == 1:
                    raise InvalidInputError('.dockerignore: illegal exclusion pattern: "!"')
                text = text[1:]
            try:
                _check_glob(text)
            except _BadPattern:
                raise InvalidInputError(f'.dockerignore: syntax error in pattern "{raw.strip()}"') from None
            compiled.append(IgnorePattern(text, exclusion))
        self.patterns: tuple[IgnorePattern, ...] = tuple(compiled)
        self.has_exclusions = any(p.exclusion for p in compiled)

    def __repr__(self) -> str:
        return f"IgnoreMatcher({[repr(p) for p in self.patterns]})"

    def matches(self, relpath: str) -> bool:
        """True when ``relpath`` (slash-separated, relative to the context) is ignored."""
        path = clean_path(relpath)
        if path == "." or not self.patterns:
            return False
        parent = _parent(path)
        parent_dirs = parent.split("/") if parent != "." else []
        matched = False
        for pattern in self.patterns:
            if pattern.exclusion != matched:
                continue  # an inclusion cannot change a match, an exclusion cannot change a non-match
            hit = pattern.match(path)
            if not hit:
                hit = any(pattern.match("/".join(parent_dirs[: i + 1])) for i in range(len(parent_dirs)))
            if hit:
                matched = not pattern.exclusion
        return matched

    def matches_using_parents(self, relpath: str, parent: MatchInfo = MatchInfo()) -> tuple[bool, MatchInfo]:
        """Like :meth:`matches`, given the MatchInfo this returned for the parent directory.

        Walk top-down, passing each directory's MatchInfo to its entries; with an empty MatchInfo it
        falls back to checking every parent, so any entry point is correct.
        """
        known = parent.parent_matched
        if known and len(known) != len(self.patterns):
            raise InvalidInputError("wrong number of values in parent MatchInfo")
        path = clean_path(relpath)
        if path == ".":
            return False, MatchInfo((False,) * len(self.patterns))
        parent_path = _parent(path)
        parent_dirs = parent_path.split("/") if parent_path != "." else []
        matched = False
        results: list[bool] = []
        for index, pattern in enumerate(self.patterns):
            hit = bool(known) and known[index]
            if not hit and pattern.exclusion == matched:
                hit = pattern.match(path)
                if not hit and not known:
                    hit = any(pattern.match("/".join(parent_dirs[: i + 1])) for i in range(len(parent_dirs)))
            results.append(hit)
            if hit:
                matched = not pattern.exclusion
        return matched, MatchInfo(tuple(results))

    def excludes_dir_entirely(self, reldir: str) -> bool:
        """True when ``reldir`` is ignored and no ``!`` pattern could re-include anything inside it."""
        if not self.matches(reldir):
            return False
        dirs = clean_path(reldir).split("/")
        return not any(p.exclusion and p.may_match_below(dirs) for p in self.patterns)
