"""Credentials the way docker users already have them: ``$DOCKER_CONFIG/config.json``.

Lookup order for a registry: ``credHelpers[registry]``, then ``credsStore``, then ``auths`` (base64
``auth`` = ``user:password``, or ``identitytoken`` = an OAuth2 refresh token).  Helpers are the
``docker-credential-<name>`` programs, called through docker-pycreds.  A secret never appears in a
repr, a log line, an event or an error message.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import CredentialHelperError, InvalidInputError
from engine.registry.hosts import DOCKER_HUB, auth_key, normalize_registry

HELPER_PREFIX = "docker-credential-"
TOKEN_USERNAME = "<token>"  # what helpers return as Username for an identity token


@dataclass(frozen=True, slots=True)
class Credential:
    username: str
    password: str = field(repr=False, default="")
    identity_token: str | None = field(repr=False, default=None)  # an OAuth2 refresh token

    def __repr__(self) -> str:
        return f"Credential(username={self.username!r}, secret=***)"

    __str__ = __repr__


def docker_config_dir() -> Path:
    env = os.environ.get("DOCKER_CONFIG")
    return Path(env) if env else Path.home() / ".docker"


def _matches(key: str, registry: str) -> bool:
    return normalize_registry(key) == normalize_registry(registry)


class DockerConfig:
    """Read and write docker's ``config.json`` (preserving every field it does not know)."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or docker_config_dir()
        self.path = self.directory / "config.json"

    def load(self) -> dict[str, Any]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise InvalidInputError(f"cannot read {self.path}: {exc.strerror}") from None
        if not raw.strip():
            return {}
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise InvalidInputError(f"{self.path} is not valid JSON") from None
        if not isinstance(data, dict):
            raise InvalidInputError(f"{self.path} is not a JSON object")
        return data

    def save(self, data: Mapping[str, Any]) -> None:
        """Atomic write, mode 0600 (it may hold secrets)."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = self.path.with_name(f".config.json.tmp-{os.getpid()}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                os.fchmod(fd, 0o600)
                os.write(fd, (json.dumps(data, indent="\t") + "\n").encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        except OSError as exc:
            raise InvalidInputError(f"cannot write {self.path}: {exc.strerror}") from None

    # ---- lookup ------------------------------------------------------------------------------------

    def helper_for(self, registry: str, data: Mapping[str, Any] | None = None) -> str | None:
        data = self.load() if data is None else data
        helpers = data.get("credHelpers")
        if isinstance(helpers, dict):
            for key, name in helpers.items():
                if isinstance(name, str) and name and _matches(key, registry):
                    return name
        store = data.get("credsStore")
        return store if isinstance(store, str) and store else None

    def get(self, registry: str) -> Credential | None:
        data = self.load()
        helper = self.helper_for(registry, data)
        if helper:
            found = helper_get(helper, _server_url(registry, data))
            if found is not None:
                return found
        return _from_auths(data, registry)

    def store(self, registry: str, credential: Credential) -> str:
        """Save ``credential``; returns where it went (a helper name or the file path)."""
        data = self.load()
        helper = self.helper_for(registry, data)
        key = auth_key(registry)
        auths = data.get("auths") if isinstance(data.get("auths"), dict) else {}
        assert isinstance(auths, dict)
        for existing in [k for k in auths if _matches(k, registry) and k != key]:
            del auths[existing]
        if helper:
            username = TOKEN_USERNAME if credential.identity_token else credential.username
            secret = credential.identity_token or credential.password
            helper_store(helper, key, username, secret)
            auths[key] = {}  # docker keeps an empty entry so `docker login` lists the registry
            data["auths"] = auths
            self.save(data)
            return f"credential helper {HELPER_PREFIX}{helper}"
        entry: dict[str, str] = {
            "auth": base64.b64encode(f"{credential.username}:{credential.password}".encode()).decode()
        }
        if credential.identity_token:
            entry = {"auth": base64.b64encode(f"{credential.username}:".encode()).decode(),
                     "identitytoken": credential.identity_token}
        auths[key] = entry
        data["auths"] = auths
        self.save(data)
        return str(self.path)

    def erase(self, registry: str) -> bool:
        """Forget the registry's credentials; True when something was removed."""
        data = self.load()
        removed = False
        helper = self.helper_for(registry, data)
        if helper:
            removed = helper_erase(helper, _server_url(registry, data))
        auths = data.get("auths")
        if isinstance(auths, dict):
            for key in [k for k in auths if _matches(k, registry)]:
                del auths[key]
                removed = True
            if removed:
                self.save(data)
        return removed

    def registries(self) -> list[str]:
        """Every registry the config knows (auths and credHelpers), normalised."""
        data = self.load()
        out: list[str] = []
        for section in ("auths", "credHelpers"):
            items = data.get(section)
            if isinstance(items, dict):
                for key in items:
                    name = normalize_registry(str(key))
                    if name and name not in out:
                        out.append(name)
        return out


