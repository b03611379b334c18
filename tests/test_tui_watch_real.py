"""The Watch view over the REAL watch loop: real builder, runc, the loop's port forwarder.

Starts a watch from the view (w, the form, ctrl+s) on a busybox httpd context, sees the phases, edits
the page and sees a second swap serving it, then stops the loop with x: the container is gone.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from engine.api import Engine
from engine.config import EngineConfig
from engine.events import WatchStatus
from tests.registryfixtures import free_port
from tui.app import DockyardApp, make_app
from tui.views.watch import WatchView

pytest_plugins = ["tests.runtime_fixtures"]
pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(180)]

DOCKERFILE = """\
FROM busybox
COPY index.html /www/index.html
CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]
"""


async def until(pilot: Pilot[None], condition: Callable[[], object], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        await pilot.pause(0.05)
    notes = [n.message for n in pilot.app._notifications]
    watch = pilot.app.query("#view-watch")
    phase = getattr(watch.first(), "phase", None) if watch else None
    raise AssertionError(f"timed out waiting for {what} (phase {phase!r}, notifications {notes})")


def fetch(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
            return str(response.read().decode())
    except OSError as exc:
        return f"<{exc}>"


def record_phases(view: WatchView) -> list[WatchStatus]:
    seen: list[WatchStatus] = []
    apply = view.apply_status

    def recording(status: WatchStatus) -> None:
        seen.append(status)
        apply(status)

    view.apply_status = recording  # type: ignore[method-assign]
    return seen


async def start_watch(pilot: Pilot[None], app: DockyardApp, context: Path, port: int
                      ) -> tuple[WatchView, list[WatchStatus]]:
    await pilot.press("6")
    await pilot.pause(0.2)
    view = app.view("watch")
    assert isinstance(view, WatchView)
    seen = record_phases(view)
    view.focus()
    await pilot.press("w")
    await until(pilot, lambda: bool(app.screen.query("#field-context")), "the watch form")
    app.screen.query_one("#field-context", Input).value = str(context)
    app.screen.query_one("#field-tag", Input).value = "site-dev:latest"
    app.screen.query_one("#field-ports", Input).value = f"{port}:8080"
    await pilot.press("ctrl+s")
    return view, seen


@pytest.fixture
def site(tmp_path: Path) -> Path:
    context = tmp_path / "site"
    context.mkdir()
    (context / "Dockerfile").write_text(DOCKERFILE)
    (context / "index.html").write_text("version one\n")
    return context


async def containers(engine: Any) -> list[str]:
    return [c.name for c in await engine.containers.list(all=True)]


async def test_watch_builds_swaps_on_edit_and_stops(busybox_image: str, site: Path) -> None:
    engine = Engine(EngineConfig.from_env())
    app = make_app(engine, poll_interval=3600)
    port = free_port()
    try:
        async with app.run_test(size=(120, 36)) as pilot:
            view, seen = await start_watch(pilot, app, site, port)
            phases = lambda: [s.phase for s in seen]  # noqa: E731
            await until(pilot, lambda: "ready" in phases() or "swapped" in phases(), "the first container", 90)
            assert "building" in phases() and "failed" not in phases(), phases()
            await until(pilot, lambda: fetch(port) == "version one\n", "the first page on the mapped port", 30)
            assert view.history == []  # the history lists rebuilds after changes
            first_image = view.last_good
            assert first_image and len(await containers(engine)) == 1

            mark = len(seen)
            (site / "index.html").write_text("version two\n")
            await until(pilot, lambda: "swapped" in [s.phase for s in seen[mark:]], "the swap after the edit", 90)
            after = [s.phase for s in seen[mark:]]
            assert after.index("changed") < after.index("building") < after.index("swapped"), after
            await until(pilot, lambda: fetch(port) == "version two\n", "the new page on the same port", 30)
            assert [h.result for h in view.history] == ["swapped"]
            assert view.last_good != first_image
            assert "index.html" in view.history[-1].files
            phase_line = str(app.query_one("#watch-phase").render())
            assert "swapped" in phase_line

            await pilot.press("x")
            await until(pilot, lambda: view.loop is None, "the loop to end", 30)
            assert "stopped" in [s.phase for s in seen]
            assert await containers(engine) == []
            assert fetch(port).startswith("<")  # nothing answers on the mapped port any more
            assert "# watch stopped (ctrl+c in `dockyard watch`)" in app.commands
    finally:
        for container in await engine.containers.list(all=True):
            await engine.containers.remove(container.id, force=True)


@pytest.mark.parametrize("quit_key", ["q", "ctrl+q"])
async def test_quitting_while_watching_removes_the_container(busybox_image: str, site: Path, quit_key: str) -> None:
    engine = Engine(EngineConfig.from_env())
    app = make_app(engine, poll_interval=3600)
    port = free_port()
    try:
        async with app.run_test(size=(120, 36)) as pilot:
            view, _ = await start_watch(pilot, app, site, port)
            await until(pilot, lambda: view.phase in ("ready", "swapped"), "the first container", 90)
            assert len(await containers(engine)) == 1
            view.focus()
            await pilot.press(quit_key)
            await until(pilot, lambda: not app.is_running, "the app to quit", 30)
        assert await containers(engine) == []
        assert fetch(port).startswith("<")
    finally:
        for container in await engine.containers.list(all=True):
            await engine.containers.remove(container.id, force=True)
