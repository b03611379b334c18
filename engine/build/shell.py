"""Shell-style word expansion and splitting, the way BuildKit's Dockerfile frontend does it (pure).

This is the lexer every Dockerfile instruction that "expands variables" goes through at build time
(BuildKit's ``shell.Lex``: ``ProcessWord`` / ``ProcessWords``). It is *not* a shell: there is no command
substitution, globbing or arithmetic. It handles:

* ``$name`` and ``${name}``; names are letters, digits and ``_``; ``$1`` / ``$001`` (a run of digits) and
  the special parameters ``$@ $* $# $? $- $$ $! $0`` are recognised but never set, so they expand to "";
  a ``$`` not followed by a name stays a literal ``$``;
* ``${v:-w}`` ``${v-w}`` (default), ``${v:+w}`` ``${v+w}`` (alternative), ``${v:?msg}`` ``${v?msg}``
  (error when unset / empty), ``${v#pat}`` ``${v##pat}`` ``${v%pat}`` ``${v%%pat}`` (shortest / longest
  prefix or suffix removal, ``*`` and ``?`` wildcards) and ``${v/pat/repl}`` ``${v//pat/repl}``;
  with the colon forms an empty value counts as unset; ``w`` may itself contain expansions;
* single quotes (everything literal), double quotes (only ``$`` and the escape character are special;
  the escape character escapes only ``"``, ``$`` and itself there), and the escape character outside
  quotes (``\\`` by default, or a backtick after ``# escape=```), which makes the next character literal;
  a trailing escape character is dropped.

Public API::

    expand_word(word: str, env: Mapping[str, str], *, escape: str = "\\\\") -> str
        BuildKit ProcessWord: quotes removed, variables expanded, spaces kept.
    split_words(word: str, env: Mapping[str, str], *, escape: str = "\\\\") -> list[str]
        BuildKit ProcessWords: the same, then split on unquoted whitespace (whitespace that comes from
        an unquoted variable value splits too; quoted text never does; empty words are dropped).
    process_word(word, env, *, escape="\\\\", skip_unset=False, raw_quotes=False, raw_escapes=False,
                 skip_quotes=False) -> WordResult
        Everything at once: ``.word``, ``.words``, and the variable names looked up, split into
        ``.matched`` (found in env) and ``.unmatched`` (not found) - the inputs a cache key depends on.
        ``skip_unset`` leaves references to unset variables as written (used for heredoc detection),
        ``raw_quotes`` / ``raw_escapes`` keep quote / escape characters in the output, and
        ``skip_quotes`` treats quotes as ordinary characters (BuildKit expands COPY heredoc bodies so).

Every malformed word (unterminated quote, ``${}``, ``${v:=x}``, ``${v:?}`` on an empty value, a bad
pattern, ...) raises :class:`engine.errors.ShellExpansionError` with a one-line message
``failed to process "<word>": <reason>``.

Deliberate differences from BuildKit, none reachable by valid input: ``${v//p/r}`` inserts ``r``
literally (Go's regexp would interpret ``$1`` in it), and nested ``${v:-...}`` inside a word being split
keeps the text before it (BuildKit's shared word buffer drops it, a bug).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from engine.errors import ShellExpansionError

__all__ = ["WordResult", "expand_word", "is_space", "process_word", "split_words"]

_SPECIAL_PARAMS = frozenset("@*#?-$!0")
_REGEX_META = frozenset("[]{}.+()|^$")


def is_space(ch: str) -> bool:
    """Go's unicode.IsSpace (the whitespace BuildKit splits words on)."""
    if ord(ch) < 0x100:
        return ch in "\t\n\v\f\r \x85\xa0"
    return ch.isspace()


@dataclass(frozen=True)
class WordResult:
    """The outcome of :func:`process_word`."""

    word: str
    words: tuple[str, ...]
    matched: frozenset[str]
    unmatched: frozenset[str]


class _LexError(Exception):
    """Internal: a reason, wrapped into ShellExpansionError with the whole word by process_word."""


class _Words:
    """Accumulates split words: unquoted whitespace ends a word, quoted text is raw."""

    __slots__ = ("buf", "in_word", "words")

    def __init__(self) -> None:
        self.buf: list[str] = []
        self.words: list[str] = []
        self.in_word = False

    def add_char(self, ch: str) -> None:
        if is_space(ch):
            if self.in_word and self.buf:
                self.words.append("".join(self.buf))
                self.buf.clear()
                self.in_word = False
        else:
            self.add_raw_char(ch)

    def add_raw_char(self, ch: str) -> None:
        self.buf.append(ch)
        self.in_word = True

    def add_string(self, text: str) -> None:
        for ch in text:
            self.add_char(ch)

    def add_raw_string(self, text: str) -> None:
        if text:
            self.buf.append(text)
        self.in_word = True

    def result(self) -> list[str]:
        if self.buf:
            self.words.append("".join(self.buf))
            self.buf.clear()
            self.in_word = False
        return self.words


