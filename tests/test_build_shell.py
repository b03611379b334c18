"""Hand-written cases for BuildKit-style word expansion (the peer tables are in test_build_peer_parser)."""

from __future__ import annotations

import pytest

from engine.build.shell import expand_word, process_word, split_words
from engine.errors import InvalidInputError, ShellExpansionError

ENV = {"v": "foo/bar/baz.tar.gz", "e": "", "s": "a*b*c", "name": "world", "sp": "a  b "}


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        # defaults and alternatives: with ":" an empty value counts as unset, without it only unset does
        ("${u-def}", "def"),
        ("${e-def}", ""),
        ("${e:-def}", "def"),
        ("${e+alt}", "alt"),
        ("${e:+alt}", ""),
        ("${u+alt}", ""),
        ("${name:-$u}", "world"),
        ("${u:-${name}!}", "world!"),
        ("${e?}", ""),
        ("${name:?must be set}", "world"),
        # prefix / suffix removal, shortest and longest
        ("${v#*/}", "bar/baz.tar.gz"),
        ("${v##*/}", "baz.tar.gz"),
        ("${v%/*}", "foo/bar"),
        ("${v%%/*}", "foo"),
        ("${v%.tar*}", "foo/bar/baz"),
        ("${v%%.*}", "foo/bar/baz"),
        ("${v#?}", "oo/bar/baz.tar.gz"),
        ("${v%%?}", "foo/bar/baz.tar.g"),
        ("${v#nomatch}", "foo/bar/baz.tar.gz"),
        ("${s##*\\*}", "c"),
        ("${s#a\\*}", "b*c"),
        ("${s%\\*c}", "a*b"),
        ("${u#x}", ""),
        # substitution, first and all
        ("${v/o/0}", "f0o/bar/baz.tar.gz"),
        ("${v//o/0}", "f00/bar/baz.tar.gz"),
        ("${v//\\//_}", "foo_bar_baz.tar.gz"),
        ("${v/b*r/X}", "foo/X.gz"),
        ("${v//[/X}", "foo/bar/baz.tar.gz"),
        ("${v/.tar/$name}", "foo/bar/bazworld.gz"),
        ("${u/a/b}", ""),
        # quoting and escapes
        ("'$name'", "$name"),
        ('"$name"', "world"),
        ('"a\\"b"', 'a"b'),
        ('"a\\nb"', "a\\nb"),
        ("a\\ b", "a b"),
        ("\\$name", "$name"),
        ("$", "$"),
        ("$$name", "name"),
        ("${name}s", "worlds"),
        ("$name.txt", "world.txt"),
        ("pre${sp}post", "prea  b post"),
    ],
)
def test_expand_word(word: str, expected: str) -> None:
    assert expand_word(word, ENV) == expected


@pytest.mark.parametrize(
    ("word", "reason"),
    [
        ("${u?}", "u: is not allowed to be unset"),
        ("${e:?}", "e: is not allowed to be empty"),
        ("${u:?need u}", "u: need u"),
        ("${name:#x}", "unsupported modifier (:#) in substitution"),
        ("${name:=x}", "unsupported modifier (:=) in substitution"),
        ("${}", "bad substitution"),
        ("${name", "missing '}'"),
        ("${name:-x", "missing '}'"),
        ("${name/x", "missing '/'"),
        ("${v#a\\b}", "invalid escape"),
        ("'open", "single-quote"),
        ('"open', "double-quote"),
    ],
)
def test_expand_word_errors(word: str, reason: str) -> None:
    with pytest.raises(ShellExpansionError) as caught:
        expand_word(word, ENV)
    assert reason in str(caught.value)
    assert str(caught.value).startswith(f'failed to process "{word}"')
    assert isinstance(caught.value, InvalidInputError)


def test_backtick_escape() -> None:
    assert expand_word("a` b", {}, escape="`") == "a b"
    assert expand_word("C:\\path\\$x", {"x": "y"}, escape="`") == "C:\\path\\y"
    assert expand_word('"`$x`""', {"x": "y"}, escape="`") == '$x"'
    assert split_words("a` b c", {}, escape="`") == ["a b", "c"]


def test_split_words() -> None:
    assert split_words("a $sp c", ENV) == ["a", "a", "b", "c"]
    assert split_words('a "$sp" c', ENV) == ["a", "a  b ", "c"]
    assert split_words("x${sp}y", ENV) == ["xa", "b", "y"]
    assert split_words('"" a', ENV) == ["a"]
    assert split_words("80/tcp  $P", {"P": "443 8080-8090/udp"}) == ["80/tcp", "443", "8080-8090/udp"]


def test_matched_and_unmatched_names() -> None:
    result = process_word("$name ${missing:-x} ${e} $1 '$quoted'", ENV)
    assert result.word == "world x   $quoted"
    assert result.matched == {"name", "e"}
    assert result.unmatched == {"missing", "1"}


def test_skip_unset_keeps_references() -> None:
    result = process_word("$a ${b} ${c:-d} $name", {"name": "n"}, skip_unset=True)
    assert result.word == "$a ${b} ${c:-d} n"


def test_raw_quotes_and_escapes() -> None:
    assert process_word("'a b' \"c\"", {}, raw_quotes=True).words == ("'a b'", '"c"')
    assert process_word("a\\ b", {}, raw_escapes=True).word == "a\\ b"


def test_skip_quotes_expands_inside_quotes() -> None:
    assert process_word("echo '$x' \"$x\"", {"x": "1"}, skip_quotes=True).word == "echo '1' \"1\""


def test_bad_escape_argument() -> None:
    with pytest.raises(ShellExpansionError):
        expand_word("x", {}, escape="ab")
