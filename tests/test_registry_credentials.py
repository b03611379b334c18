"""docker's config.json and credential helpers (a fake ``docker-credential-test`` on PATH)."""

from __future__ import annotations

import base64
import json
import os
import stat
import sys
from pathlib import Path

import pytest

from engine.errors import CredentialHelperError, InvalidInputError
from engine.registry.credentials import Credential, DockerConfig

HELPER = """#!{python}
import json, os, sys
db = os.environ["FAKE_CRED_DB"]
data = json.load(open(db)) if os.path.exists(db) else {{}}
action = sys.argv[1]
if action == "get":
    server = sys.stdin.read().strip()
    if server not in data:
        print("credentials not found in native keychain")
        sys.exit(1)
    json.dump({{"ServerURL": server, **data[server]}}, sys.stdout)
elif action == "store":
    item = json.load(sys.stdin)
    data[item["ServerURL"]] = {{"Username": item["Username"], "Secret": item["Secret"]}}
    json.dump(data, open(db, "w"))
elif action == "erase":
    server = sys.stdin.read().strip()
    if server not in data:
        print("credentials not found in native keychain")
        sys.exit(1)
    del data[server]
    json.dump(data, open(db, "w"))
elif action == "list":
    json.dump({{k: v["Username"] for k, v in data.items()}}, sys.stdout)
"""


@pytest.fixture
def helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "docker-credential-test"
    script.write_text(HELPER.format(python=sys.executable))
    script.chmod(0o755)
    db = tmp_path / "helper-db.json"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_CRED_DB", str(db))
    return db


def write_config(directory: Path, data: dict[str, object]) -> DockerConfig:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(data))
    return DockerConfig(directory)


def test_auths_base64_and_identity_token(tmp_path: Path) -> None:
    config = write_config(tmp_path / "d", {"auths": {
        "https://index.docker.io/v1/": {"auth": base64.b64encode(b"hub:pw:with:colons").decode()},
        "http://localhost:5000": {"auth": base64.b64encode(b"me:").decode(), "identitytoken": "refresh-abc"},
    }})
    hub = config.get("docker.io")
    assert hub is not None and (hub.username, hub.password) == ("hub", "pw:with:colons")
    local = config.get("localhost:5000")
    assert local is not None and local.identity_token == "refresh-abc"
    assert config.get("other.example") is None
    assert config.registries() == ["docker.io", "localhost:5000"]


def test_missing_and_broken_config(tmp_path: Path) -> None:
    assert DockerConfig(tmp_path / "none").get("x") is None
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{nope")
    with pytest.raises(InvalidInputError, match="not valid JSON"):
        DockerConfig(tmp_path / "bad").get("x")


def test_store_writes_0600_and_keeps_other_fields(tmp_path: Path) -> None:
    config = write_config(tmp_path / "d", {"psFormat": "table {{.ID}}", "auths": {}})
    config.store("localhost:5000", Credential("u", "p@ss"))
    assert stat.S_IMODE(config.path.stat().st_mode) == 0o600
    data = json.loads(config.path.read_text())
    assert data["psFormat"] == "table {{.ID}}"
    assert base64.b64decode(data["auths"]["localhost:5000"]["auth"]) == b"u:p@ss"
    assert config.erase("localhost:5000") is True
    assert config.get("localhost:5000") is None
    assert config.erase("localhost:5000") is False


def test_store_creates_directory_and_hub_key(tmp_path: Path) -> None:
    config = DockerConfig(tmp_path / "new")
    config.store("docker.io", Credential("hub", "pw"))
    assert "https://index.docker.io/v1/" in json.loads(config.path.read_text())["auths"]
    assert stat.S_IMODE(config.path.stat().st_mode) == 0o600


def test_secret_never_in_repr() -> None:
    credential = Credential("user", "hunter2", "refresh-xyz")
    assert "hunter2" not in repr(credential) and "refresh-xyz" not in str(credential)


def test_cred_helper_per_registry_before_creds_store(tmp_path: Path, helper: Path) -> None:
    helper.write_text(json.dumps({"reg.example:5000": {"Username": "helped", "Secret": "from-helper"}}))
    config = write_config(tmp_path / "d", {
        "credsStore": "missing-store",
        "credHelpers": {"reg.example:5000": "test"},
        "auths": {"reg.example:5000": {"auth": base64.b64encode(b"file:pw").decode()}},
    })
    found = config.get("reg.example:5000")
    assert found is not None and (found.username, found.password) == ("helped", "from-helper")
    # credsStore names a helper that is not installed: a clear error, not docker-pycreds' crash.
    with pytest.raises(CredentialHelperError, match="docker-credential-missing-store is not installed"):
        config.get("other.example")


def test_helper_store_get_erase_roundtrip(tmp_path: Path, helper: Path) -> None:
    config = write_config(tmp_path / "d", {"credsStore": "test"})
    where = config.store("reg.example", Credential("u", "s3cret"))
    assert "docker-credential-test" in where
    assert "s3cret" not in config.path.read_text()  # the file only lists the registry
    assert json.loads(helper.read_text())["reg.example"]["Secret"] == "s3cret"
    got = config.get("reg.example")
    assert got is not None and got.password == "s3cret"
    assert config.erase("reg.example") is True
    assert config.get("reg.example") is None


def test_helper_identity_token(tmp_path: Path, helper: Path) -> None:
    config = write_config(tmp_path / "d", {"credHelpers": {"reg.example": "test"}})
    config.store("reg.example", Credential("u", "", "refresh-123"))
    stored = json.loads(helper.read_text())["reg.example"]
    assert stored == {"Username": "<token>", "Secret": "refresh-123"}
    got = config.get("reg.example")
    assert got is not None and got.identity_token == "refresh-123" and got.password == ""


def test_helper_failure_is_one_line_without_secret(tmp_path: Path, helper: Path) -> None:
    helper.write_text("{broken")
    config = write_config(tmp_path / "d", {"credsStore": "test"})
    with pytest.raises(CredentialHelperError) as info:
        config.get("reg.example")
    assert "\n" not in str(info.value) and "docker-credential-test" in str(info.value)
