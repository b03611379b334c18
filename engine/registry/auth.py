"""Answer a registry's challenge: anonymous, Basic, or the Bearer token flow.

The token flow (distribution's token spec and its OAuth2 variant): ask ``realm`` for a token for
``service`` and one or more ``scope`` values (``repository:app:pull,push``), with Basic credentials
when we have them, or POST a refresh token (docker's ``identitytoken``).  Tokens are cached per scope
set until shortly before they expire.  A token response may carry a ``refresh_token`` (asked for with
``offline_token=true`` at login), which later requests use instead of the password.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx

from engine.errors import AuthenticationError, RegistryError, RegistryUnavailableError
from engine.registry.challenge import Challenge
from engine.registry.credentials import Credential

MAX_TOKEN_BODY = 1024 * 1024
DEFAULT_TOKEN_LIFETIME = 60  # seconds; the spec's default when expires_in is absent
EXPIRY_MARGIN = 10
CLIENT_ID = "dockyard"


def repository_scope(repository: str, actions: Iterable[str] = ("pull",)) -> str:
    return f"repository:{repository}:{','.join(actions)}"


def merge_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """Merge scopes on the same resource (``repository:a:pull`` + ``repository:a:push`` -> ``pull,push``)."""
    merged: dict[str, list[str]] = {}
    for scope in scopes:
        resource, _, actions = scope.rpartition(":")
        if not resource:
            merged.setdefault(scope, [])
            continue
        bucket = merged.setdefault(resource, [])
        for action in actions.split(","):
            if action and action not in bucket:
                bucket.append(action)
    return tuple(sorted(f"{r}:{','.join(sorted(a))}" if a else r for r, a in merged.items()))


@dataclass(frozen=True, slots=True)
class Token:
    value: str
    expires_at: float
    refresh_token: str | None = None

    def fresh(self, now: float | None = None) -> bool:
        return (now if now is not None else time.monotonic()) < self.expires_at


def basic_header(credential: Credential) -> str:
    raw = f"{credential.username}:{credential.password}".encode()
    return "Basic " + base64.b64encode(raw).decode()


def parse_token_response(body: bytes, now: float | None = None) -> Token:
    """Token from a token-endpoint response (``token`` or ``access_token``; ``expires_in`` seconds)."""
    try:
        data: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise AuthenticationError("the registry's token service answered with something that is not JSON") \
            from None
    if not isinstance(data, dict):
        raise AuthenticationError("the registry's token service answered with an unexpected document")
    value = data.get("token") or data.get("access_token")
    if not isinstance(value, str) or not value:
        raise AuthenticationError("the registry's token service returned no token")
    lifetime = data.get("expires_in")
    if not isinstance(lifetime, (int, float)) or isinstance(lifetime, bool) or lifetime <= 0:
        lifetime = DEFAULT_TOKEN_LIFETIME
    start = time.monotonic() if now is None else now
    expires = start + max(float(lifetime) - EXPIRY_MARGIN, float(lifetime) / 2)
    refresh = data.get("refresh_token")
    return Token(value, expires, refresh if isinstance(refresh, str) and refresh else None)


class Authenticator:
    """Per-registry authorization state: the challenge seen at ping, credentials, cached tokens."""

    def __init__(self, registry: str, credential: Credential | None) -> None:
        self.registry = registry
        self.credential = credential
        self.challenge: Challenge | None = None
        self._tokens: dict[tuple[str, ...], Token] = {}
        self.refresh_token: str | None = credential.identity_token if credential else None

    @property
    def scheme(self) -> str | None:
        return self.challenge.scheme if self.challenge else None

    def cached_header(self, scopes: tuple[str, ...]) -> str | None:
        """The Authorization value to send without a round trip, if any."""
        if self.challenge is None:
            return None
        if self.challenge.scheme == "basic":
            return basic_header(self.credential) if self.credential and self.credential.password else None
        token = self._tokens.get(merge_scopes(scopes))
        if token is not None and token.fresh():
            return "Bearer " + token.value
        return None

    def forget(self, scopes: tuple[str, ...]) -> None:
        self._tokens.pop(merge_scopes(scopes), None)

    async def header(self, http: httpx.AsyncClient, scopes: tuple[str, ...], *, offline: bool = False) -> str | None:
        """An Authorization value for ``scopes``, fetching a token when needed; None for anonymous Basic."""
        cached = self.cached_header(scopes)
        if cached is not None or self.challenge is None or self.challenge.scheme != "bearer":
            return cached
        token = await self.fetch_token(http, scopes, offline=offline)
        return "Bearer " + token.value

    async def fetch_token(self, http: httpx.AsyncClient, scopes: tuple[str, ...], *, offline: bool = False) -> Token:
        assert self.challenge is not None
        realm = self.challenge.params.get("realm")
        if not realm or not realm.startswith(("http://", "https://")) or not _valid_url(realm):
            raise AuthenticationError(f"{self.registry} sent a Bearer challenge without a usable realm")
        service = self.challenge.params.get("service")
        wanted = merge_scopes(scopes)
        if self.refresh_token:
            token = await self._oauth_refresh(http, realm, service, wanted)
        else:
            token = await self._token_get(http, realm, service, wanted, offline)
        if token.refresh_token:
            self.refresh_token = token.refresh_token
        self._tokens[wanted] = token
        return token

    async def _token_get(
        self, http: httpx.AsyncClient, realm: str, service: str | None, scopes: tuple[str, ...], offline: bool,
    ) -> Token:
        params: list[tuple[str, str]] = []
        if service:
            params.append(("service", service))
        params.extend(("scope", s) for s in scopes)
        headers = {}
        if self.credential is not None and self.credential.password:
            headers["Authorization"] = basic_header(self.credential)
            params.append(("account", self.credential.username))
            if offline:
                params += [("offline_token", "true"), ("client_id", CLIENT_ID)]
        response = await self._send(http, "GET", realm, params=params, headers=headers)
        return self._token_from(response)

    async def _oauth_refresh(
        self, http: httpx.AsyncClient, realm: str, service: str | None, scopes: tuple[str, ...],
    ) -> Token:
        form = {"grant_type": "refresh_token", "refresh_token": self.refresh_token or "",
                "client_id": CLIENT_ID, "scope": " ".join(scopes)}
        if service:
            form["service"] = service
        response = await self._send(http, "POST", realm, data=form)
        if response[0] in (404, 405) and self.credential and self.credential.password:
            # The token server has no OAuth2 endpoint: fall back to the Basic GET.
            self.refresh_token = None
            return await self._token_get(http, realm, service, scopes, False)
        return self._token_from(response)

    async def _send(self, http: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> tuple[int, bytes]:
        try:
            async with http.stream(method, url, **kwargs) as response:
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_TOKEN_BODY:
                        raise AuthenticationError(f"the token service of {self.registry} sent an oversized answer")
                return response.status_code, bytes(body)
        except httpx.InvalidURL as exc:  # e.g. a redirect whose Location httpx cannot parse
            raise AuthenticationError(f"the token service of {self.registry} answered with an invalid URL: {exc}") \
                from None
        except httpx.TransportError as exc:
            host = httpx.URL(url).host
            raise RegistryUnavailableError(
                f"cannot reach the token service {host} of {self.registry}: {_transport_reason(exc)}"
            ) from exc

    def _token_from(self, response: tuple[int, bytes]) -> Token:
        status, body = response
        if status in (401, 403):
            who = f" as {self.credential.username}" if self.credential and self.credential.username else ""
            raise AuthenticationError(
                f"unauthorized: the registry {self.registry} refused the credentials{who}; "
                f"run `dockyard login {self.registry}`",
                code="UNAUTHORIZED", status=status,
            )
        if status != 200:
            raise RegistryError(f"the token service of {self.registry} answered HTTP {status}", status=status)
        return parse_token_response(body)


def _valid_url(url: str) -> bool:
    """True when httpx can send to ``url`` (a hostile realm such as ``http://[::1`` must not escape as InvalidURL)."""
    try:
        return bool(httpx.URL(url).host)
    except httpx.InvalidURL:
        return False


def _transport_reason(exc: BaseException) -> str:
    """A short reason for a transport failure: the OS error underneath httpx's wrapper when there is one."""
    import errno as _errno

    seen: BaseException | None = exc
    for _ in range(6):
        if seen is None:
            break
        if isinstance(seen, OSError) and seen.errno is not None:
            if seen.errno == _errno.ECONNREFUSED:
                return "connection refused"
            if seen.errno == _errno.ECONNRESET:
                return "connection reset"
            return seen.strerror or str(seen)
        seen = seen.__cause__ or seen.__context__
    text = str(exc) or exc.__class__.__name__
    if "refused" in text.lower():
        return "connection refused"
    if "all connection attempts failed" in text.lower():
        return "connection refused"
    return " ".join(text.split())[:160]
