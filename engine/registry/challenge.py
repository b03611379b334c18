"""Parse ``WWW-Authenticate`` headers (RFC 7235) into challenges: pure, table-tested.

``Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:x:pull"``
becomes ``[Challenge("bearer", {"realm": ..., "service": ..., "scope": ...})]``.  Scheme names and
parameter names are case-insensitive and returned lower-case; quoted values keep their case and have
their backslash escapes removed.  Several challenges may share one header, separated by commas.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_TOKEN68_CHARS = _TOKEN_CHARS | frozenset("/=")


@dataclass(frozen=True, slots=True)
class Challenge:
    scheme: str  # lower-case: "basic", "bearer"
    params: Mapping[str, str] = field(default_factory=dict)
    token68: str | None = None

    @property
    def realm(self) -> str | None:
        return self.params.get("realm")


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t":
            self.pos += 1

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def token(self, chars: frozenset[str] = _TOKEN_CHARS) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in chars:
            self.pos += 1
        return self.text[start:self.pos]

    def quoted(self) -> str:
        # at the opening quote
        self.pos += 1
        out: list[str] = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == "\\" and self.pos + 1 < len(self.text):
                out.append(self.text[self.pos + 1])
                self.pos += 2
                continue
            if char == '"':
                self.pos += 1
                return "".join(out)
            out.append(char)
            self.pos += 1
        return "".join(out)  # unterminated: lenient, take the rest

    def skip_commas(self) -> bool:
        seen = False
        while True:
            self.skip_ws()
            if self.peek() == ",":
                self.pos += 1
                seen = True
            else:
                return seen


def parse_challenges(header: str) -> list[Challenge]:
    """Every challenge in one header value; garbage is skipped, never raised."""
    s = _Scanner(header)
    out: list[Challenge] = []
    while True:
        s.skip_commas()
        if s.pos >= len(s.text):
            return out
        scheme = s.token()
        if not scheme:
            s.pos += 1  # an unexpected character: skip it
            continue
        params: dict[str, str] = {}
        token68: str | None = None
        s.skip_ws()
        # Either a token68 or a comma-separated list of name=value pairs follows.
        start = s.pos
        candidate = s.token(_TOKEN68_CHARS)
        s.skip_ws()
        if candidate and s.peek() in ("", ",") and not _looks_like_param(s.text, start):
            token68 = candidate
        else:
            s.pos = start
            while True:
                s.skip_ws()
                mark = s.pos
                name = s.token()
                s.skip_ws()
                if not name or s.peek() != "=":
                    s.pos = mark  # the next challenge's scheme
                    break
                s.pos += 1
                s.skip_ws()
                value = s.quoted() if s.peek() == '"' else s.token(_TOKEN68_CHARS)
                params.setdefault(name.lower(), value)
                if not s.skip_commas():
                    break
        out.append(Challenge(scheme.lower(), params, token68))


def _looks_like_param(text: str, start: int) -> bool:
    rest = text[start:].lstrip()
    head = rest.split(",", 1)[0]
    name, eq, _ = head.partition("=")
    return bool(eq) and bool(name.strip()) and all(c in _TOKEN_CHARS for c in name.strip()) and \
        not head.rstrip().endswith("=")


def parse_headers(values: Iterable[str]) -> list[Challenge]:
    """Challenges from every ``WWW-Authenticate`` header a response carried."""
    out: list[Challenge] = []
    for value in values:
        out.extend(parse_challenges(value))
    return out


def pick(challenges: Iterable[Challenge]) -> Challenge | None:
    """The challenge dockyard answers: Bearer first, then Basic; unknown schemes are ignored."""
    by_scheme = {c.scheme: c for c in reversed(list(challenges))}
    return by_scheme.get("bearer") or by_scheme.get("basic")
