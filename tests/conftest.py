"""Suite-wide isolation: every test gets its own dockyard state, config and docker config, so the
suite never touches /var/lib/dockyard, ~/.docker or a real dockyard0 bridge."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

_SESSION_TAG = os.getpid() % 200


@pytest.fixture(autouse=True)
def isolated_dockyard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    root = tmp_path / "dockyard-root"
    monkeypatch.setenv("DOCKYARD_ROOT", str(root))
    monkeypatch.setenv("DOCKYARD_CONFIG", str(tmp_path / "dockyard-config.toml"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    monkeypatch.setenv("DOCKYARD_BRIDGE", f"dyt{_SESSION_TAG}")
    monkeypatch.setenv("DOCKYARD_SUBNET", f"10.214.{_SESSION_TAG}.0/24")
    yield root
