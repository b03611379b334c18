"""Dockerfile parser: text -> AST, with BuildKit's line, continuation, JSON and heredoc rules (pure).

Two layers:

* :func:`parse_ast` turns the text into :class:`DockerfileAST`, a flat tuple of :class:`Node` (one per
  instruction) plus the parser directives and the escape character. This is BuildKit's
  ``parser.Parse``: it knows which instruction splits its arguments how, but not what they mean.
* :func:`parse_dockerfile` goes on to the typed layer in :mod:`engine.build.instructions`
  (``Dockerfile`` with ``.stages``, ``.meta_args``, ``.directives``, ``.escape``; one dataclass per
  instruction kind). That is what the builder consumes.

Neither layer expands variables: ``$VAR`` stays as written, quotes included. The builder expands each
instruction's words at build time with :mod:`engine.build.shell`; which fields expand is BuildKit's rule,
implemented by :func:`engine.build.instructions.expand_instruction`.

The lexical rules, as BuildKit applies them:

* Parser directives (``# syntax=``, ``# escape=``, ``# check=``) are only recognised in the comment
  lines at the very top; the first other line (blank, comment, instruction) ends them; a repeated one
  is an error. ``escape`` must be ``\\`` or a backtick.
* A line whose last non-blank character is the escape character (not itself escaped) continues on the
  next line. Inside a continuation, comment lines and blank lines are skipped (blank ones produce a
  warning, as in BuildKit). Leading whitespace is stripped from the first line only.
* The keyword is case-insensitive. Leading ``--name[=value]`` words are flags; ``--`` ends them.
* Per instruction: ADD/COPY/VOLUME take a JSON string array or whitespace-separated words; RUN/CMD/
  ENTRYPOINT/SHELL a JSON string array (``json_form``) or the rest of the line as one string; ENV/LABEL
  ``k=v`` words (quotes kept) or the legacy ``k v...`` form, stored as (key, value, "=" or "") triples;
  ARG words; FROM/EXPOSE whitespace-separated words; HEALTHCHECK a type word then like CMD;
  MAINTAINER/USER/WORKDIR/STOPSIGNAL the rest of the line; ONBUILD a nested node (``Node.sub``).
* A valid JSON array that holds anything but strings is an error; anything else that is not JSON
  falls back to the shell form.
* RUN, COPY and ADD (also under ONBUILD) in shell form read heredocs: every ``<<WORD`` / ``<<-WORD``
  (optionally ``3<<WORD``) word on the line opens one; their bodies follow the instruction, in order,
  each up to a line equal to WORD (``<<-``: after stripping leading tabs). Quoting any part of WORD
  turns off expansion of the body (``Heredoc.expand``).

Public API::

    parse_ast(text: str, *, filename: str = "Dockerfile") -> DockerfileAST
    parse_dockerfile(text: str, *, filename: str = "Dockerfile") -> instructions.Dockerfile
    parse_heredoc_word(word: str) -> Heredoc | None     # "<<-'EOF'" -> Heredoc(name="EOF", ...)
    Node, Heredoc, Directive, DockerfileAST             # frozen dataclasses
    INSTRUCTIONS: frozenset[str]                        # the lower-case keywords

Every error is a :class:`engine.errors.DockerfileError` whose message starts with ``<filename>:<line>:``.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from engine.build.shell import is_space, process_word
from engine.errors import DockerfileError, ShellExpansionError

if TYPE_CHECKING:
    from engine.build.instructions import Dockerfile

__all__ = [
    "INSTRUCTIONS",
    "Directive",
    "DockerfileAST",
    "Heredoc",
    "Node",
    "parse_ast",
    "parse_dockerfile",
    "parse_heredoc_word",
]

INSTRUCTIONS = frozenset({
    "add", "arg", "cmd", "copy", "entrypoint", "env", "expose", "from", "healthcheck", "label",
    "maintainer", "onbuild", "run", "shell", "stopsignal", "user", "volume", "workdir",
})
DIRECTIVES = frozenset({"syntax", "escape", "check"})
_HEREDOC_INSTRUCTIONS = frozenset({"add", "copy", "run"})

_WHITESPACE = re.compile(r"[\t\v\f\r ]+")
_DIRECTIVE = re.compile(r"([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*\Z", re.ASCII)
_HEREDOC = re.compile(r"(\d*)<<(-?)([^<]*)\Z")
_LEADING_TABS = re.compile(r"^\t+", re.MULTILINE)
_BOM = "\ufeff"


@dataclass(frozen=True)
class Heredoc:
    """One here-document: ``<<NAME`` (``strip_tabs`` for ``<<-``) and its body, newlines included."""

    name: str
    content: str = ""
    expand: bool = True
    strip_tabs: bool = False
    fd: int = 0

    @property
    def text(self) -> str:
        """The body as the instruction uses it: leading tabs removed from every line for ``<<-``."""
        return _LEADING_TABS.sub("", self.content) if self.strip_tabs else self.content


@dataclass(frozen=True)
class Node:
    """One instruction as written. ``args`` are raw words (no quote removal, no expansion)."""

    keyword: str  # lower-case: "copy"
    original: str  # the logical line (continuations joined, comments dropped), without heredoc bodies
    start_line: int  # 1-based
    end_line: int  # last line, heredoc bodies included
    flags: tuple[str, ...] = ()  # "--from=build", "--link", ...
    args: tuple[str, ...] = ()  # ENV/LABEL: (key, value, "=" | "") triples, flattened
    json_form: bool = False
    heredocs: tuple[Heredoc, ...] = ()
    sub: Node | None = None  # ONBUILD's trigger instruction
    comments: tuple[str, ...] = ()  # the comment lines right above it
    written_keyword: str = ""  # as typed ("COPY", "Copy")


@dataclass(frozen=True)
class Directive:
    name: str  # lower-case: "syntax", "escape", "check"
    value: str
    line: int


@dataclass(frozen=True)
class DockerfileAST:
    nodes: tuple[Node, ...]
    directives: tuple[Directive, ...] = ()
    escape: str = "\\"
    warnings: tuple[str, ...] = ()
    filename: str = "Dockerfile"

    def directive(self, name: str) -> str | None:
        for d in self.directives:
            if d.name == name:
                return d.value
        return None


class _LineError(Exception):
    """Internal: a problem with the current instruction; parse_ast adds file and line."""


# -- line handling ------------------------------------------------------------------------------------

def _lstrip(text: str) -> str:
    i = 0
    while i < len(text) and is_space(text[i]):
        i += 1
    return text[i:]


def _is_comment(line: str) -> bool:
    return _lstrip(line).startswith("#")


def _split_lines(text: str) -> list[str]:
    """Lines with their endings kept, split on "\\n" only (like BuildKit's scanner)."""
    lines = text.split("\n")
    out = [line + "\n" for line in lines[:-1]]
    if lines[-1]:
        out.append(lines[-1])
    return out


class _Directives:
    def __init__(self) -> None:
        self.done = False
        self.found: list[Directive] = []
        self.escape = "\\"
        self.continuation = _continuation_regex("\\")

    def feed(self, line: str, lineno: int) -> None:
        if self.done:
            return
        if not line.startswith("#"):
            self.done = True
            return
        match = _DIRECTIVE.match(_lstrip(line[1:]))
        name = match.group(1).lower() if match else ""
        if match is None or name not in DIRECTIVES:
            self.done = True
            return
        if any(d.name == name for d in self.found):
            raise _LineError(f"only one {name} parser directive can be used")
        value = match.group(2)
        if name == "escape":
            if value not in ("\\", "`"):
                raise _LineError(f"invalid escape token '{value}' does not match ` or \\")
            self.escape = value
            self.continuation = _continuation_regex(value)
        self.found.append(Directive(name, value, lineno))


def _continuation_regex(escape: str) -> re.Pattern[str]:
    e = re.escape(escape)
    return re.compile(rf"([^{e}]){e}[ \t]*\Z|^{e}[ \t]*\Z")


def _trim_continuation(line: str, regex: re.Pattern[str]) -> tuple[str, bool]:
    """(line without its continuation character, True when the logical line ends here)."""
    match = regex.search(line)
    if match is None:
        return line, True
    return line[: match.start()] + (match.group(1) or ""), False


# -- splitting a logical line -------------------------------------------------------------------------

def _split_command(line: str) -> tuple[str, list[str], str]:
    """(keyword as written, flags, rest of the line)."""
    parts = _WHITESPACE.split(line.strip(), maxsplit=1)
    if len(parts) < 2:
        return parts[0], [], ""
    rest, flags = _extract_flags(parts[1])
    return parts[0], flags, rest.strip()


def _extract_flags(line: str) -> tuple[str, list[str]]:
    """Leading ``--flag[=value]`` words (quotes and backslashes processed) and what follows them."""
    words: list[str] = []
    word: list[str] = []
    blank_ok = False
    quote = ""
    phase = "spaces"
    pos = 0
    n = len(line)
    while pos <= n:
        ch = line[pos] if pos < n else ""
        if phase == "spaces":
            if pos == n:
                break
            if is_space(ch):
                pos += 1
                continue
            if not line.startswith("--", pos):
                return line[pos:], words
            phase = "word"
        if pos == n:
            text = "".join(word)
            if text != "--" and (blank_ok or text):
                words.append(text)
            break
        if phase == "word":
            if is_space(ch):
                phase = "spaces"
                text = "".join(word)
                if text == "--":
                    return line[pos:], words
                if blank_ok or text:
                    words.append(text)
                word = []
                blank_ok = False
            elif ch in "'\"":
                quote, blank_ok, phase = ch, True, "quote"
            elif ch == "\\":
                if pos + 1 < n:
                    pos += 1
                    word.append(line[pos])
            else:
                word.append(ch)
        else:  # in a quote
            if ch == quote:
                phase = "word"
            elif ch == "\\":
                if pos + 1 == n:
                    phase = "word"
                else:
                    pos += 1
                    word.append(line[pos])
            else:
                word.append(ch)
        pos += 1
    return "", words


def _parse_words(rest: str, escape: str) -> list[str]:
    """Whitespace-separated words; quotes and escapes are kept in the words but group spaces."""
    words: list[str] = []
    word: list[str] = []
    blank_ok = False
    quote = ""
    phase = "spaces"
    pos = 0
    n = len(rest)
    while pos <= n:
        ch = rest[pos] if pos < n else ""
        if phase == "spaces":
            if pos == n:
                break
            if is_space(ch):
                pos += 1
                continue
            phase = "word"
        if pos == n:
            if blank_ok or word:
                words.append("".join(word))
            break
        if phase == "word":
            if is_space(ch):
                phase = "spaces"
                if blank_ok or word:
                    words.append("".join(word))
                word = []
                blank_ok = False
                pos += 1
                continue
            if ch in "'\"":
                quote, blank_ok, phase = ch, True, "quote"
            if ch == escape:
                if pos + 1 == n:
                    pos += 1
                    continue  # an escape at the end of the line is dropped
                word.append(ch)
                pos += 1
                ch = rest[pos]
            word.append(ch)
        else:
            if ch == quote:
                phase = "word"
            if ch == escape and quote != "'":
                if pos + 1 == n:
                    phase = "word"
                    pos += 1
                    continue
                word.append(ch)
                pos += 1
                ch = rest[pos]
            word.append(ch)
        pos += 1
    return words


class _NotStringArray(Exception):
    pass


def _reject_constant(name: str) -> object:
    raise ValueError(name)  # NaN / Infinity are not JSON to Go


def _parse_json(rest: str) -> list[str] | None:
    """The JSON string array in ``rest``, or None when it is not JSON (so: shell form)."""
    rest = _lstrip(rest)
    if not rest.startswith("["):
        return None
    try:
        value = json.loads(rest, parse_constant=_reject_constant)
    except ValueError:
        return None
    if not isinstance(value, list):
        return None
    if not all(isinstance(item, str) for item in value):
        raise _NotStringArray
    return value


def _maybe_json(rest: str, *, to_list: bool) -> tuple[list[str], bool]:
    try:
        parsed = _parse_json(rest)
    except _NotStringArray:
        raise _LineError("when using JSON array syntax, arrays must be comprised of strings only") from None
    if parsed is not None:
        return parsed, True
    if not rest:
        return [], False
    return (_WHITESPACE.split(rest) if to_list else [rest]), False


def _name_value(rest: str, keyword: str, escape: str) -> list[str]:
    words = _parse_words(rest, escape)
    if not words:
        return []
    if "=" not in words[0]:
        parts = _WHITESPACE.split(rest, maxsplit=1)
        if len(parts) < 2:
            raise _LineError(f"{keyword.upper()} must have two arguments")
        return [parts[0], parts[1], ""]
    args: list[str] = []
    for word in words:
        if "=" not in word:
            raise _LineError(
                f'Syntax error - can\'t find = in "{word}". Must be of the form: name=value'
            )
        key, _, value = word.partition("=")
        args += [key, value, "="]
    return args


def _healthcheck_args(rest: str) -> tuple[list[str], bool]:
    sep = 0
    while sep < len(rest) and not is_space(rest[sep]):
        sep += 1
    if sep == 0:
        return [], False
    tail, is_json = _maybe_json(_lstrip(rest[sep:]), to_list=False)
    return [rest[:sep], *tail], is_json


@dataclass
class _Parsed:
    written: str
    keyword: str
    flags: list[str]
    args: list[str] = field(default_factory=list)
    json_form: bool = False
    sub: _Parsed | None = None


def _parse_line(line: str, escape: str) -> _Parsed:
    written, flags, rest = _split_command(line)
    keyword = written.lower()
    parsed = _Parsed(written, keyword, flags)
    if keyword not in INSTRUCTIONS:
        hint = difflib.get_close_matches(keyword, sorted(INSTRUCTIONS), n=1)
        suggestion = f" (did you mean {hint[0].upper()}?)" if hint else ""
        raise _LineError(f"unknown instruction: {written}{suggestion}")
    if keyword in ("add", "copy", "volume"):
        parsed.args, parsed.json_form = _maybe_json(rest, to_list=True)
    elif keyword in ("cmd", "entrypoint", "run", "shell"):
        parsed.args, parsed.json_form = _maybe_json(rest, to_list=False)
    elif keyword in ("env", "label"):
        parsed.args = _name_value(rest, keyword, escape)
    elif keyword == "arg":
        parsed.args = _parse_words(rest, escape)
    elif keyword in ("expose", "from"):
        parsed.args = _WHITESPACE.split(rest) if rest else []
    elif keyword == "healthcheck":
        parsed.args, parsed.json_form = _healthcheck_args(rest)
    elif keyword == "onbuild":
        if rest:
            parsed.sub = _parse_line(rest, escape)
    elif rest:  # maintainer, stopsignal, user, workdir
        parsed.args = [rest]
    return parsed


# -- heredocs -----------------------------------------------------------------------------------------

def parse_heredoc_word(word: str) -> Heredoc | None:
    """The heredoc a single word opens (``<<EOF``, ``<<-"EOF"``, ``3<<EOF``), or None (BuildKit rules).

    Raises ShellExpansionError when the delimiter cannot be lexed (``<<"EOF``).
    """
    match = _HEREDOC.match(word)
    if match is None or not match.group(3):
        return None
    rest = match.group(3)
    plain = process_word(rest, {}, skip_unset=True).words
    raw = process_word(rest, {}, skip_unset=True, raw_quotes=True).words
    if len(plain) != 1 or len(raw) != 1:
        return None
    name = plain[0]
    quotes = name.count("'") + name.count('"')
    raw_quotes = raw[0].count("'") + raw[0].count('"')
    return Heredoc(
        name=name, expand=quotes == raw_quotes, strip_tabs=match.group(2) == "-",
        fd=int(match.group(1) or 0),
    )


def _heredocs_in_line(line: str) -> list[Heredoc]:
    try:
        words = process_word(line, {}, skip_unset=True, raw_quotes=True, raw_escapes=True).words
    except ShellExpansionError:
        return []
    try:
        found = [parse_heredoc_word(word) for word in words]
    except ShellExpansionError as exc:
        raise _LineError(f"invalid heredoc: {exc}") from None
    return [doc for doc in found if doc is not None]


def _can_hold_heredocs(parsed: _Parsed) -> bool:
    target = parsed.sub if parsed.keyword == "onbuild" and parsed.sub is not None else parsed
    return target.keyword in _HEREDOC_INSTRUCTIONS and not target.json_form


# -- the parser ---------------------------------------------------------------------------------------

def _to_node(
    parsed: _Parsed, original: str, start: int, end: int, heredocs: tuple[Heredoc, ...],
    comments: tuple[str, ...],
) -> Node:
    sub = None
    if parsed.sub is not None:
        sub_original = re.sub(r"(?i)^\s*onbuild\s*", "", original)
        sub = _to_node(parsed.sub, sub_original, start, end, heredocs, ())
    return Node(
        keyword=parsed.keyword, original=original, start_line=start, end_line=end,
        flags=tuple(parsed.flags), args=tuple(parsed.args), json_form=parsed.json_form,
        heredocs=heredocs, sub=sub, comments=comments, written_keyword=parsed.written,
    )


def parse_ast(text: str, *, filename: str = "Dockerfile") -> DockerfileAST:
    """Parse Dockerfile text into nodes (no variable expansion); raise DockerfileError on bad input."""
    lines = _split_lines(text)
    if lines and lines[0].startswith(_BOM):
        lines[0] = lines[0][len(_BOM):]
    directives = _Directives()
    nodes: list[Node] = []
    warnings: list[str] = []
    comments: list[str] = []
    i = 0  # index of the next unread line; i is also the 1-based number of the last line read

    def fail(message: str, line: int) -> DockerfileError:
        return DockerfileError(message, file=filename, line=line)

    while i < len(lines):
        raw = lines[i]
        i += 1
        token = _lstrip(raw.rstrip("\r\n"))
        if _is_comment(raw):
            comment = token[1:].strip()
            comments = [*comments, comment] if comment else []
        try:
            before = len(directives.found)
            directives.feed(token, i)
        except _LineError as exc:
            raise fail(str(exc), i) from None
        if len(directives.found) > before and comments:
            comments.pop()
        if _is_comment(token):
            token = ""
        start = i
        logical, ended = _trim_continuation(token, directives.continuation)
        if ended and not logical:
            continue
        empty_continuation = False
        while not ended and i < len(lines):
            raw = lines[i]
            i += 1
            part = raw.rstrip("\r\n")
            if _is_comment(raw):
                continue
            if not _lstrip(part):
                empty_continuation = True
                continue
            part, ended = _trim_continuation(part, directives.continuation)
            logical += part
        if empty_continuation:
            warnings.append(f"{filename}:{i}: empty continuation line found in: {logical}")
        try:
            parsed = _parse_line(logical, directives.escape)
            heredocs: list[Heredoc] = []
            if _can_hold_heredocs(parsed) and "<<" in logical:
                heredocs = _heredocs_in_line(logical)
        except _LineError as exc:
            raise fail(str(exc), start) from None
        bodies: list[Heredoc] = []
        for doc in heredocs:
            body: list[str] = []
            while True:
                if i >= len(lines):
                    raise fail(f"unterminated heredoc {doc.name}", start)
                raw = lines[i]
                i += 1
                candidate = raw.rstrip("\r\n")
                if doc.strip_tabs:
                    candidate = candidate.lstrip("\t")
                if candidate == doc.name:
                    break
                body.append(raw)
            bodies.append(Heredoc(doc.name, "".join(body), doc.expand, doc.strip_tabs, doc.fd))
        nodes.append(_to_node(parsed, logical, start, i, tuple(bodies), tuple(comments)))
        comments = []
    if not nodes:
        raise fail("file with no instructions", max(len(lines), 1))
    return DockerfileAST(
        nodes=tuple(nodes), directives=tuple(directives.found), escape=directives.escape,
        warnings=tuple(warnings), filename=filename,
    )


def parse_dockerfile(text: str, *, filename: str = "Dockerfile") -> Dockerfile:
    """Parse Dockerfile text into typed stages and instructions (see engine.build.instructions)."""
    from engine.build.instructions import build_dockerfile  # the typed layer builds on this module

    return build_dockerfile(parse_ast(text, filename=filename))
