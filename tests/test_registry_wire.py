"""Pure pieces of the registry client: WWW-Authenticate parsing, hosts, error bodies, paging, tokens."""

from __future__ import annotations

import json

import pytest

from engine.errors import AuthenticationError, RegistryError
from engine.registry.auth import merge_scopes, parse_token_response
from engine.registry.challenge import Challenge, parse_challenges, pick
from engine.registry.client import parse_link_next, retry_after_seconds
from engine.registry.errors import parse_error_body, registry_error
from engine.registry.hosts import auth_key, endpoint_for, is_loopback, normalize_registry

CHALLENGES = [
    ('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"',
     [Challenge("bearer", {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                           "scope": "repository:library/busybox:pull"})]),
    ('Basic realm="Registry Realm"', [Challenge("basic", {"realm": "Registry Realm"})]),
    ("basic realm=simple", [Challenge("basic", {"realm": "simple"})]),
    ('BEARER Realm="http://x/token" , Service = "s"',
     [Challenge("bearer", {"realm": "http://x/token", "service": "s"})]),
    ('Bearer realm="a\\"b\\\\c"', [Challenge("bearer", {"realm": 'a"b\\c'})]),
    ('Bearer realm="x",scope="repository:a:pull repository:b:pull",error="insufficient_scope"',
     [Challenge("bearer", {"realm": "x", "scope": "repository:a:pull repository:b:pull",
                           "error": "insufficient_scope"})]),
    ('Basic realm="r", Bearer realm="t",service="s"',
     [Challenge("basic", {"realm": "r"}), Challenge("bearer", {"realm": "t", "service": "s"})]),
    ("Negotiate abc123==", [Challenge("negotiate", {}, "abc123==")]),
    ("Negotiate", [Challenge("negotiate", {})]),
    ('Bearer realm="unterminated', [Challenge("bearer", {"realm": "unterminated"})]),
    ("", []),
    (" , ,", []),
    ('Bearer realm="r",,service="s"', [Challenge("bearer", {"realm": "r", "service": "s"})]),
]


@pytest.mark.parametrize(("header", "expected"), CHALLENGES)
def test_parse_challenges(header: str, expected: list[Challenge]) -> None:
    assert parse_challenges(header) == expected


def test_pick_prefers_bearer_and_ignores_unknown() -> None:
    assert pick(parse_challenges('Basic realm="r", Bearer realm="t"')).scheme == "bearer"  # type: ignore[union-attr]
    assert pick(parse_challenges("Negotiate abc")) is None


@pytest.mark.parametrize(("name", "normal"), [
    ("docker.io", "docker.io"), ("index.docker.io", "docker.io"), ("https://index.docker.io/v1/", "docker.io"),
    ("registry-1.docker.io", "docker.io"), ("HTTP://LocalHost:5000/", "localhost:5000"), ("quay.io", "quay.io"),
])
def test_normalize_registry(name: str, normal: str) -> None:
    assert normalize_registry(name) == normal


@pytest.mark.parametrize(("registry", "scheme", "host"), [
    ("docker.io", "https", "registry-1.docker.io"),
    ("localhost:5000", "http", "localhost:5000"),
    ("127.0.0.1:5000", "http", "127.0.0.1:5000"),
    ("127.3.4.5", "http", "127.3.4.5"),
    ("[::1]:5000", "http", "[::1]:5000"),
    ("registry.example.com", "https", "registry.example.com"),
])
def test_endpoint_scheme(registry: str, scheme: str, host: str) -> None:
    endpoint = endpoint_for(registry)
    assert (endpoint.scheme, endpoint.host) == (scheme, host)


def test_insecure_registries_allow_plain_http_fallback() -> None:
    assert endpoint_for("reg.lan:5000", ["reg.lan:5000"]).fallback_http
    assert endpoint_for("reg.lan:5000", ["reg.lan"]).verify_tls is False
    assert endpoint_for("reg.lan:5000", force_insecure=True).fallback_http
    assert endpoint_for("reg.lan:5000").verify_tls
    assert not is_loopback("10.0.0.1:5000") and is_loopback("localhost")


