"""Pilot tests of the app's behaviour over the FakeEngine (deterministic, no root needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.widgets import Input, Tree

from engine.errors import ImageNotFoundError
from tests.fake_engine import FakeEngine, digest
from tests.tui_scenes import SIZE, scene_app, settle
from tui.app import DockyardApp, make_app
from tui.commands import palette_entries
from tui.screens.confirm import ConfirmScreen
from tui.screens.form import FormScreen
from tui.screens.help import HelpScreen
from tui.screens.layers import LayersScreen
from tui.screens.text import TextScreen
from tui.widgets.logview import LogView
from tui.widgets.table import VirtualTable


def capture_notes(app: DockyardApp) -> list[str]:
    notes: list[str] = []
    original = app.notify

    def notify(message: str, **kwargs: Any) -> None:
        notes.append(message)
        original(message, **kwargs)

    app.notify = notify  # type: ignore[method-assign]
    return notes


def table(app: DockyardApp, table_id: str) -> VirtualTable:
    return app.query_one(f"#{table_id}", VirtualTable)


async def test_number_keys_switch_views() -> None:
    app = scene_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        for key, view in zip("234561", ("build", "registry", "containers", "ports", "watch", "images"), strict=True):
            await pilot.press(key)
            assert app.query_one("TabbedContent").active == view  # type: ignore[attr-defined]


async def test_filter_narrows_and_escape_restores() -> None:
    app = scene_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        images = table(app, "images-table")
        assert images.row_count == 4
        await pilot.press("slash", *"hello")
        assert images.row_count == 2
        await pilot.press("escape")
        assert images.row_count == 4
        assert app.focused is images


async def test_remove_marked_images_after_confirmation() -> None:
    engine = FakeEngine()
    app = make_app(engine, registries=["localhost:5000"], poll_interval=3600)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("space", "space")  # marks busybox:latest and hello:dev
        await pilot.press("d")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        assert "busybox:latest" in app.screen.details and "hello:dev" in app.screen.details
        await pilot.press("y")
        await settle(pilot)
        names = {t for image in engine.images.images for t in image.repo_tags}
        assert "busybox:latest" not in names and "hello:dev" not in names
        assert "dockyard rmi busybox:latest" in app.commands


async def test_remove_cancelled_keeps_images() -> None:
    engine = FakeEngine()
    app = make_app(engine, poll_interval=3600)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("d")
        await settle(pilot)
        await pilot.press("n")
        await settle(pilot)
        assert len(engine.images.images) == 3
        assert not app.commands


async def test_read_only_disables_mutations() -> None:
    engine = FakeEngine()
    app = make_app(engine, read_only=True, poll_interval=3600)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("d")
        await settle(pilot)
        assert not isinstance(app.screen, ConfirmScreen)
        assert len(engine.images.images) == 3
        view = app.view("images")
        assert view.check_action("remove", ()) is None and view.check_action("inspect", ()) is True


async def test_keymap_remaps_a_binding_by_id() -> None:
    app = make_app(FakeEngine(), keymap={"images.remove": "x"}, poll_interval=3600)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("x")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)


async def test_help_lists_every_binding_id() -> None:
    app = scene_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        await settle(pilot)
        assert isinstance(app.screen, HelpScreen)
        listed = {row.split(":", 1)[1] for row in app.screen.query_one(VirtualTable).row_keys()}
        every = {binding_id for *_, binding_id, _key in app.all_bindings()}
        assert every <= listed
        assert {"images.remove", "registry.pull", "containers.shell", "ports.add", "watch.start",
                "view.filter", "app.quit", "table.mark"} <= listed


async def test_palette_offers_every_view_action_and_runs_it() -> None:
    app = scene_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        titles = {title for title, *_ in palette_entries(app)}
        assert {"Images: Remove", "Registry: Pull", "Containers: Stop", "Build: Build", "App: Help"} <= titles
        await app.run_view_action("containers", "merged")
        await settle(pilot)
        assert app.query_one("TabbedContent").active == "containers"  # type: ignore[attr-defined]
        assert app.view("containers").merged  # type: ignore[attr-defined]


async def test_engine_error_becomes_a_one_line_notification() -> None:
    engine = FakeEngine()

    async def broken(name: str) -> dict[str, Any]:
        raise ImageNotFoundError(f"no such image: {name}\nsecond line")

    engine.images.inspect = broken  # type: ignore[method-assign]
    app = make_app(engine, poll_interval=3600)
    notes = capture_notes(app)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("i")
        await settle(pilot)
        assert app.is_running
        assert "no such image: busybox:latest second line" in notes, notes


async def test_authentication_error_prompts_login() -> None:
    engine = FakeEngine()
    engine.registry.needs_login = True
    app = make_app(engine, registries=["localhost:5000"], poll_interval=3600)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)  # the registry view loads the active registry at start: 401
        assert isinstance(app.screen, FormScreen)
        app.screen.query_one("#field-username", Input).value = "alice"
        app.screen.query_one("#field-password", Input).value = "secret"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert engine.registry.logins == [("localhost:5000", "alice")]
        assert any(c.startswith("dockyard login localhost:5000 -u alice") for c in app.commands)
        assert table(app, "repo-list").total_count == 5


async def test_registry_pages_10000_repositories_and_filters_instantly() -> None:
    app = make_app(FakeEngine(repositories=10_000), registries=["localhost:5000"], poll_interval=3600)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await settle(pilot)
        repos = table(app, "repo-list")
        assert repos.total_count == 10_005
        await pilot.press("slash", *"repo-0999")
        assert repos.row_count == 10  # bulk/repo-09990 .. bulk/repo-09999
        await pilot.press("escape")
        assert repos.row_count == 10_005


async def test_pull_a_tag_records_the_cli_command() -> None:
    engine = FakeEngine()
    app = make_app(engine, registries=["localhost:5000"], poll_interval=3600)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await settle(pilot)
        table(app, "tag-list").focus()
        await pilot.press("p")
        await settle(pilot)
        assert "dockyard pull localhost:5000/hello:latest" in app.commands


async def test_delete_tag_confirms_with_sibling_tags() -> None:
    engine = FakeEngine()
    app = make_app(engine, registries=["localhost:5000"], poll_interval=3600)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await settle(pilot)
        table(app, "tag-list").focus()
        await pilot.press("d")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        assert any("hello:1.1" in line and "shares the digest" in line for line in app.screen.details)
        await pilot.press("y")
        await settle(pilot)
        assert engine.registry.deleted == ["localhost:5000/hello:latest"]


async def test_build_streams_steps_and_jumps_to_the_failure() -> None:
    engine = FakeEngine(fail_build=True)
    app = make_app(engine, poll_interval=3600)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await settle(pilot)
        app.query_one("#build-tag", Input).value = "hello:dev"
        app.query_one("#build-args", Input).value = "GREETING=hi VERSION=2"
        await pilot.press("b")
        await settle(pilot)
        assert engine.builds.requests[0].build_args == {"GREETING": "hi", "VERSION": "2"}
        assert "dockyard build -t hello:dev --build-arg GREETING=hi --build-arg VERSION=2 ." in app.commands
        steps = table(app, "build-steps")
        assert steps.current_key == "4" and app.focused is steps
        assert app.query_one("#build-failure").display


async def test_push_from_images_uses_the_active_registry() -> None:
    engine = FakeEngine()
    app = make_app(engine, registries=["localhost:5000"], poll_interval=3600)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("down", "p")  # hello:dev
        await settle(pilot)
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert engine.registry.pushed == [("hello:dev", "localhost:5000/hello:dev")]
        assert "dockyard push hello:dev localhost:5000/hello:dev" in app.commands


async def test_run_from_images_with_a_port_shows_in_containers_and_ports() -> None:
    engine = FakeEngine()
    app = make_app(engine, poll_interval=3600)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("r")
        await settle(pilot)
        app.screen.query_one("#field-name", Input).value = "demo"
        app.screen.query_one("#field-ports", Input).value = "18099:8080"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert "dockyard run -d --name demo -p 18099:8080 busybox:latest" in app.commands
        containers = table(app, "containers-table")
        assert any(row.startswith(engine.containers.items[-1].id) for row in containers.row_keys())
        assert any("/0.0.0.0:18099/tcp" in key for key in table(app, "ports-table").row_keys())


async def test_stop_and_remove_containers() -> None:
    engine = FakeEngine()
    app = make_app(engine, poll_interval=3600)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        await settle(pilot)
        await pilot.press("s")
        await settle(pilot)
        assert ("exited", "web") in engine.containers.calls
        await pilot.press("d")
        await settle(pilot)
        await pilot.press("y")
        await settle(pilot)
        assert ("remove", "web") in engine.containers.calls
        assert app.commands[-2:] == ["dockyard stop web", "dockyard rm -f web"]


async def test_log_pane_search_timestamps_wrap_and_merged() -> None:
    app = scene_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        await settle(pilot)
        log = app.query_one("#container-log", LogView)
        assert len(log.entries) == 12
        await pilot.press("o", "slash", *"slow")
        assert log.search == "slow" and not log.follow
        await pilot.press("escape", "t", "w")
        assert log.search == "" and log.timestamps and log.wrap
        await pilot.press("m")
        await settle(pilot)
        assert {e.source for e in log.entries} == {"web", "api", "migrate"}


async def test_add_port_recreates_the_container() -> None:
    engine = FakeEngine()
    app = make_app(engine, poll_interval=3600)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        await settle(pilot)
        await pilot.press("a")
        await settle(pilot)
        app.screen.query_one("#field-spec", Input).value = "18090:8080"
        await pilot.press("ctrl+s")
        await settle(pilot)
        web = next(c for c in engine.containers.items if c.name == "web")
        assert [p.host_port for p in web.ports] == [18080, 18090]
        assert ("recreate", "web") in engine.containers.calls  # the engine's recreate keeps every option
        assert ("remove", "web") not in engine.containers.calls
        assert any(c.startswith("# recreate web: dockyard rm -f web") and c.endswith("-p 18090:8080 "
                                                                                     "localhost:5000/hello:latest")
                   for c in app.commands)


async def test_layer_browser_exports_a_file(tmp_path: Path) -> None:
    app = scene_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("f")
        await settle(pilot)
        assert isinstance(app.screen, LayersScreen)
        tree: Tree[Any] = app.screen.query_one(Tree)
        passwd = next(n for n in _walk(tree.root) if n.data is not None and n.data.path == "/etc/passwd")
        tree.move_cursor(passwd)
        await pilot.press("x")
        await settle(pilot)
        dest = tmp_path / "passwd"
        app.screen.query_one("#field-dest", Input).value = str(dest)
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert dest.read_text() == "/etc/passwd from layer 0 of busybox:latest\n"
        await pilot.press("escape")
        assert not isinstance(app.screen, LayersScreen)


def _walk(node: Any) -> Any:
    yield node
    for child in node.children:
        yield from _walk(child)


async def test_watch_view_follows_the_loop_and_stops_it() -> None:
    engine = FakeEngine()
    app = make_app(engine, poll_interval=3600)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("6", "w")
        await settle(pilot)
        await pilot.press("ctrl+s")
        await settle(pilot)
        view = app.view("watch")
        assert [h.result for h in view.history] == ["ready", "failed"]  # type: ignore[attr-defined]
        assert view.last_good == digest("hello-config")  # type: ignore[attr-defined]
        assert engine.loops[0].options.build.tags == (f"{Path.cwd().name}-dev:latest",)


async def test_shell_without_a_terminal_is_a_notification() -> None:
    app = scene_app()
    notes = capture_notes(app)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        await settle(pilot)
        await pilot.press("e")
        await settle(pilot)
        assert app.is_running
        assert "dockyard exec -it web sh" in app.commands
        assert notes


async def test_command_log_screen_lists_commands() -> None:
    app = scene_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("i")
        await settle(pilot)
        await pilot.press("escape", "L")
        await settle(pilot)
        assert isinstance(app.screen, TextScreen)
        assert "dockyard image inspect busybox:latest" in app.screen.text
