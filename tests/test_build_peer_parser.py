"""Hold the Dockerfile parser, word expansion and .dockerignore matcher to the reference test data.

BuildKit (moby/buildkit@73ed682): every parser/testfiles/*/Dockerfile must dump exactly as its
``result``; testfiles-negative must fail; testfile-line gives line numbers; shell/envVarTest and
shell/wordsTest drive expand_word and split_words. moby/patternmatcher@5a6d842: matches.json and
ignorefile.json (all cases, including the ones upstream runs on Unix only; there are no Windows-only ones).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from engine.build.dockerfile import Node, parse_ast, parse_dockerfile
from engine.build.ignore import IgnoreMatcher, MatchInfo, clean_path, read_ignore_file
from engine.build.shell import expand_word, split_words
from engine.errors import DockerfileError, InvalidInputError, ShellExpansionError
from tests.peerdata import peer_dir

BUILDKIT = peer_dir("buildkit-dockerfile", "frontend", "dockerfile")
PARSER = BUILDKIT / "parser"
SHELL = BUILDKIT / "shell"
PATTERNS = peer_dir("patternmatcher")


# -- BuildKit's AST dump format -----------------------------------------------------------------------

_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v",
               '"': '\\"', "\\": "\\\\"}


def go_quote(text: str) -> str:
    """Go's strconv.Quote."""
    out = ['"']
    for ch in text:
        if ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


def dump(node: Node) -> str:
    """One node as BuildKit's Node.Dump prints it: (keyword ["--flags"] (sub) "arg" ...)."""
    text = node.keyword
    if node.flags:
        text += " [" + " ".join(go_quote(f) for f in node.flags) + "]"
    if node.sub is not None:
        text += " (" + dump(node.sub) + ")"
    for arg in node.args:
        text += " " + go_quote(arg)
    return text.strip()


def read_text(path: Path) -> str:
    return path.read_bytes().decode("utf-8")


POSITIVE = sorted(p for p in (PARSER / "testfiles").iterdir() if p.is_dir())
NEGATIVE = sorted(p for p in (PARSER / "testfiles-negative").iterdir() if p.is_dir())


def test_peer_files_present() -> None:
    assert len(POSITIVE) == 33 and len(NEGATIVE) == 4


@pytest.mark.parametrize("case", POSITIVE, ids=lambda p: p.name)
def test_parser_testfiles(case: Path) -> None:
    ast = parse_ast(read_text(case / "Dockerfile"))
    got = "".join(f"({dump(node)})\n" for node in ast.nodes)
    assert got == read_text(case / "result")


@pytest.mark.parametrize("case", POSITIVE, ids=lambda p: p.name)
def test_parser_testfiles_typed_layer_fails_only_cleanly(case: Path) -> None:
    """The typed layer either builds stages or refuses with a DockerfileError naming a line."""
    try:
        df = parse_dockerfile(read_text(case / "Dockerfile"))
    except DockerfileError as exc:
        assert exc.file == "Dockerfile" and str(exc).startswith("Dockerfile")
    else:
        assert df.stages


@pytest.mark.parametrize("case", NEGATIVE, ids=lambda p: p.name)
def test_parser_testfiles_negative(case: Path) -> None:
    with pytest.raises(DockerfileError) as caught:
        parse_ast(read_text(case / "Dockerfile"))
    assert str(caught.value).startswith("Dockerfile:")


def test_parser_line_numbers() -> None:
    ast = parse_ast(read_text(PARSER / "testfile-line" / "Dockerfile"))
    assert [(n.start_line, n.end_line) for n in ast.nodes] == [(5, 5), (11, 12), (17, 31)]
    assert ast.directives[0].name == "escape"


def test_typed_layer_on_a_real_file() -> None:
    df = parse_dockerfile(read_text(PARSER / "testfiles" / "lk4d4-the-edge-case-generator" / "Dockerfile"))
    (stage,) = df.stages
    assert stage.base_name == "busybox:buildroot-2014.02"
    assert [i.keyword for i in stage.instructions][:4] == ["label", "onbuild", "onbuild", "onbuild"]


# -- shell ----------------------------------------------------------------------------------------------

ENV_VAR_ENV = {"PWD": "/home", "SHELL": "bash", "KOREAN": "한국어", "NULL": ""}


