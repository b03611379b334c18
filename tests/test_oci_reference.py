"""Reference: docker's normalisation and grammar.

The tables follow the cases of distribution/reference's normalize and reference tests (as data, read
and re-expressed here), judged the way ``ParseNormalizedNamed`` judges them: the 255-character limit
applies to the normalised name, and ``docker.io`` references get ``library/``.
"""

from __future__ import annotations

import pytest

from engine.errors import InvalidReferenceError
from engine.oci.digest import Digest
from engine.oci.reference import Reference

D256 = "sha256:" + "f" * 64
D512 = "sha512:" + "f" * 128


# input -> (registry, repository, tag, digest, familiar)
NORMALISED = [
    ("busybox", "docker.io", "library/busybox", "latest", None, "busybox:latest"),
    ("library/busybox", "docker.io", "library/busybox", "latest", None, "busybox:latest"),
    ("docker.io/busybox", "docker.io", "library/busybox", "latest", None, "busybox:latest"),
    ("docker.io/library/busybox:1.36", "docker.io", "library/busybox", "1.36", None, "busybox:1.36"),
    ("index.docker.io/busybox", "docker.io", "library/busybox", "latest", None, "busybox:latest"),
    ("index.docker.io/library/ubuntu", "docker.io", "library/ubuntu", "latest", None, "ubuntu:latest"),
    ("index.docker.io/fooo/bar", "docker.io", "fooo/bar", "latest", None, "fooo/bar:latest"),
    ("fooo/bar", "docker.io", "fooo/bar", "latest", None, "fooo/bar:latest"),
    ("nonlibrary/ubuntu", "docker.io", "nonlibrary/ubuntu", "latest", None, "nonlibrary/ubuntu:latest"),
    ("other/library", "docker.io", "other/library", "latest", None, "other/library:latest"),
    ("ubuntu-12.04-base", "docker.io", "library/ubuntu-12.04-base", "latest", None,
     "ubuntu-12.04-base:latest"),
    ("docker.io/ubuntu-12.04-base", "docker.io", "library/ubuntu-12.04-base", "latest", None,
     "ubuntu-12.04-base:latest"),
    ("127.0.0.1:8000/private/moonbase", "127.0.0.1:8000", "private/moonbase", "latest", None,
     "127.0.0.1:8000/private/moonbase:latest"),
    ("127.0.0.1:8000/privatebase", "127.0.0.1:8000", "privatebase", "latest", None,
     "127.0.0.1:8000/privatebase:latest"),
    ("example.com/private/moonbase", "example.com", "private/moonbase", "latest", None,
     "example.com/private/moonbase:latest"),
    ("example.com:8000/privatebase", "example.com:8000", "privatebase", "latest", None,
     "example.com:8000/privatebase:latest"),
    ("localhost:8000/private/moonbase", "localhost:8000", "private/moonbase", "latest", None,
     "localhost:8000/private/moonbase:latest"),
    ("localhost/privatebase", "localhost", "privatebase", "latest", None, "localhost/privatebase:latest"),
    (f"localhost:5000/a/b@{D256}", "localhost:5000", "a/b", None, D256, f"localhost:5000/a/b@{D256}"),
    (f"busybox@{D256}", "docker.io", "library/busybox", None, D256, f"busybox@{D256}"),
    (f"busybox:1.36@{D256}", "docker.io", "library/busybox", "1.36", D256, f"busybox:1.36@{D256}"),
    (f"test:5000/repo@{D256}", "test:5000", "repo", None, D256, f"test:5000/repo@{D256}"),
    (f"test:5000/repo:tag@{D256}", "test:5000", "repo", "tag", D256, f"test:5000/repo:tag@{D256}"),
    ("test:5000/repo", "test:5000", "repo", "latest", None, "test:5000/repo:latest"),
    ("test.com:tag", "docker.io", "library/test.com", "tag", None, "test.com:tag"),
    ("test.com:5000", "docker.io", "library/test.com", "5000", None, "test.com:5000"),
    ("test.com/repo:tag", "test.com", "repo", "tag", None, "test.com/repo:tag"),
    ("test_com", "docker.io", "library/test_com", "latest", None, "test_com:latest"),
    ("localhost:5000", "docker.io", "library/localhost", "5000", None, "localhost:5000"),
    ("lowercase:Uppercase", "docker.io", "library/lowercase", "Uppercase", None, "lowercase:Uppercase"),
    ("sub-dom1.foo.com/bar/baz/quux:some-long-tag", "sub-dom1.foo.com", "bar/baz/quux", "some-long-tag",
     None, "sub-dom1.foo.com/bar/baz/quux:some-long-tag"),
    ("b.gcr.io/test.example.com/my-app:test.example.com", "b.gcr.io", "test.example.com/my-app",
     "test.example.com", None, "b.gcr.io/test.example.com/my-app:test.example.com"),
    ("xn--n3h.com/myimage:xn--n3h.com", "xn--n3h.com", "myimage", "xn--n3h.com", None,
     "xn--n3h.com/myimage:xn--n3h.com"),
    (f"xn--7o8h.com/myimage:xn--7o8h.com@{D512}", "xn--7o8h.com", "myimage", "xn--7o8h.com", D512,
     f"xn--7o8h.com/myimage:xn--7o8h.com@{D512}"),
    ("foo_bar.com:8080", "docker.io", "library/foo_bar.com", "8080", None, "foo_bar.com:8080"),
    ("foo/foo_bar.com:8080", "docker.io", "foo/foo_bar.com", "8080", None, "foo/foo_bar.com:8080"),
    ("192.168.0.1/debian", "192.168.0.1", "debian", "latest", None, "192.168.0.1/debian:latest"),
    ("192.168.0.2:25000/debian", "192.168.0.2:25000", "debian", "latest", None,
     "192.168.0.2:25000/debian:latest"),
    ("[2001:db8::1]/repo", "[2001:db8::1]", "repo", "latest", None, "[2001:db8::1]/repo:latest"),
    ("[2001:db8::1]:5000/repo:tag", "[2001:db8::1]:5000", "repo", "tag", None,
     "[2001:db8::1]:5000/repo:tag"),
    ("[2001:db8:1:2:3:4:5:6]/repo:tag", "[2001:db8:1:2:3:4:5:6]", "repo", "tag", None,
     "[2001:db8:1:2:3:4:5:6]/repo:tag"),
    ("[::1]:5000/repo", "[::1]:5000", "repo", "latest", None, "[::1]:5000/repo:latest"),
    ("Docker.io/ubuntu", "Docker.io", "ubuntu", "latest", None, "Docker.io/ubuntu:latest"),
    ("a__b/c-d--e.f_g", "docker.io", "a__b/c-d--e.f_g", "latest", None, "a__b/c-d--e.f_g:latest"),
    ("thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev", "docker.io",
     "library/thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev", "latest", None,
     "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev:latest"),
]