def test_auth_key_uses_dockers_hub_key() -> None:
    assert auth_key("docker.io") == "https://index.docker.io/v1/"
    assert auth_key("localhost:5000") == "localhost:5000"


ERROR_CASES = [
    (404, {"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]}, "MANIFEST_UNKNOWN",
     "manifest unknown: app:v1 was not found on localhost:5001", RegistryError),
    (404, {"errors": [{"code": "NAME_UNKNOWN", "message": "repository name not known to registry"}]},
     "NAME_UNKNOWN", "name unknown: repository app does not exist on localhost:5001", RegistryError),
    (401, {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}, "UNAUTHORIZED",
     "unauthorized: run `dockyard login localhost:5001`", AuthenticationError),
    (403, {"errors": [{"code": "DENIED", "message": "requested access to the resource is denied"}]}, "DENIED",
     "denied: check that you may access app:v1 (`dockyard login localhost:5001`)", RegistryError),
    (429, {"errors": [{"code": "TOOMANYREQUESTS", "message": "slow down"}]}, "TOOMANYREQUESTS",
     "toomanyrequests: the registry's rate limit was reached; wait and retry, or log in", RegistryError),
    (404, {"errors": [{"code": "BLOB_UNKNOWN", "message": "blob unknown to registry"}]}, "BLOB_UNKNOWN",
     "blob unknown: a blob of app:v1 is missing on localhost:5001", RegistryError),
    (500, {"errors": [{"code": "WEIRD", "message": "something\nbroke"}]}, "WEIRD",
     "weird: something broke (app:v1)", RegistryError),
]


@pytest.mark.parametrize(("status", "body", "code", "message", "kind"), ERROR_CASES)
def test_registry_errors_keep_codes_and_say_what_to_do(
    status: int, body: dict[str, object], code: str, message: str, kind: type[Exception],
) -> None:
    error = registry_error(status, json.dumps(body).encode(), registry="localhost:5001", repository="app",
                           target="app:v1")
    assert isinstance(error, kind)
    assert error.code == code and error.status == status
    assert str(error) == message


def test_error_without_body_uses_status() -> None:
    error = registry_error(401, b"<html>no</html>", registry="r", repository="x")
    assert isinstance(error, AuthenticationError) and error.code == "UNAUTHORIZED"
    assert registry_error(502, b"", registry="r").message == "http 502: HTTP 502 (r)"
    assert parse_error_body(b"[1, 2]") == [] and parse_error_body(b"\xff") == []


@pytest.mark.parametrize(("header", "expected"), [
    ('</v2/_catalog?last=b&n=2>; rel="next"', "http://r/v2/_catalog?last=b&n=2"),
    ('<http://other/v2/x/tags/list?n=5&last=c>; rel=next', "http://other/v2/x/tags/list?n=5&last=c"),
    ('</a>; rel="prev", </b>; rel="next"', "http://r/b"),
    ('</a>; rel="prev"', None),
    (None, None),
])
def test_link_next(header: str | None, expected: str | None) -> None:
    assert parse_link_next(header, "http://r/v2/_catalog?n=2") == expected


def test_retry_after() -> None:
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == pytest.approx(10.0)


def test_merge_scopes_widens_per_repository() -> None:
    assert merge_scopes(["repository:a:pull", "repository:a:push", "repository:b:pull"]) == (
        "repository:a:pull,push", "repository:b:pull")
    assert merge_scopes(["registry:catalog:*"]) == ("registry:catalog:*",)


def test_token_response() -> None:
    token = parse_token_response(b'{"token": "abc", "expires_in": 300, "refresh_token": "r"}', now=100.0)
    assert token.value == "abc" and token.refresh_token == "r" and token.expires_at == pytest.approx(390.0)
    assert token.fresh(200.0) and not token.fresh(400.0)
    short = parse_token_response(b'{"access_token": "x"}', now=0.0)
    assert short.value == "x" and 0 < short.expires_at <= 60
    with pytest.raises(AuthenticationError):
        parse_token_response(b'{"nothing": 1}')
    with pytest.raises(AuthenticationError):
        parse_token_response(b"not json")