def _env_var_rows() -> list[Any]:
    rows = []
    for number, line in enumerate(read_text(SHELL / "envVarTest").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        tag, source, expected = line.split("|")
        if tag.strip() == "W":
            continue  # Windows-only rows
        rows.append(pytest.param(source.strip(), expected.strip(), id=f"line{number}"))
    return rows


ENV_VAR_ROWS = _env_var_rows()


def test_env_var_rows_count() -> None:
    assert len(ENV_VAR_ROWS) == 228


@pytest.mark.parametrize(("source", "expected"), ENV_VAR_ROWS)
def test_env_var_test(source: str, expected: str) -> None:
    if expected == "error":
        with pytest.raises(ShellExpansionError):
            expand_word(source, ENV_VAR_ENV)
    else:
        assert expand_word(source, ENV_VAR_ENV) == expected


def test_words_test() -> None:
    env: dict[str, str] = {}
    checked = 0
    for number, line in enumerate(read_text(SHELL / "wordsTest").split("\n"), 1):
        if line.startswith("#") or not line:
            continue
        if line.startswith("ENV "):
            key, _, value = line[3:].lstrip(" ").partition("=")
            env[key] = value
            continue
        source, expected_text = line.split("|")
        expected = expected_text.lstrip(" ").split(",")
        try:
            got = split_words(source.strip(), env)
        except ShellExpansionError:
            got = ["error"]
        assert got == expected, f"wordsTest line {number}: {source!r}"
        checked += 1
    assert checked == 24


# -- .dockerignore ------------------------------------------------------------------------------------

MATCHES = json.loads(read_text(PATTERNS / "matches.json"))["cases"]
IGNOREFILE = json.loads(read_text(PATTERNS / "ignorefile.json"))["cases"]


def _params(cases: list[dict[str, Any]]) -> list[Any]:
    return [pytest.param(c, id=f"{c.get('pattern', c.get('patterns'))}|{c.get('text')}") for c in cases]


def _incremental(matcher: IgnoreMatcher, text: str) -> bool:
    """patternmatcher's test: feed each parent's MatchInfo down to the text."""
    parent = clean_path(text[: text.rfind("/") + 1])  # Go's filepath.Dir
    info = MatchInfo()
    if parent != ".":
        dirs = parent.split("/")
        for i in range(len(dirs)):
            _, info = matcher.matches_using_parents("/".join(dirs[: i + 1]), info)
    return matcher.matches_using_parents(text, info)[0]


@pytest.mark.parametrize("case", _params(MATCHES["matches"]))
def test_patternmatcher_matches(case: dict[str, Any]) -> None:
    matcher = IgnoreMatcher([case["pattern"]])
    assert matcher.matches(case["text"]) is case["match"]
    assert matcher.matches_using_parents(case["text"])[0] is case["match"]
    assert _incremental(matcher, case["text"]) is case["match"]


@pytest.mark.parametrize("case", _params(MATCHES["multi_pattern"]))
def test_patternmatcher_multi_pattern(case: dict[str, Any]) -> None:
    matcher = IgnoreMatcher(case["patterns"])
    assert matcher.matches(case["text"]) is case["match"]
    assert _incremental(matcher, case["text"]) is case["match"]


@pytest.mark.parametrize("case", _params(MATCHES["filepath_match"]))
def test_patternmatcher_filepath_match(case: dict[str, Any]) -> None:
    if case["error"]:
        with pytest.raises(InvalidInputError):
            IgnoreMatcher([case["pattern"]]).matches(case["text"])
    else:
        assert IgnoreMatcher([case["pattern"]]).matches(case["text"]) is case["match"]


@pytest.mark.parametrize("case", MATCHES["standalone"], ids=lambda c: c["test"])
def test_patternmatcher_standalone(case: dict[str, Any]) -> None:
    if case["error"]:
        with pytest.raises(InvalidInputError):
            IgnoreMatcher(case["patterns"]).matches(case["text"])
    else:
        assert IgnoreMatcher(case["patterns"]).matches(case["text"]) is case["match"]


@pytest.mark.parametrize("case", MATCHES["new_matcher"], ids=lambda c: c["test"])
def test_patternmatcher_new_matcher(case: dict[str, Any]) -> None:
    if case["error"]:
        with pytest.raises(InvalidInputError):
            IgnoreMatcher(case["patterns"])
        return
    matcher = IgnoreMatcher(case["patterns"])
    if "expected_pattern_count" in case:
        assert len(matcher.patterns) == case["expected_pattern_count"]
    if "expected_exclusions" in case:
        assert matcher.has_exclusions is case["expected_exclusions"]
    if "then_match" in case:
        for _ in range(case["then_match"]["repeat"]):
            with pytest.raises(InvalidInputError):
                matcher.matches(case["then_match"]["text"])


@pytest.mark.parametrize("case", IGNOREFILE, ids=lambda c: c["name"])
def test_ignorefile_read_all(case: dict[str, Any]) -> None:
    text = case["input"] if case["input"] is not None else ""
    assert read_ignore_file(text) == case["expected"]


def test_case_counts() -> None:
    assert [len(MATCHES[k]) for k in ("matches", "multi_pattern", "filepath_match")] == [68, 4, 54]