@pytest.mark.parametrize(("text", "registry", "repository", "tag", "digest", "familiar"), NORMALISED,
                         ids=[row[0][:60] for row in NORMALISED])
def test_normalisation(text: str, registry: str, repository: str, tag: str | None, digest: str | None,
                       familiar: str) -> None:
    ref = Reference.parse(text)
    assert (ref.registry, ref.repository, ref.tag) == (registry, repository, tag)
    assert (str(ref.digest) if ref.digest else None) == digest
    assert ref.familiar == familiar
    full = f"{registry}/{repository}" + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
    assert str(ref) == full
    # The full form is a fixed point, and so is the familiar one.
    assert Reference.parse(str(ref)) == ref
    assert Reference.parse(ref.familiar) == ref


INVALID = [
    ("", "empty"),
    ("https://github.com/docker/docker", "invalid registry"),
    ("docker/Docker", "must be lowercase"),
    ("Uppercase:tag", "must be lowercase"),
    ("test:5000/Uppercase/lowercase:tag", "must be lowercase"),
    ("docker.io/docker/Docker", "must be lowercase"),
    ("-docker", "invalid repository name component"),
    ("-docker/docker", "invalid repository name component"),
    ("-docker.io/docker/docker", "invalid registry"),
    ("docker///docker", "invalid repository name component"),
    ("docker.io/docker///docker", "invalid repository name component"),
    ("aa/asdf$$^/aa", "invalid repository name component"),
    ("a..b", "invalid repository name component"),
    ("a_-b", "invalid repository name component"),
    ("a___b", "invalid repository name component"),
    (":justtag", "empty repository"),
    (f"@{D256}", "empty repository"),
    ("busybox:", "invalid tag"),
    ("busybox:-tag", "invalid tag"),
    ("busybox:.tag", "invalid tag"),
    ("busybox:" + "a" * 129, "invalid tag"),
    ("busybox:tagé", "invalid tag"),
    ("busybox@", "invalid digest"),
    ("repo@sha256:ffffffffffffffffffffffffffffffffff", "invalid digest"),
    ("validname@invaliddigest:" + "f" * 64, "unsupported digest algorithm"),
    ("busybox@sha256:../x", "invalid digest"),
    ("busybox@sha256:" + "F" * 64, "invalid digest"),
    ("[2001:db8::1]", "invalid tag"),
    ("[2001:db8::1]:5000", "invalid repository name component"),
    ("[fe80::1%eth0]:5000/repo", "invalid registry"),
    ("[fe80::1%@invalidzone]:5000/repo", "invalid"),
    ("1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a", "image id"),
    (" busybox", "invalid repository name component"),
    ("busybox ", "invalid"),
]


