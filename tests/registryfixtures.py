"""Real CNCF registries (``docker-registry serve``) on free loopback ports, for any test module.

Use it as a plugin from any test module::

    if TYPE_CHECKING:
        from tests.registryfixtures import RunningRegistry

    pytest_plugins = ["tests.registryfixtures"]   # (import it only for typing: pytest loads it)

    async def test_x(open_registry: RunningRegistry) -> None:
        host = open_registry.host          # "127.0.0.1:PORT"

Fixtures (session-scoped: one process each per test run; use a unique repository name per test):

* ``open_registry``   anonymous access, deletes enabled.
* ``basic_registry``  htpasswd Basic auth; ``.username`` / ``.password``.
* ``token_registry``  token auth with a loopback token issuer (``.token_server``: a :class:`TokenServer`
                      that issues RS256 JWTs with an ``x5c`` header, records every request, supports the
                      OAuth2 refresh-token grant, and can be told what tokens to issue).
* ``fresh_registry``  a function-scoped factory: ``fresh_registry()`` starts a new empty open registry.

Outside pytest (benchmarks), :func:`start_registry` is a context manager returning a
:class:`RunningRegistry`. Every process is bound to 127.0.0.1 and stopped by its PID. Tests skip only
when the ``docker-registry`` binary is truly absent.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import http.server
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REGISTRY_BIN = shutil.which("docker-registry") or "/usr/bin/docker-registry"
USERNAME = "dockyard"
PASSWORD = "s3cret-pa55"


def have_registry() -> bool:
    return os.path.exists(REGISTRY_BIN)


def require_registry() -> None:
    if not have_registry():
        pytest.skip("docker-registry (the CNCF distribution registry) is not installed")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---- token issuer --------------------------------------------------------------------------------------


@dataclass
class TokenServer:
    """A tiny token service for the registry's ``auth.token`` mode (the distribution token spec)."""

    service: str
    issuer: str
    users: dict[str, str]
    key: Any = None  # cryptography RSA private key
    cert_pem: bytes = b""
    anonymous_pull: bool = False
    expires_in: int = 300
    requests: list[dict[str, Any]] = field(default_factory=list)
    refresh_tokens: dict[str, str] = field(default_factory=dict)  # refresh token -> user
    port: int = 0
    _server: http.server.ThreadingHTTPServer | None = None

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def generate_keys(self, directory: Path) -> Path:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.issuer)])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        self._cert_der = cert.public_bytes(serialization.Encoding.DER)
        path = directory / "token-cert.pem"
        path.write_bytes(self.cert_pem)
        return path

    def issue(self, subject: str, access: list[dict[str, Any]]) -> str:
        import jwt

        now = int(time.time())
        claims = {"iss": self.issuer, "sub": subject, "aud": self.service, "exp": now + self.expires_in,
                  "nbf": now - 10, "iat": now, "jti": secrets.token_hex(8), "access": access}
        headers = {"x5c": [base64.b64encode(self._cert_der).decode()]}
        return str(jwt.encode(claims, self.key, algorithm="RS256", headers=headers))

    def grant(self, user: str | None, scopes: list[str]) -> list[dict[str, Any]]:
        access = []
        for scope in scopes:
            for piece in scope.split(" "):
                kind, _, rest = piece.partition(":")
                name, _, actions = rest.rpartition(":")
                if not kind or not name:
                    continue
                wanted = [a for a in actions.split(",") if a]
                if user is None:
                    wanted = [a for a in wanted if a == "pull"] if self.anonymous_pull else []
                if wanted:
                    access.append({"type": kind, "name": name, "actions": wanted})
        return access

    def start(self) -> None:
        server_ref = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _user(self) -> tuple[str | None, bool]:
                header = self.headers.get("Authorization") or ""
                if not header.startswith("Basic "):
                    return None, True
                try:
                    user, _, password = base64.b64decode(header[6:]).decode().partition(":")
                except ValueError:
                    return None, False
                return (user, True) if server_ref.users.get(user) == password else (None, False)

            def do_GET(self) -> None:
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                user, ok = self._user()
                server_ref.requests.append({"method": "GET", "user": user, "query": query,
                                            "authorization": bool(self.headers.get("Authorization"))})
                if not ok:
                    self._answer(401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]})
                    return
                token = server_ref.issue(user or "", server_ref.grant(user, query.get("scope", [])))
                body: dict[str, Any] = {"token": token, "access_token": token, "expires_in": server_ref.expires_in,
                                        "issued_at": dt.datetime.now(dt.UTC).isoformat()}
                if user and query.get("offline_token") == ["true"]:
                    refresh = secrets.token_hex(16)
                    server_ref.refresh_tokens[refresh] = user
                    body["refresh_token"] = refresh
                self._answer(200, body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                server_ref.requests.append({"method": "POST", "form": {k: v for k, v in form.items()
                                                                       if k != "refresh_token"},
                                            "user": None, "query": {}})
                user = server_ref.refresh_tokens.get((form.get("refresh_token") or [""])[0])
                if form.get("grant_type") != ["refresh_token"] or user is None:
                    self._answer(401, {"error": "invalid_grant"})
                    return
                scopes = " ".join(form.get("scope", [])).split()
                token = server_ref.issue(user, server_ref.grant(user, scopes))
                self._answer(200, {"access_token": token, "expires_in": server_ref.expires_in})

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def token_requests(self) -> list[dict[str, Any]]:
        return list(self.requests)


# ---- registry processes ----------------------------------------------------------------------------------


@dataclass
class RunningRegistry:
    host: str  # 127.0.0.1:PORT, what a reference names
    port: int
    root: Path  # the registry's storage root
    process: subprocess.Popen[bytes]
    log_path: Path
    auth: str = "none"  # none | basic | token
    username: str | None = None
    password: str | None = None
    token_server: TokenServer | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def ref(self, repository: str, tag: str = "latest") -> str:
        return f"{self.host}/{repository}:{tag}"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        if self.token_server is not None:
            self.token_server.stop()

    def wipe(self) -> None:
        """Empty the storage (benchmarks: every push against an empty registry); restart to drop caches."""
        self.stop()
        shutil.rmtree(self.root / "docker", ignore_errors=True)
        self.process = _spawn(self.root.parent / "config.yml", self.log_path)
        _wait_ready(self)


def _spawn(config: Path, log_path: Path) -> subprocess.Popen[bytes]:
    log = open(log_path, "ab")  # noqa: SIM115 - owned by the child
    try:
        return subprocess.Popen([REGISTRY_BIN, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    finally:
        log.close()


def _wait_ready(reg: RunningRegistry, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if reg.process.poll() is not None:
            raise RuntimeError(f"docker-registry exited ({reg.process.returncode}): {reg.log()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{reg.url}/v2/", timeout=1):
                return
        except urllib.error.HTTPError as exc:
            if exc.code == 401:
                return
        except OSError:
            pass
        time.sleep(0.02)
    reg.stop()
    raise RuntimeError(f"docker-registry did not answer on {reg.host}: {reg.log()[-2000:]}")


@contextlib.contextmanager
def start_registry(
    directory: Path | None = None, *, auth: str = "none", username: str = USERNAME, password: str = PASSWORD,
    anonymous_pull: bool = False, token_expires_in: int = 300,
) -> Iterator[RunningRegistry]:
    """Start ``docker-registry serve`` on a free loopback port; stops it (by PID) on exit."""
    if not have_registry():
        raise RuntimeError("docker-registry is not installed")
    own = directory is None
    base = Path(tempfile.mkdtemp(prefix="dockyard-registry-")) if directory is None else directory
    base.mkdir(parents=True, exist_ok=True)
    storage = base / "storage"
    storage.mkdir(exist_ok=True)
    port = free_port()
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(storage)}, "delete": {"enabled": True},
                    "maintenance": {"uploadpurging": {"enabled": False}}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": secrets.token_hex(16)},
    }
    token_server: TokenServer | None = None
    if auth == "basic":
        htpasswd = base / "htpasswd"
        subprocess.run(["htpasswd", "-Bbc", str(htpasswd), username, password], check=True,
                       capture_output=True)
        config["auth"] = {"htpasswd": {"realm": "dockyard-test", "path": str(htpasswd)}}
    elif auth == "token":
        token_server = TokenServer(service="dockyard-test-registry", issuer="dockyard-test-issuer",
                                   users={username: password}, anonymous_pull=anonymous_pull,
                                   expires_in=token_expires_in)
        bundle = token_server.generate_keys(base)
        token_server.start()
        config["auth"] = {"token": {"realm": token_server.realm, "service": token_server.service,
                                    "issuer": token_server.issuer, "rootcertbundle": str(bundle)}}
    elif auth != "none":
        raise ValueError(f"unknown auth mode {auth!r}")
    config_path = base / "config.yml"
    config_path.write_text(json.dumps(config))  # JSON is YAML
    log_path = base / "registry.log"
    reg = RunningRegistry(
        host=f"127.0.0.1:{port}", port=port, root=storage, process=_spawn(config_path, log_path),
        log_path=log_path, auth=auth, username=username if auth != "none" else None,
        password=password if auth != "none" else None, token_server=token_server,
    )
    try:
        _wait_ready(reg)
        yield reg
    finally:
        reg.stop()
        if own:
            shutil.rmtree(base, ignore_errors=True)


# ---- pytest fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def open_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    require_registry()
    with start_registry(tmp_path_factory.mktemp("open-registry")) as reg:
        yield reg


@pytest.fixture(scope="session")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    require_registry()
    if shutil.which("htpasswd") is None:
        pytest.skip("htpasswd (apache2-utils) is not installed")
    with start_registry(tmp_path_factory.mktemp("basic-registry"), auth="basic") as reg:
        yield reg


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    require_registry()
    pytest.importorskip("jwt", reason="pyjwt is needed for the token issuer")
    with start_registry(tmp_path_factory.mktemp("token-registry"), auth="token") as reg:
        yield reg


@pytest.fixture
def fresh_registry(tmp_path: Path) -> Iterator[Callable[..., RunningRegistry]]:
    """A factory: ``fresh_registry(auth="none")`` starts a new empty registry, stopped after the test."""
    require_registry()
    stack = contextlib.ExitStack()
    counter = iter(range(1000))

    def make(**kwargs: Any) -> RunningRegistry:
        return stack.enter_context(start_registry(tmp_path / f"registry-{next(counter)}", **kwargs))

    with stack:
        yield make
