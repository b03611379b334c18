"""Crashes the monkey test (tests/test_tui_monkey.py) found, each pinned by a small deterministic test."""

from __future__ import annotations

import asyncio

import pytest

from tests.tui_scenes import scene_app, settle


async def fast_typist(*_: float) -> None:
    """Keys sent without waiting for the app to go idle in between (a fast typist, a paste)."""
    await asyncio.sleep(0)


@pytest.mark.parametrize("height", [3, 4, 12])
@pytest.mark.parametrize("keys", [("pageup",), ("down", "pageup"), ("a", "pagedown")])
async def test_palette_page_keys_on_a_short_terminal(height: int, keys: tuple[str, ...]) -> None:
    """On a terminal a few rows tall the command list has no room to lay out its options, and page up/down
    raised KeyError in Textual's OptionList._move_page, which ended the app (monkey seeds 2 and 3)."""
    app = scene_app()
    async with app.run_test(size=(181, height)) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+p", *keys)
        await pilot.pause(0.1)
        assert app.is_running and app._exception is None
        await pilot.resize_terminal(100, 30)
        await pilot.press("pagedown", "pageup")  # with room again, the keys still move the highlight
        assert app.is_running and app._exception is None
        await pilot.press("escape")


@pytest.mark.parametrize("query", ["Q", "command log", "help"])
async def test_palette_enter_twice(query: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two quick enters: the first one picks the only match and closes the palette, the second one reached
    the closed palette, which popped the screen below it (ScreenStackError, the app ended; monkey seed 3)."""
    monkeypatch.setattr("textual.app.wait_for_idle", fast_typist)
    app = scene_app()
    app.action_quit = lambda: None  # type: ignore[method-assign, assignment, return-value]
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+p", *query, "end", "enter", "enter")
        await pilot.pause(0.2)
        assert app.is_running and app._exception is None


async def test_a_confirmation_answered_twice_in_a_row_keeps_the_app_alive() -> None:
    """`escape n` reached the confirmation twice before it closed: Textual's second dismiss raised
    InvalidStateError and ended the app (monkey seed 2940412569)."""
    from tui.screens.confirm import ConfirmScreen

    answers: list[bool | None] = []
    app = scene_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        app.push_screen(ConfirmScreen("Remove?", ["x"]), answers.append)
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, ConfirmScreen)
        screen.action_answer(False)
        screen.action_answer(False)  # the queued second key
        screen.action_answer(True)
        await settle(pilot)
        assert answers == [False]
        assert not isinstance(app.screen, ConfirmScreen)
        assert app.is_running
