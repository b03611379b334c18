"""Deterministic app states (FakeEngine, fixed clock) shared by the snapshot tests and
scripts/screenshots.py, so the README's screenshots are exactly what the tests compare."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from textual.pilot import Pilot

from tests.fake_engine import CLOCK, FakeEngine
from tui.app import DockyardApp, make_app

SIZE = (120, 36)


async def nothing_answers(host: str, port: int) -> bool:
    """The Ports view's probe in scenes: the fake containers' host ports are not checked on this machine
    (something real may listen there), so the ANSWERS column is the same everywhere."""
    return False


def scene_app(**engine_options: object) -> DockyardApp:
    engine = FakeEngine(**engine_options)  # type: ignore[arg-type]
    return make_app(engine, clock=CLOCK, registries=["localhost:5000"], poll_interval=3600,
                    port_probe=nothing_answers)


async def settle(pilot: Pilot[None]) -> None:
    """Wait until the workers that load data are done (long-lived ones excluded)."""
    for _ in range(3):
        await pilot.pause()
        await pilot.app.workers.wait_for_complete()
    await pilot.pause(0.05)


@dataclass(frozen=True)
class Scene:
    name: str
    keys: tuple[str, ...]
    engine: dict[str, object] | None = None
    after: Callable[[Pilot[None]], Awaitable[None]] | None = None

    def app(self) -> DockyardApp:
        return scene_app(**(self.engine or {}))

    async def run(self, pilot: Pilot[None]) -> None:
        await settle(pilot)
        for key in self.keys:
            await pilot.press(key)
            await settle(pilot)
        if self.after is not None:
            await self.after(pilot)
            await settle(pilot)


async def _select_second(pilot: Pilot[None]) -> None:
    await pilot.press("down")


SCENES: tuple[Scene, ...] = (
    Scene("1-images", ("1", "down")),
    Scene("1-images-layers", ("1", "down", "f", "down", "down")),
    Scene("2-build", ("2", "b")),
    Scene("2-build-failed", ("2", "b"), engine={"fail_build": True}),
    Scene("3-registry", ("3",)),
    Scene("4-containers", ("4",)),
    Scene("5-ports", ("5",)),
    Scene("6-watch", ("6", "w", "ctrl+s")),
    Scene("help", ("question_mark",)),
)
