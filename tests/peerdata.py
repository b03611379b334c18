"""Locate ../shared/peer-data; tests that need it skip with a clear reason where it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("DOCKYARD_SHARED", REPO.parent / "shared"))
PEER_DATA = SHARED / "peer-data"


def peer_dir(*parts: str) -> Path:
    """Return ``peer-data/<parts>`` or skip the calling test (module) when it is not there."""
    path = PEER_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(
            f"peer data {path} is absent (it lives in ../shared, which CI always has; a fresh clone may not)",
            allow_module_level=True,
        )
    return path