class _Lexer:
    def __init__(
        self, text: str, env: Mapping[str, str], escape: str, *, skip_unset: bool, raw_quotes: bool,
        raw_escapes: bool, skip_quotes: bool,
    ) -> None:
        self.text = text
        self.pos = 0
        self.env = env
        self.escape = escape
        self.skip_unset = skip_unset
        self.raw_quotes = raw_quotes
        self.raw_escapes = raw_escapes
        self.skip_quotes = skip_quotes
        self.matched: set[str] = set()
        self.unmatched: set[str] = set()

    # -- scanner ------------------------------------------------------------------------------------
    def peek(self) -> str:
        """The next character, or "" at the end."""
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def next(self) -> str:
        ch = self.peek()
        if ch:
            self.pos += 1
        return ch

    # -- grammar ------------------------------------------------------------------------------------
    def process_stop_on(self, stop: str, raw_escapes: bool) -> tuple[str, list[str]]:
        """Read up to ``stop`` (consumed; "" = end of input) and return (text, split words)."""
        result: list[str] = []
        words = _Words()
        saved, self.raw_escapes = self.raw_escapes, raw_escapes
        try:
            while (ch := self.peek()) != "":
                if stop and ch == stop:
                    self.next()
                    return "".join(result), words.result()
                if ch == "$":
                    value = self.process_dollar()
                    result.append(value)
                    words.add_string(value)
                elif ch in "'\"" and not self.skip_quotes:
                    value = self.process_single_quote() if ch == "'" else self.process_double_quote()
                    result.append(value)
                    words.add_raw_string(value)
                else:
                    ch = self.next()
                    if ch == self.escape:
                        if self.raw_escapes:
                            words.add_raw_char(ch)
                            result.append(ch)
                        ch = self.next()
                        if ch == "":
                            break
                        words.add_raw_char(ch)
                    else:
                        words.add_char(ch)
                    result.append(ch)
            if stop:
                raise _LexError(f"unexpected end of statement while looking for matching {stop}")
            return "".join(result), words.result()
        finally:
            self.raw_escapes = saved

    def process_single_quote(self) -> str:
        result: list[str] = []
        quote = self.next()
        if self.raw_quotes:
            result.append(quote)
        while True:
            ch = self.next()
            if ch == "":
                raise _LexError("unexpected end of statement while looking for matching single-quote")
            if ch == "'":
                if self.raw_quotes:
                    result.append(ch)
                return "".join(result)
            result.append(ch)

    def process_double_quote(self) -> str:
        result: list[str] = []
        quote = self.next()
        if self.raw_quotes:
            result.append(quote)
        while True:
            ch = self.peek()
            if ch == "":
                raise _LexError("unexpected end of statement while looking for matching double-quote")
            if ch == '"':
                self.next()
                if self.raw_quotes:
                    result.append(ch)
                return "".join(result)
            if ch == "$":
                result.append(self.process_dollar())
                continue
            ch = self.next()
            if ch == self.escape:
                if self.raw_escapes:
                    result.append(ch)
                following = self.peek()
                if following == "":
                    continue  # an escape at the very end is dropped
                if following in ('"', "$", self.escape):
                    ch = self.next()
            result.append(ch)

    def process_dollar(self) -> str:
        self.next()  # the "$"
        if self.peek() != "{":
            name = self.process_name()
            if not name:
                return "$"
            value = self.lookup(name)
            if value is None:
                return "$" + name if self.skip_unset else ""
            return value

        self.next()  # the "{"
        first = self.peek()
        if first == "":
            raise _LexError("syntax error: missing '}'")
        if first in "{}:":
            raise _LexError("syntax error: bad substitution")
        name = self.process_name()
        ch = self.next()
        if ch == "":
            raise _LexError("syntax error: missing '}'")
        if ch == "}":
            value = self.lookup(name)
            if value is None:
                return "${" + name + "}" if self.skip_unset else ""
            return value
        if ch == "/":
            return self._substitute(name)
        modifier = ch
        null_is_unset = False
        if ch == ":":
            null_is_unset = True
            ch = self.next()
            modifier += ch
        if ch not in ("+", "-", "?", "#", "%"):
            raise _LexError(f"unsupported modifier ({modifier}) in substitution")
        pattern_op = ch in ("#", "%")
        if null_is_unset and pattern_op:
            raise _LexError(f"unsupported modifier ({modifier}) in substitution")
        word = self._read_until("}", raw_escapes=pattern_op, missing="syntax error: missing '}'")
        value = self.lookup(name)
        if value is None and self.skip_unset:
            return "${" + name + modifier + word + "}"
        unset_or_null = value is None or (null_is_unset and value == "")
        if ch == "-":
            return word if unset_or_null else (value or "")
        if ch == "+":
            return "" if unset_or_null else word
        if ch == "?":
            if value is None:
                raise _LexError(f"{name}: {word or 'is not allowed to be unset'}")
            if unset_or_null:
                raise _LexError(f"{name}: {word or 'is not allowed to be empty'}")
            return value
        greedy = word.startswith(ch)
        if greedy:
            word = word[1:]
        if ch == "#":
            return _trim_prefix(word, value or "", greedy)
        return _trim_suffix(word, value or "", greedy)

    def _read_until(self, stop: str, *, raw_escapes: bool, missing: str) -> str:
        try:
            text, _ = self.process_stop_on(stop, raw_escapes)
        except _LexError:
            if self.peek() == "":
                raise _LexError(missing) from None
            raise
        return text

    def _substitute(self, name: str) -> str:
        replace_all = self.peek() == "/"
        if replace_all:
            self.next()
        pattern = self._read_until("/", raw_escapes=True, missing="syntax error: missing '/' in ${}")
        replacement = self._read_until("}", raw_escapes=True, missing="syntax error: missing '}'")
        value = self.lookup(name)
        if value is None and self.skip_unset:
            return "${" + name + "/" + pattern + "/" + replacement + "}"
        regex = _shell_pattern_regex(pattern, greedy=True)
        value = value or ""
        if replace_all:
            return regex.sub(lambda _m: replacement, value)
        found = regex.search(value)
        if found is None:
            return value
        return value[: found.start()] + replacement + value[found.end():]

    def process_name(self) -> str:
        ch = self.peek()
        if ch.isdecimal():
            start = self.pos
            while self.peek().isdecimal():
                self.next()
            return self.text[start:self.pos]
        if ch and ch in _SPECIAL_PARAMS:
            return self.next()
        start = self.pos
        while (ch := self.peek()) and (ch.isalpha() or ch.isdecimal() or ch == "_"):
            self.next()
        return self.text[start:self.pos]

    def lookup(self, name: str) -> str | None:
        value = self.env.get(name)
        (self.unmatched if value is None else self.matched).add(name)
        return value


