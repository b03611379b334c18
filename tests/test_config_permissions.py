from __future__ import annotations

import stat
from pathlib import Path

from engine.api import Engine
from engine.config import EngineConfig


def test_state_directory_is_private(tmp_path: Path) -> None:
    root = tmp_path / "state"
    Engine(EngineConfig(root=root))
    assert stat.S_IMODE(root.stat().st_mode) == 0o700


def test_a_wide_existing_state_directory_is_narrowed(tmp_path: Path) -> None:
    root = tmp_path / "state"
    root.mkdir(mode=0o755)
    root.chmod(0o755)
    Engine(EngineConfig(root=root))
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
