"""`dockyard pull/push/login/logout/registry ...` end to end against a real Basic-auth registry."""

from __future__ import annotations

import json
import secrets
import stat
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner

from cli.main import cli
from tests.images import have_busybox, make_busybox_tar

if TYPE_CHECKING:
    from tests.registryfixtures import RunningRegistry

pytest_plugins = ["tests.registryfixtures"]
pytestmark = [pytest.mark.registry,
              pytest.mark.skipif(not have_busybox(), reason="busybox-static is not installed")]


def test_login_push_pull_browse_delete_logout(
    basic_registry: RunningRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DOCKYARD_ROOT", str(tmp_path / "root"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    monkeypatch.setenv("DOCKYARD_CONFIG", str(tmp_path / "dockyard.toml"))
    runner = CliRunner()
    host = basic_registry.host
    ref = f"{host}/cli-{secrets.token_hex(3)}/bb:1"
    tar = make_busybox_tar(tmp_path / "bb.tar")
    assert runner.invoke(cli, ["import", str(tar), ref]).exit_code == 0

    denied = runner.invoke(cli, ["push", "-q", ref])
    assert denied.exit_code == 1
    assert denied.output.strip() == f"dockyard: error: unauthorized: run `dockyard login {host}`"

    wrong = runner.invoke(cli, ["login", "-u", "dockyard", "--password-stdin", host], input="nope\n")
    assert wrong.exit_code == 1 and "wrong username or password" in wrong.output and "nope" not in wrong.output
    assert basic_registry.password
    ok = runner.invoke(cli, ["login", "-u", "dockyard", "--password-stdin", host], input=basic_registry.password)
    assert ok.exit_code == 0, ok.output
    assert "Login Succeeded" in ok.output and basic_registry.password not in ok.output
    config = tmp_path / "docker" / "config.json"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600

    pushed = runner.invoke(cli, ["push", ref])
    assert pushed.exit_code == 0, pushed.output
    digest = pushed.output.strip().splitlines()[-1].split("digest: ")[1]
    assert runner.invoke(cli, ["rmi", ref]).exit_code == 0

    pulled = runner.invoke(cli, ["pull", ref])
    assert pulled.exit_code == 0, pulled.output
    assert f"Digest: {digest}" in pulled.output and "Downloaded newer image" in pulled.output
    again = runner.invoke(cli, ["pull", "-q", ref])
    assert again.exit_code == 0 and again.output.strip() == ref

    repos = runner.invoke(cli, ["registry", "repos", host, "--filter", "cli-"])
    assert ref.split("/", 1)[1].split(":")[0] in repos.output.split()
    tags = runner.invoke(cli, ["registry", "tags", ref.rsplit(":", 1)[0]])
    assert tags.output.split() == ["1"]
    inspected = runner.invoke(cli, ["registry", "inspect", "--format", "json", ref])
    assert inspected.exit_code == 0 and json.loads(inspected.output)["Digest"] == digest
    text = runner.invoke(cli, ["registry", "inspect", ref])
    assert "Layers:" in text.output and "application/vnd.oci.image.layer.v1.tar+gzip" in text.output

    removed = runner.invoke(cli, ["registry", "rm", "-y", ref])
    assert removed.exit_code == 0, removed.output
    gone = runner.invoke(cli, ["registry", "inspect", ref])
    assert gone.exit_code == 1 and "manifest unknown" in gone.output

    out = runner.invoke(cli, ["logout", host])
    assert out.exit_code == 0 and f"Removing login credentials for {host}" in out.output
    assert host not in json.loads(config.read_text()).get("auths", {})


def test_pull_from_nowhere_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.registryfixtures import free_port

    monkeypatch.setenv("DOCKYARD_ROOT", str(tmp_path / "root"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    host = f"127.0.0.1:{free_port()}"
    result = CliRunner().invoke(cli, ["pull", f"{host}/nothing:1"])
    assert result.exit_code == 1
    assert result.output.strip() == f"dockyard: error: cannot reach registry {host}: connection refused"