def _shell_pattern_regex(pattern: str, *, greedy: bool, anchored: bool = False) -> re.Pattern[str]:
    """A ``${v#pat}``-style pattern (``*``, ``?``, backslash escapes; no brackets) as a regex."""
    out: list[str] = ["^"] if anchored else []
    star = ".*" if greedy else ".*?"
    i = 0
    while i < len(pattern):
        tok = pattern[i]
        i += 1
        if tok == "*":
            out.append(star)
        elif tok == "?":
            out.append(".")
        elif tok == "\\":
            following = pattern[i] if i < len(pattern) else ""
            if following in ("}", "/"):
                continue  # the escape only protected the ${} syntax; the char follows as a literal
            if following not in ("*", "?", "\\"):
                shown = following or "EOF"
                raise _LexError(f"invalid pattern ({pattern}) in substitution: invalid escape '\\{shown}'")
            out.append("\\" + following)
            i += 1
        elif tok in _REGEX_META:
            out.append("\\" + tok)
        else:
            out.append(re.escape(tok))
    return re.compile("".join(out))


def _trim_prefix(pattern: str, value: str, greedy: bool) -> str:
    found = _shell_pattern_regex(pattern, greedy=greedy, anchored=True).match(value)
    return value[found.end():] if found else value


def _reverse_pattern(pattern: str) -> str:
    """Reverse a pattern keeping each escape in front of the character it escapes."""
    pieces: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\" and i + 1 < len(pattern):
            pieces.append(pattern[i:i + 2])
            i += 2
        else:
            pieces.append(pattern[i])
            i += 1
    return "".join(reversed(pieces))


def _trim_suffix(pattern: str, value: str, greedy: bool) -> str:
    # The shortest rightmost match is the shortest leftmost match of the reversed pattern in the
    # reversed value.
    return _trim_prefix(_reverse_pattern(pattern), value[::-1], greedy)[::-1]


def process_word(
    word: str, env: Mapping[str, str], *, escape: str = "\\", skip_unset: bool = False,
    raw_quotes: bool = False, raw_escapes: bool = False, skip_quotes: bool = False,
) -> WordResult:
    """Expand ``word`` against ``env`` and split it; see the module docstring for the options."""
    if len(escape) != 1:
        raise ShellExpansionError(f"invalid escape character {escape!r}: must be one character")
    lexer = _Lexer(
        word, env, escape, skip_unset=skip_unset, raw_quotes=raw_quotes, raw_escapes=raw_escapes,
        skip_quotes=skip_quotes,
    )
    try:
        text, words = lexer.process_stop_on("", raw_escapes)
    except _LexError as exc:
        raise ShellExpansionError(f'failed to process "{word}": {exc}') from None
    return WordResult(text, tuple(words), frozenset(lexer.matched), frozenset(lexer.unmatched))


def expand_word(word: str, env: Mapping[str, str], *, escape: str = "\\") -> str:
    """BuildKit ``ProcessWord``: remove quotes and escapes, expand variables, keep spaces."""
    return process_word(word, env, escape=escape).word


def split_words(word: str, env: Mapping[str, str], *, escape: str = "\\") -> list[str]:
    """BuildKit ``ProcessWords``: expand like :func:`expand_word`, then split on unquoted whitespace."""
    return list(process_word(word, env, escape=escape).words)
