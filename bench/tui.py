"""TUI benchmark: time to first frame, and keypress-to-repaint with 10,000 repositories and 5,000 tags.

    .venv/bin/python bench/tui.py [--runs 5] [--keys 60]

First frame: a fresh interpreter imports the app, builds the real Engine over an empty temporary
DOCKYARD_ROOT and runs the app headless until the first screen update goes to the driver (App._display);
measured from the interpreter's first statement (so imports count).
Keypress-to-repaint: the Registry view over the FakeEngine with 10,000 repositories (paged in the
background) and 5,000 tags per repository. Each key goes to the driver like a real keystroke; the
sample ends at the first screen update (App._display) whose state shows the key's effect (cursor,
focus or filter changed). Targets: first frame <= 0.6 s, keypress-to-repaint median <= 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FIRST_FRAME = r"""
import time
t0 = time.perf_counter()
import asyncio, sys
sys.path.insert(0, {root!r})
from pathlib import Path
from engine.api import Engine
from engine.config import EngineConfig
from tui.app import make_app

async def main():
    app = make_app(Engine(EngineConfig(root=Path({tmp!r}))), registries=["127.0.0.1:1"])
    painted = asyncio.get_running_loop().create_future()
    display = app._display

    def first_display(screen, renderable):
        display(screen, renderable)
        if not painted.done():
            painted.set_result(time.perf_counter())

    app._display = first_display
    async with app.run_test(size=(120, 36)):
        print(await painted - t0)

asyncio.run(main())
"""


def first_frame(runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            env = dict(os.environ, DOCKYARD_CONFIG=str(Path(tmp) / "config.toml"))
            out = subprocess.run([sys.executable, "-c", FIRST_FRAME.format(root=str(ROOT), tmp=tmp)],
                                 capture_output=True, text=True, check=True, env=env, cwd=tmp)
            samples.append(float(out.stdout.strip().splitlines()[-1]))
    return samples


def key_plan(keys: int) -> list[tuple[str, str | None]]:
    plan: list[tuple[str, str | None]] = []
    while len(plan) < keys:
        plan += [("tab", None), ("down", None), ("down", None), ("pagedown", None), ("end", None),
                 ("home", None), ("tab", None), ("tab", None), ("down", None), ("pagedown", None)]
        plan += [("slash", "/"), *((c if c.isalnum() else "minus", c) for c in "repo-01"),
                 ("backspace", None), ("backspace", None), ("escape", None)]
    return plan[:keys]


async def keypress_latency(keys: int) -> tuple[list[float], float, int, int]:
    from textual import events

    from tests.fake_engine import CLOCK, FakeEngine
    from tui.app import make_app
    from tui.widgets.table import VirtualTable

    app = make_app(FakeEngine(repositories=10_000, tags=5_000), clock=CLOCK, registries=["localhost:5000"],
                   poll_interval=3600)
    samples: list[float] = []
    async with app.run_test(size=(120, 36)) as pilot:
        loop = asyncio.get_running_loop()
        t0 = time.perf_counter()
        await pilot.press("3")
        repos = app.query_one("#repo-list", VirtualTable)
        tags = app.query_one("#tag-list", VirtualTable)
        while repos.total_count < 10_005 or tags.total_count < 5_004:
            await asyncio.sleep(0.01)
        loaded = time.perf_counter() - t0
        await pilot.pause(0.3)

        def state() -> tuple[object, ...]:
            focused = app.focused.id if app.focused is not None else None
            return focused, repos.cursor, tags.cursor, repos.filter_text, repos.row_count

        waiting: dict[str, object] = {}
        display = app._display

        def timed_display(screen: object, renderable: object) -> None:
            display(screen, renderable)  # type: ignore[arg-type]
            painted = waiting.get("future")
            if isinstance(painted, asyncio.Future) and not painted.done() and state() != waiting["before"]:
                painted.set_result(time.perf_counter())

        app._display = timed_display  # type: ignore[method-assign]
        driver = app._driver
        assert driver is not None
        for key, char in key_plan(keys):
            waiting["before"] = state()
            painted: asyncio.Future[float] = loop.create_future()
            waiting["future"] = painted
            start = time.perf_counter()
            event = events.Key(key, char)
            event.set_sender(app)
            driver.send_message(event)
            with contextlib.suppress(TimeoutError):  # a key that changed nothing visible gives no sample
                samples.append(await asyncio.wait_for(painted, 2) - start)
            await asyncio.sleep(0.02)  # a typist's pause; background paging runs between keys
        repo_total, tag_total = repos.total_count, tags.total_count
    return samples, loaded, repo_total, tag_total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keys", type=int, default=60)
    args = parser.parse_args()
    frames = first_frame(args.runs)
    samples, loaded, repos, tags = asyncio.run(keypress_latency(args.keys))
    result = {
        "first_frame_s": {"median": round(statistics.median(frames), 3), "min": round(min(frames), 3),
                          "max": round(max(frames), 3), "runs": len(frames), "target": 0.6},
        "keypress_to_repaint_ms": {"median": round(statistics.median(samples) * 1000, 1),
                                   "p90": round(sorted(samples)[int(len(samples) * 0.9)] * 1000, 1),
                                   "max": round(max(samples) * 1000, 1), "keys": len(samples), "target": 50},
        "registry_loaded_s": round(loaded, 2), "repositories": repos, "tags": tags,
        "load_average": os.getloadavg()[0],
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
