"""SVG snapshots of every view in a deterministic state (FakeEngine, fixed clock).

Update after an intended UI change with: .venv/bin/pytest tests/test_tui_snapshots.py --snapshot-update
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.tui_scenes import SCENES, SIZE, Scene


@pytest.mark.parametrize("scene", SCENES, ids=lambda s: s.name)
def test_view_snapshot(scene: Scene, snap_compare: Any) -> None:
    assert snap_compare(scene.app(), run_before=scene.run, terminal_size=SIZE)
