"""Write an SVG of every view to screenshots/ from the same app factory and scenes as the snapshot tests.

    .venv/bin/python scripts/screenshots.py [OUTDIR]
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.tui_scenes import SCENES, SIZE, Scene  # noqa: E402


async def shoot(scene: Scene, out: Path) -> Path:
    app = scene.app()
    async with app.run_test(size=SIZE) as pilot:
        await scene.run(pilot)
        path = out / f"{scene.name}.svg"
        path.write_text(app.export_screenshot(title=f"dockyard — {scene.name}"))
    return path


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    for scene in SCENES:
        print(asyncio.run(shoot(scene, out)))


if __name__ == "__main__":
    main()
