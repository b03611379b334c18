"""Units of the TUI: the virtual table, the log view, the bridge, progress tallies, settings, layer trees."""

from __future__ import annotations

import asyncio
from pathlib import Path

from textual.app import App, ComposeResult

from engine.archive.changes import Change, LayerChanges
from engine.events import (
    BuildFinished,
    ContainerStateChanged,
    LayerProgress,
    LogLine,
    StepFinished,
    StepStarted,
    WatchStatus,
)
from tui import messages as m
from tui import settings
from tui.bridge import to_message
from tui.layerfiles import tree
from tui.views.build import build_command, parse_build_args
from tui.views.ports import answers
from tui.widgets.logview import LogEntry, LogView
from tui.widgets.progress import Tally
from tui.widgets.table import Column, Row, VirtualTable


class TableApp(App[None]):
    def compose(self) -> ComposeResult:
        yield VirtualTable([Column("name", "NAME", None), Column("n", "N", 6, "right")], id="t")
        yield LogView(id="log")


def rows(count: int) -> list[Row]:
    return [Row.make(f"k{i}", [f"repo-{i:05d}", str(i)]) for i in range(count)]


async def test_virtual_table_filters_keeps_cursor_and_marks() -> None:
    app = TableApp()
    async with app.run_test(size=(60, 20)) as pilot:
        table = app.query_one(VirtualTable)
        table.set_rows(rows(10_000))
        table.focus()
        await pilot.press("down", "down", "space")
        assert table.marked == {"k2"} and table.current_key == "k3"
        table.filter("repo-0000")
        assert table.row_count == 10 and table.current_key == "k3"
        assert table.selection() == ["k2"]
        table.filter("")
        assert table.row_count == 10_000
        await pilot.press("end")
        assert table.current_key == "k9999"
        table.append_rows(rows(10_002)[10_000:])
        assert table.total_count == 10_002 and table.current_key == "k9999"


async def test_virtual_table_renders_only_the_visible_rows() -> None:
    app = TableApp()
    async with app.run_test(size=(60, 20)) as pilot:
        table = app.query_one(VirtualTable)
        table.set_rows(rows(10_000))
        await pilot.pause()
        header = table.render_line(0).text
        assert "NAME" in header and "N" in header
        table.move_to("k5000")
        await pilot.pause()
        visible = [table.render_line(y).text for y in range(1, table.size.height)]
        assert any("repo-05000" in line for line in visible)


async def test_log_view_follow_wrap_search_and_limit() -> None:
    app = TableApp()
    async with app.run_test(size=(40, 20)) as pilot:
        log = app.query_one(LogView)
        log.max_lines = 100
        log.extend(LogEntry(f"line {i} " + "x" * 50, time=f"2025-01-01T00:00:{i % 60:02d}Z") for i in range(150))
        await pilot.pause()
        assert len(log.entries) == 100 and log.entries[0].text.startswith("line 50 ")
        assert log.follow and log.scroll_offset.y == log.max_scroll_y
        log.set_options(wrap=True)
        await pilot.pause()
        assert log.virtual_size.height >= 200  # each 58-char line takes two rows at width 39
        assert log.set_search("line 120 ") == 1
        assert not log.follow and log._current_match == 70
        log.set_options(timestamps=True, wrap=False)
        await pilot.pause()
        assert any("2025-01-01T00:00:00Z line 120" in text for text in log.visible_text())


def test_bridge_maps_each_event_family_to_one_message_class() -> None:
    assert isinstance(to_message("pull x", LayerProgress("pull", "sha256:a", 1, 2, "downloading")), m.TransferUpdate)
    assert isinstance(to_message("build", StepStarted(1, 2, "0", "FROM x")), m.BuildUpdate)
    assert isinstance(to_message("events", ContainerStateChanged("c", "n", "running")), m.ContainerUpdate)
    assert isinstance(to_message("c", LogLine("c", "stdout", "hi", "t")), m.LogUpdate)
    assert isinstance(to_message("w", WatchStatus("ready")), m.WatchUpdate)


def test_transfer_progress_coalesces_per_blob() -> None:
    older = to_message("pull x", LayerProgress("pull", "sha256:a", 1, 10, "downloading"))
    newer = to_message("pull x", LayerProgress("pull", "sha256:a", 5, 10, "downloading"))
    other = to_message("pull x", LayerProgress("pull", "sha256:b", 5, 10, "downloading"))
    assert newer.can_replace(older) and not other.can_replace(older)


def test_tally_counts_bytes_then_steps() -> None:
    tally = Tally()
    tally.feed(LayerProgress("pull", "sha256:a", 5, 10, "downloading"))
    tally.feed(LayerProgress("pull", "sha256:b", 0, 30, "exists"))
    assert tally.progress() == (35.0, 40.0)
    build = Tally()
    build.feed(StepStarted(1, 4, "0", "FROM x"))
    build.feed(StepFinished(1, True, 0.0))
    assert build.progress() == (1.0, 4.0)
    build.feed(BuildFinished("sha256:i", "sha256:m", (), 1.0))
    assert build.progress() == (1.0, 1.0)


def test_settings_save_registry_keeps_other_tables(tmp_path: Path) -> None:
    path = tmp_path / "dockyard" / "config.toml"
    path.parent.mkdir()
    path.write_text('[engine]\nruntime = "crun"\n\n[keymap]\n"images.remove" = "x"\ncontainers.kill = "ctrl+k"\n')
    assert settings.save_registry(path, "registry.example.com:5000") == ["registry.example.com:5000"]
    assert settings.save_registry(path, "registry.example.com:5000") == ["registry.example.com:5000"]
    assert settings.saved_registries(path) == ["registry.example.com:5000"]
    assert settings.read(path)["engine"] == {"runtime": "crun"}
    assert settings.keymap(path) == {"images.remove": "x", "containers.kill": "ctrl+k"}


def test_layer_tree_nests_paths_and_sums_sizes() -> None:
    layer = LayerChanges(0, (Change("etc", "added", "dir", 0, 0o755), Change("etc/passwd", "added", "file", 100, 0),
                             Change("etc/group", "modified", "file", 20, 0), Change("tmp/x", "deleted", "", 0, 0)),
                         120, 0)
    root = tree(layer)
    assert set(root.children) == {"etc", "tmp"}
    assert root.children["etc"].total == 120 and root.children["etc"].children["group"].kind == "modified"
    assert root.children["tmp"].children["x"].path == "/tmp/x"


def test_build_form_helpers() -> None:
    assert parse_build_args("A=1 'B=two words' C") == {"A": "1", "B": "two words", "C": ""}
    assert build_command("ctx", "Dockerfile.dev", "app:1", {"A": "1"}) == \
        "dockyard build -t app:1 -f Dockerfile.dev --build-arg A=1 ctx"


async def test_port_probe_sees_a_listener() -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        assert await answers("0.0.0.0", port)
    finally:
        server.close()
        await server.wait_closed()
    assert not await answers("127.0.0.1", port)
