"""RegistryClient: the distribution API over one shared ``httpx.AsyncClient`` per registry.

It owns policy above the transport: the ping and its challenge, Authorization (never sent to another
origin, so a blob redirect to storage carries none), retries with backoff for idempotent requests
(408/429/5xx and dropped connections; ``Retry-After`` honoured), body-size caps, and the translation
of every httpx exception and error status into the engine's RegistryError tree.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urljoin

import httpx

from engine.errors import AuthenticationError, InvalidManifestError, RegistryError, RegistryUnavailableError
from engine.oci import mediatypes as mt
from engine.oci.digest import Digest
from engine.registry.auth import Authenticator, _transport_reason
from engine.registry.challenge import parse_headers, pick
from engine.registry.credentials import Credential
from engine.registry.direct import DIRECT, DirectTransport
from engine.registry.errors import MAX_ERROR_BODY, registry_error
from engine.registry.hosts import Endpoint, endpoint_for

MAX_MANIFEST_BODY = 8 * 1024 * 1024
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 10
MAX_RETRY_AFTER = 60.0
DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=60.0, write=60.0, pool=120.0)
BLOB_TIMEOUT = httpx.Timeout(connect=10.0, read=600.0, write=600.0, pool=600.0)
USER_AGENT = "dockyard/0.1"

ContentFactory = Callable[[], Any]


@dataclass(frozen=True, slots=True)
class RateLimitInfo:
    limit: str | None
    remaining: str | None


@dataclass(frozen=True, slots=True)
class FetchedManifest:
    raw: bytes
    media_type: str
    digest: Digest  # the digest of ``raw`` (verified against what was asked for)


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # str.isdigit() also accepts "²", which float() refuses
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def parse_link_next(header: str | None, base: str) -> str | None:
    """The ``rel="next"`` target of a Link header, resolved against ``base``."""
    if not header:
        return None
    for part in header.split(","):
        section = part.strip()
        if not section.startswith("<") or ">" not in section:
            continue
        target, _, params = section[1:].partition(">")
        rels = [p.strip() for p in params.split(";") if p.strip().lower().startswith("rel=")]
        if any(r.split("=", 1)[1].strip('"').lower() == "next" for r in rels):
            try:
                return urljoin(base, target)
            except ValueError:  # "<http://[::1/...>": urllib refuses it; so do we, in one line
                raise RegistryError(f"the registry sent a Link header with an invalid URL: {target[:100]!r}") \
                    from None
    return None


def _url(url: str, problem: str, base: httpx.URL | None = None) -> httpx.URL:
    """``url`` (joined to ``base``) as an httpx URL; a server-sent URL httpx refuses is a RegistryError."""
    try:
        joined = base.join(url) if base is not None else httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise RegistryError(f"{problem}: {url[:100]!r} ({exc})") from None
    if joined.scheme not in ("http", "https") or not joined.host:
        raise RegistryError(f"{problem}: {url[:100]!r} (not an http(s) URL with a host)")
    return joined


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    port = url.port or (443 if url.scheme == "https" else 80)
    return url.scheme, url.host, port


class RegistryClient:
    """One registry: ``async with RegistryClient("localhost:5000") as c: await c.get_manifest(...)``."""

    def __init__(
        self, registry: str, *, credential: Credential | None = None, insecure: Iterable[str] = (),
        force_insecure: bool = False, http: httpx.AsyncClient | None = None, retries: int = 4,
        backoff: float = 0.2, max_connections: int = 8,
    ) -> None:
        self.endpoint: Endpoint = endpoint_for(registry, insecure, force_insecure=force_insecure)
        self.registry = self.endpoint.registry
        self.auth = Authenticator(self.registry, credential)
        self.retries = retries
        self.backoff = backoff
        self.rate_limit: RateLimitInfo | None = None
        self._own_http = http is None
        self._http = http or self._new_http(self.endpoint.verify_tls, max_connections)
        self._pinged = False
        self._ping_lock = asyncio.Lock()

    @staticmethod
    def _new_http(verify: bool, max_connections: int) -> httpx.AsyncClient:
        pooled = httpx.AsyncHTTPTransport(
            verify=verify, trust_env=False,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )
        return httpx.AsyncClient(
            transport=DirectTransport(pooled, verify=verify), timeout=DEFAULT_TIMEOUT, follow_redirects=False,
            trust_env=False, headers={"User-Agent": USER_AGENT},
        )

    @property
    def http(self) -> httpx.AsyncClient:
        return self._http

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.aclose()

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ---- ping ---------------------------------------------------------------------------------------

    def url(self, path: str) -> str:
        return self.endpoint.base + path

    async def ping(self) -> None:
        """GET /v2/ without credentials: learn the challenge (or that anonymous access is allowed)."""
        async with self._ping_lock:
            if self._pinged:
                return
            try:
                response = await self._get_v2()
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if not self.endpoint.fallback_http:
                    raise self._unavailable(exc) from exc
                await self._switch_to_http()
                try:
                    response = await self._get_v2()
                except httpx.TransportError as exc2:
                    raise self._unavailable(exc2) from exc2
            except httpx.TransportError as exc:
                raise self._unavailable(exc) from exc
            if response.status_code == 401:
                self.auth.challenge = pick(parse_headers(response.headers.get_list("www-authenticate")))
                if self.auth.challenge is None:
                    raise AuthenticationError(f"{self.registry} asks for an authentication scheme dockyard "
                                              "does not support")
            elif response.status_code == 404:
                raise RegistryError(f"{self.registry} does not serve the registry API v2 (GET /v2/ gave 404)",
                                    status=404)
            elif response.status_code >= 400:
                raise registry_error(response.status_code, response.content[:MAX_ERROR_BODY],
                                     registry=self.registry)
            self._pinged = True

    async def _get_v2(self) -> httpx.Response:
        try:
            return await self._http.get(self.url("/v2/"))
        except httpx.InvalidURL as exc:  # httpx derives the next request from any Location it gets
            raise RegistryError(f"{self.registry} answered with an invalid URL: {exc}") from None

    async def _switch_to_http(self) -> None:
        self.endpoint = self.endpoint.as_http()

    def _unavailable(self, exc: BaseException) -> RegistryUnavailableError:
        reason = _transport_reason(exc)
        if isinstance(exc, httpx.TimeoutException):
            reason = "timed out"
        return RegistryUnavailableError(f"cannot reach registry {self.registry}: {reason}")

    # ---- the request loop ---------------------------------------------------------------------------

    def _same_origin(self, url: httpx.URL) -> bool:
        return _origin(url) == _origin(httpx.URL(self.endpoint.base))

    async def send(
        self, method: str, url: str, *, scopes: tuple[str, ...], headers: Mapping[str, str] | None = None,
        params: Any = None, content: ContentFactory | None = None, idempotent: bool = True,
        timeout: httpx.Timeout | None = None, retry_statuses: frozenset[int] = RETRY_STATUSES,
        direct: bool = False,
    ) -> httpx.Response:
        """Send with auth, redirects and retries; returns an open streaming response (caller closes it).

        ``direct`` (GETs of big blobs): every hop goes over its own connection, and when this client
        made its own transport the response carries a ``DirectBody`` (see engine.registry.direct) that
        a worker thread can drain; with an injected ``httpx.AsyncClient`` it is an ordinary response."""
        await self.ping()
        attempt = 0
        redirects = 0
        auth_retried = False
        target = _url(url, "an invalid URL")
        while True:
            request_headers = dict(headers or {})
            if self._same_origin(target):
                authorization = await self.auth.header(self._http, scopes)
                if authorization:
                    request_headers["Authorization"] = authorization
            request = self._http.build_request(
                method, target, headers=request_headers, params=params,
                content=content() if content is not None else None, timeout=timeout or DEFAULT_TIMEOUT,
                extensions={DIRECT: True} if direct else None,
            )
            try:
                response = await self._http.send(request, stream=True)
            except httpx.TransportError as exc:
                if idempotent and attempt < self.retries and not isinstance(exc, httpx.UnsupportedProtocol):
                    attempt += 1
                    await asyncio.sleep(self.backoff * (2 ** (attempt - 1)))
                    continue
                raise self._unavailable(exc) from exc
            except httpx.InvalidURL as exc:  # httpx derives the next request from any Location it gets
                raise RegistryError(f"{self.registry} answered with an invalid URL: {exc}") from None
            status = response.status_code
            if status in REDIRECT_STATUSES and "location" in response.headers:
                await response.aclose()
                redirects += 1
                if redirects > MAX_REDIRECTS:
                    raise RegistryError(f"{self.registry}: too many redirects for {target.path}")
                target = _url(response.headers["location"], f"{self.registry} redirected to an invalid URL", target)
                params = None  # the Location carries its own query
                if status == 303:
                    method, content = "GET", None
                continue
            if status == 401 and not auth_retried and self._same_origin(target):
                found = pick(parse_headers(response.headers.get_list("www-authenticate")))
                if found is not None:
                    # A token that expired early or lacks a scope: refresh it once and resend.
                    await response.aclose()
                    auth_retried = True
                    self.auth.challenge = found
                    self.auth.forget(scopes)
                    extra = found.params.get("scope")
                    if extra and extra not in scopes:
                        scopes = (*scopes, *extra.split(" "))
                    continue
            if status in retry_statuses and idempotent and attempt < self.retries:
                delay = retry_after_seconds(response.headers.get("retry-after"))
                await response.aclose()
                attempt += 1
                await asyncio.sleep(min(delay if delay is not None else self.backoff * (2 ** (attempt - 1)),
                                        MAX_RETRY_AFTER))
                continue
            self._note_rate_limit(response)
            return response

    def _note_rate_limit(self, response: httpx.Response) -> None:
        limit = response.headers.get("ratelimit-limit")
        remaining = response.headers.get("ratelimit-remaining")
        if limit is not None or remaining is not None:
            self.rate_limit = RateLimitInfo(limit, remaining)

    async def error_for(self, response: httpx.Response, *, repository: str | None = None,
                    target: str | None = None) -> RegistryError:
        body = await read_capped(response, MAX_ERROR_BODY, truncate=True)
        await response.aclose()
        error = registry_error(response.status_code, body, registry=self.registry, repository=repository,
                               target=target)
        if response.status_code == 429:
            after = response.headers.get("retry-after")
            if after:
                error = RegistryError(f"{error.message} (retry after {after} s)", code=error.code, status=429)
        return error

    async def request(
        self, method: str, url: str, *, scopes: tuple[str, ...], ok: Iterable[int] = (200,),
        max_body: int = MAX_ERROR_BODY, repository: str | None = None, target: str | None = None,
        **kwargs: Any,
    ) -> tuple[httpx.Response, bytes]:
        """A complete exchange: (response, body) when the status is in ``ok``; RegistryError otherwise."""
        idempotent = bool(kwargs.get("idempotent", True))
        attempt = 0
        while True:
            response = await self.send(method, url, scopes=scopes, **kwargs)
            if response.status_code not in set(ok):
                raise await self.error_for(response, repository=repository, target=target)
            try:
                body = await read_capped(response, max_body)
            except _BodyLost:
                if idempotent and attempt < self.retries:
                    attempt += 1
                    await asyncio.sleep(self.backoff * (2 ** (attempt - 1)))
                    continue
                raise
            finally:
                await response.aclose()
            return response, body

    @contextlib.asynccontextmanager
    async def stream(
        self, method: str, url: str, *, scopes: tuple[str, ...], ok: Iterable[int] = (200,),
        repository: str | None = None, target: str | None = None, **kwargs: Any,
    ) -> AsyncIterator[httpx.Response]:
        response = await self.send(method, url, scopes=scopes, **kwargs)
        try:
            if response.status_code not in set(ok):
                raise await self.error_for(response, repository=repository, target=target)
            yield response
        finally:
            await response.aclose()

    # ---- manifests ----------------------------------------------------------------------------------

    def _path(self, repository: str, kind: str, reference: str) -> str:
        return self.url(f"/v2/{repository}/{kind}/{quote(reference, safe=':')}")

    async def get_manifest(self, repository: str, reference: str, *, accept: str = mt.MANIFEST_ACCEPT,
                           scopes: tuple[str, ...] | None = None) -> FetchedManifest:
        """GET a manifest or index by tag or digest; verified against the digest asked for or announced."""
        scopes = scopes or (f"repository:{repository}:pull",)
        try:
            response, body = await self.request(
                "GET", self._path(repository, "manifests", reference), scopes=scopes,
                headers={"Accept": accept}, max_body=MAX_MANIFEST_BODY, repository=repository,
                target=f"{repository}:{reference}" if ":" not in reference else f"{repository}@{reference}",
            )
        except _TooLarge:
            raise InvalidManifestError(f"the manifest of {repository}@{reference} is larger than "
                                       f"{MAX_MANIFEST_BODY} bytes") from None
        media_type = response.headers.get("content-type", "").split(";")[0].strip()
        expected: Digest | None = None
        if reference.startswith(("sha256:", "sha512:")):
            expected = Digest.parse(reference)
        elif response.headers.get("docker-content-digest"):
            with contextlib.suppress(Exception):
                expected = Digest.parse(response.headers["docker-content-digest"])
        actual = Digest.from_bytes(body, expected.algorithm if expected else "sha256")
        if expected is not None and actual != expected:
            raise RegistryError(f"the manifest {repository}@{reference} from {self.registry} hashes to {actual}, "
                                f"not {expected}", code="DIGEST_INVALID")
        return FetchedManifest(body, media_type, actual)

    async def head_manifest(self, repository: str, reference: str, *,
                            scopes: tuple[str, ...] | None = None) -> tuple[Digest, str, int] | None:
        """(digest, media type, size) of a manifest, or None when the registry does not have it."""
        scopes = scopes or (f"repository:{repository}:pull",)
        response, _ = await self.request(
            "HEAD", self._path(repository, "manifests", reference), scopes=scopes, ok=(200, 404),
            headers={"Accept": mt.MANIFEST_ACCEPT}, repository=repository,
        )
        if response.status_code == 404:
            return None
        header = response.headers.get("docker-content-digest")
        if not header:
            fetched = await self.get_manifest(repository, reference, scopes=scopes)
            return fetched.digest, fetched.media_type, len(fetched.raw)
        return (Digest.parse(header), response.headers.get("content-type", "").split(";")[0],
                int(response.headers.get("content-length") or 0))

    async def put_manifest(self, repository: str, reference: str, raw: bytes, media_type: str) -> Digest:
        response, _ = await self.request(
            "PUT", self._path(repository, "manifests", reference),
            scopes=(f"repository:{repository}:pull,push",), ok=(200, 201, 202),
            headers={"Content-Type": media_type}, content=lambda: raw, repository=repository,
            target=f"{repository}:{reference}",
        )
        digest = Digest.from_bytes(raw)
        announced = response.headers.get("docker-content-digest")
        if announced and announced != str(digest):
            raise RegistryError(f"{self.registry} stored the manifest under {announced}, not {digest}",
                                code="DIGEST_INVALID")
        return digest

    async def delete_manifest(self, repository: str, digest: Digest) -> None:
        await self.request(
            "DELETE", self._path(repository, "manifests", str(digest)),
            scopes=(f"repository:{repository}:delete", f"repository:{repository}:pull"), ok=(200, 202),
            repository=repository, target=f"{repository}@{digest}",
        )

    # ---- blobs --------------------------------------------------------------------------------------

    def blob_url(self, repository: str, digest: Digest) -> str:
        return self._path(repository, "blobs", str(digest))

    async def head_blob(self, repository: str, digest: Digest, *, scopes: tuple[str, ...] | None = None) -> int | None:
        """The blob's size when the registry has it, else None."""
        response, _ = await self.request(
            "HEAD", self.blob_url(repository, digest), scopes=scopes or (f"repository:{repository}:pull",),
            ok=(200, 404), repository=repository,
        )
        if response.status_code == 404:
            return None
        length = response.headers.get("content-length")
        return int(length) if length and length.isdigit() else 0

    async def get_blob(self, repository: str, digest: Digest, *, max_size: int) -> bytes:
        """A small blob (a config) read whole and verified."""
        try:
            _, body = await self.request(
                "GET", self.blob_url(repository, digest), scopes=(f"repository:{repository}:pull",),
                max_body=max_size, repository=repository, target=f"{repository}@{digest}",
                timeout=BLOB_TIMEOUT,
            )
        except _TooLarge:
            raise RegistryError(f"blob {digest} of {repository} is larger than {max_size} bytes") from None
        if Digest.from_bytes(body, digest.algorithm) != digest:
            raise RegistryError(f"blob {digest} from {self.registry} does not match its digest",
                                code="DIGEST_INVALID")
        return body

    # ---- listing ------------------------------------------------------------------------------------

    async def pages(self, first_url: str, key: str, *, scopes: tuple[str, ...],
                    repository: str | None = None) -> AsyncIterator[list[str]]:
        """Follow ``Link: <...>; rel="next"`` lazily; each item is one page of names."""
        url: str | None = first_url
        seen: set[str] = set()
        while url is not None and url not in seen:
            seen.add(url)
            response, body = await self.request("GET", url, scopes=scopes, max_body=16 * 1024 * 1024,
                                                repository=repository, target=repository)
            try:
                data = httpx.Response(200, content=body).json()
            except ValueError:
                raise RegistryError(f"{self.registry} answered {key} with something that is not JSON") from None
            items = data.get(key) if isinstance(data, dict) else None
            page = [str(x) for x in items] if isinstance(items, list) else []
            yield page
            url = parse_link_next(response.headers.get("link"), str(response.request.url))


class _TooLarge(RegistryError):
    pass


class _BodyLost(RegistryUnavailableError):
    pass


async def read_capped(response: httpx.Response, limit: int, *, truncate: bool = False) -> bytes:
    """The response body, refusing (or truncating) more than ``limit`` bytes."""
    body = bytearray()
    try:
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > limit:
                if truncate:
                    return bytes(body[:limit])
                raise _TooLarge(f"response body larger than {limit} bytes")
    except httpx.TransportError as exc:
        if truncate:
            return bytes(body)
        raise _BodyLost(f"connection lost while reading from {response.request.url.host}: "
                                       f"{_transport_reason(exc)}") from exc
    return bytes(body)