def _server_url(registry: str, data: Mapping[str, Any]) -> str:
    # Helpers are keyed by what `docker login` stored; for Hub that is the legacy v1 URL.
    auths = data.get("auths")
    if isinstance(auths, dict):
        for key in auths:
            if _matches(key, registry):
                return str(key)
    return auth_key(registry) if normalize_registry(registry) == DOCKER_HUB else normalize_registry(registry)


def _from_auths(data: Mapping[str, Any], registry: str) -> Credential | None:
    auths = data.get("auths")
    if not isinstance(auths, dict):
        return None
    for key, entry in auths.items():
        if not _matches(key, registry) or not isinstance(entry, dict):
            continue
        token = entry.get("identitytoken") if isinstance(entry.get("identitytoken"), str) else None
        encoded = entry.get("auth")
        username, password = "", ""
        if isinstance(encoded, str) and encoded:
            try:
                decoded = base64.b64decode(encoded, validate=False).decode()
            except (binascii.Error, UnicodeDecodeError):
                raise InvalidInputError(f"the auth entry for {normalize_registry(key)} in config.json "
                                        "is not valid base64") from None
            username, _, password = decoded.partition(":")
        elif isinstance(entry.get("username"), str):
            username, password = entry["username"], str(entry.get("password") or "")
        if username or password or token:
            return Credential(username, password, token or None)
    return None


# ---- credential helpers (docker-pycreds) ---------------------------------------------------------------


def _helper_store(name: str) -> Any:
    program = HELPER_PREFIX + name
    # docker-pycreds crashes (os.errno on Python 3) when the program vanishes: check first.
    if shutil.which(program) is None:
        raise CredentialHelperError(f"credential helper {program} is not installed or not on PATH")
    import dockerpycreds

    try:
        return dockerpycreds.Store(name)
    except dockerpycreds.StoreError as exc:
        raise CredentialHelperError(f"credential helper {program}: {_clean(exc)}") from None


def _clean(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


def helper_get(name: str, server: str) -> Credential | None:
    import dockerpycreds

    store = _helper_store(name)
    try:
        result = store.get(server)
    except dockerpycreds.CredentialsNotFound:
        return None
    except (dockerpycreds.StoreError, AttributeError, ValueError, KeyError, TypeError) as exc:
        raise CredentialHelperError(
            f"credential helper {HELPER_PREFIX}{name} failed to get credentials for {server}"
            + (f": {_clean(exc)}" if isinstance(exc, dockerpycreds.StoreError) else "")
        ) from None
    username = str(result.get("Username") or "")
    secret = str(result.get("Secret") or "")
    if username == TOKEN_USERNAME:
        return Credential(username, "", secret)
    return Credential(username, secret)


def helper_store(name: str, server: str, username: str, secret: str) -> None:
    import dockerpycreds

    store = _helper_store(name)
    try:
        store.store(server, username, secret)
    except (dockerpycreds.StoreError, AttributeError) as exc:
        raise CredentialHelperError(f"credential helper {HELPER_PREFIX}{name} could not store credentials "
                                    f"for {server}" + (f": {_clean(exc)}" if isinstance(
                                        exc, dockerpycreds.StoreError) else "")) from None


def helper_erase(name: str, server: str) -> bool:
    import dockerpycreds

    store = _helper_store(name)
    try:
        store.erase(server)
    except dockerpycreds.CredentialsNotFound:
        return False
    except (dockerpycreds.StoreError, AttributeError) as exc:
        raise CredentialHelperError(f"credential helper {HELPER_PREFIX}{name} could not erase credentials "
                                    f"for {server}" + (f": {_clean(exc)}" if isinstance(
                                        exc, dockerpycreds.StoreError) else "")) from None
    return True
