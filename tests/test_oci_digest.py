"""Digest: parsing, validation before a digest can reach a path or URL, hashing."""

from __future__ import annotations

import hashlib

import pytest

from engine.errors import InvalidDigestError, InvalidInputError
from engine.oci.digest import Digest, DigestingWriter

EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
EMPTY_SHA512 = hashlib.sha512(b"").hexdigest()


@pytest.mark.parametrize(
    "text",
    [
        f"sha256:{EMPTY_SHA256}",
        f"sha512:{EMPTY_SHA512}",
        "sha256:" + "0" * 64,
    ],
)
def test_valid_digests_round_trip(text: str) -> None:
    digest = Digest.parse(text)
    assert str(digest) == text
    assert digest.algorithm == text.split(":")[0]
    assert digest.hex == digest.encoded == text.split(":")[1]
    assert Digest.is_valid(text)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "expected algorithm:hex"),
        ("sha256", "expected algorithm:hex"),
        ("sha256:", "expected algorithm:hex"),
        (":" + EMPTY_SHA256, "expected algorithm:hex"),
        ("sha256:../x", "64 lower-case hex"),
        ("sha256:../../etc/passwd", "64 lower-case hex"),
        ("sha256:" + EMPTY_SHA256.upper(), "64 lower-case hex"),
        ("SHA256:" + EMPTY_SHA256, "unsupported digest algorithm"),
        ("sha256:" + EMPTY_SHA256[:-1], "64 lower-case hex"),
        ("sha256:" + EMPTY_SHA256 + "0", "64 lower-case hex"),
        ("sha256:" + EMPTY_SHA256 + "\n", "64 lower-case hex"),
        ("sha256:" + EMPTY_SHA256[:-1] + "g", "64 lower-case hex"),
        ("sha256:" + EMPTY_SHA256[:32] + "/" + EMPTY_SHA256[33:], "64 lower-case hex"),
        ("sha512:" + EMPTY_SHA256, "128 lower-case hex"),
        ("md5:d41d8cd98f00b204e9800998ecf8427e", "unsupported digest algorithm"),
        ("sha256+b64:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564", "unsupported digest algorithm"),
        ("sha384:" + "a" * 96, "unsupported digest algorithm"),
    ],
)
def test_invalid_digests_are_refused_with_a_reason(text: str, why: str) -> None:
    with pytest.raises(InvalidDigestError, match=why) as info:
        Digest.parse(text)
    assert isinstance(info.value, InvalidInputError)
    assert "\n" not in str(info.value)
    assert not Digest.is_valid(text)


def test_non_string_is_refused() -> None:
    with pytest.raises(InvalidDigestError, match="not a string"):
        Digest.parse(123)  # type: ignore[arg-type]


def test_constructor_validates_too() -> None:
    with pytest.raises(InvalidDigestError):
        Digest("sha256", "../" + "0" * 61)
    with pytest.raises(InvalidDigestError):
        Digest("sha1", "0" * 40)


def test_from_bytes_and_short_id() -> None:
    digest = Digest.from_bytes(b"")
    assert str(digest) == f"sha256:{EMPTY_SHA256}"
    assert digest.short == EMPTY_SHA256[:12]
    assert Digest.from_bytes(b"", "sha512").hex == EMPTY_SHA512
    hasher = digest.hasher()
    hasher.update(b"")
    assert hasher.hexdigest() == EMPTY_SHA256


def test_value_semantics() -> None:
    a = Digest.parse(f"sha256:{EMPTY_SHA256}")
    b = Digest("sha256", EMPTY_SHA256)
    assert a == b and hash(a) == hash(b)
    assert len({a, b}) == 1
    assert sorted([Digest("sha256", "f" * 64), a])[0] == a
    with pytest.raises(AttributeError):
        a.hex = "0" * 64  # type: ignore[misc]


def test_digesting_writer_hashes_chunks() -> None:
    writer = DigestingWriter()
    for chunk in (b"hello ", memoryview(b"world")):
        writer.update(chunk)
    assert writer.size == 11
    assert writer.digest() == Digest.from_bytes(b"hello world")