@pytest.mark.parametrize(("text", "why"), INVALID, ids=[row[0][:60] or "empty" for row in INVALID])
def test_invalid_references_fail_with_a_clear_one_line_error(text: str, why: str) -> None:
    with pytest.raises(InvalidReferenceError, match=why) as info:
        Reference.parse(text)
    assert "\n" not in str(info.value)
    assert not Reference.is_valid(text)


def test_uppercase_error_names_the_rule() -> None:
    with pytest.raises(InvalidReferenceError) as info:
        Reference.parse("MyApp")
    assert str(info.value) == "invalid reference 'MyApp': repository name must be lowercase"


def test_tags_may_be_128_characters_and_the_name_255() -> None:
    assert Reference.parse("busybox:" + "a" * 128).tag == "a" * 128
    # registry "example.com" + "/" + repository: 255 characters is the limit of the whole name.
    repository = "a/" * 121 + "a"  # 243 characters
    assert len(Reference.parse(f"example.com/{repository}:tag").name) == 255
    with pytest.raises(InvalidReferenceError, match="longer than 255"):
        Reference.parse(f"example.com/{repository}b:tag")
    # docker.io names count "docker.io/" (and "library/") too, as ParseNormalizedNamed does.
    assert len(Reference.parse("a/" * 122 + "a").name) == 255
    with pytest.raises(InvalidReferenceError, match="longer than 255"):
        Reference.parse("a/" * 123 + "a")
    with pytest.raises(InvalidReferenceError, match="longer than 255"):
        Reference.parse("a" * 247)  # docker.io/library/ + 247 = 265


def test_default_tag_can_be_left_off() -> None:
    ref = Reference.parse("busybox", default_tag=False)
    assert ref.tag is None and ref.digest is None
    assert str(ref) == "docker.io/library/busybox"
    assert ref.identifier == "latest"


def test_registry_helpers() -> None:
    hub = Reference.parse("busybox")
    assert hub.api_registry == "registry-1.docker.io"
    assert hub.name == "docker.io/library/busybox"
    assert hub.familiar_name == "busybox"
    assert not hub.is_loopback
    local = Reference.parse("localhost:5000/app")
    assert local.api_registry == "localhost:5000"
    assert local.is_loopback and local.is_localhost
    assert Reference.parse("127.0.0.1:5000/app").is_loopback
    assert Reference.parse("[::1]:5000/app").is_loopback
    assert not Reference.parse("localhost.example.com/app").is_loopback
    assert Reference.parse("registry-1.docker.io/library/busybox").registry == "docker.io"


def test_identifier_and_with_helpers() -> None:
    digest = Digest.parse(D256)
    ref = Reference.parse("busybox:1.36")
    assert ref.identifier == "1.36"
    pinned = ref.with_digest(digest)
    assert str(pinned) == f"docker.io/library/busybox:1.36@{D256}"
    assert pinned.identifier == D256
    assert pinned.without_digest() == ref
    retagged = pinned.with_tag("2")
    assert str(retagged) == "docker.io/library/busybox:2"
    with pytest.raises(InvalidReferenceError, match="invalid tag"):
        ref.with_tag("bad tag")
    assert Reference.parse(f"busybox@{D256}").without_digest().tag == "latest"


def test_non_string_is_refused() -> None:
    with pytest.raises(InvalidReferenceError):
        Reference.parse(None)  # type: ignore[arg-type]
