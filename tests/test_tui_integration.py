"""The app over the real engine: build, run with a port, push, browse, pull, stop and remove.

Drives the journeys of issue 6 with Pilot against real runc, the real bridge and port forwarder and a
real CNCF registry (tests/registryfixtures.py), in a temporary DOCKYARD_ROOT (tests/conftest.py).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from engine.api import Engine
from engine.config import EngineConfig
from engine.store.busybox import make_busybox_rootfs_tar
from tests.registryfixtures import free_port
from tui.app import DockyardApp, make_app
from tui.bootstrap import EXAMPLE
from tui.widgets.table import VirtualTable

if TYPE_CHECKING:
    from tests.registryfixtures import RunningRegistry

pytest_plugins = ["tests.registryfixtures"]

pytestmark = [
    pytest.mark.root,
    pytest.mark.registry,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root (namespaces, mounts, runc)"),
    pytest.mark.skipif(not Path("/bin/busybox").exists(), reason="busybox-static (/bin/busybox) is not installed"),
    pytest.mark.skipif(shutil.which("docker-registry") is None, reason="docker-registry is not installed"),
    pytest.mark.timeout(180),
]


async def until(pilot: Pilot[None], condition: Callable[[], object], what: str, timeout: float = 60) -> None:
    for _ in range(int(timeout / 0.1)):
        if condition():
            return
        await pilot.pause(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def table(app: DockyardApp, table_id: str) -> VirtualTable:
    return app.query_one(f"#{table_id}", VirtualTable)


async def submit_form(pilot: Pilot[None], **fields: str) -> None:
    await pilot.pause(0.2)
    for name, value in fields.items():
        pilot.app.screen.query_one(f"#field-{name}", Input).value = value
    await pilot.press("ctrl+s")


async def test_build_run_push_browse_pull_stop_remove(open_registry: RunningRegistry, tmp_path: Path) -> None:
    engine = Engine(EngineConfig.from_env())
    await engine.images.import_rootfs(make_busybox_rootfs_tar(tmp_path / "busybox.tar"), "busybox:latest")
    app = make_app(engine, registries=[open_registry.host], poll_interval=3600)
    host_port = free_port()
    name = f"tui-e2e-{host_port}"
    remote = f"{open_registry.host}/tui-e2e/hello:1"
    try:
        async with app.run_test(size=(120, 36)) as pilot:
            # build: the steps appear with cache and size beside their Dockerfile lines
            await pilot.press("2")
            await pilot.pause(0.2)
            app.query_one("#build-context", Input).value = str(EXAMPLE)
            app.query_one("#build-tag", Input).value = "hello:e2e"
            table(app, "build-steps").focus()
            await pilot.press("b")
            build = app.view("build")
            await until(pilot, lambda: "built hello:e2e" in str(app.query_one("#build-status").render()),
                        "the build to finish", 90)
            steps = table(app, "build-steps")
            assert steps.row_count == 5
            cache_column = [row.cells[2] for key in steps.row_keys() if (row := steps.get_row(key))]
            assert cache_column and set(cache_column) <= {"HIT", "miss"}
            assert not build.running  # type: ignore[attr-defined]

            # run it with a port mapping from Images; it shows in Containers and Ports
            await pilot.press("1")
            images = table(app, "images-table")
            await until(pilot, lambda: "hello:e2e" in images.row_keys(), "hello:e2e in Images")
            images.move_to("hello:e2e")
            await pilot.press("r")
            await submit_form(pilot, name=name, ports=f"{host_port}:8080")
            await until(pilot, lambda: any(c.name == name and c.state == "running"
                                           for c in app.view("containers").containers.values()),  # type: ignore[attr-defined]
                        "the container to run")
            ports = table(app, "ports-table")
            await until(pilot, lambda: any(f":{host_port}/tcp" in k for k in ports.row_keys()), "the port row")
            await pilot.press("5", "c")
            await until(pilot, lambda: any(r.cells[-1] == "yes" for r in (ports.current_row,) if r), "port answers",
                        30)

            # push to the test registry, then find it in Registry
            await pilot.press("1")
            images.move_to("hello:e2e")
            images.focus()
            await pilot.press("p")
            await submit_form(pilot, reference=remote)
            await until(pilot, lambda: f"dockyard push hello:e2e {remote}" in app.commands, "the push command")
            await until(pilot, lambda: not list(app.query("Operation")), "the push to end")
            await pilot.press("3")
            registries = table(app, "registry-list")
            await until(pilot, lambda: open_registry.host in registries.row_keys(), "the test registry listed")
            registries.move_to(open_registry.host)
            repos = table(app, "repo-list")
            await until(pilot, lambda: f"{open_registry.host}/tui-e2e/hello" in repos.row_keys(), "the repository")
            repos.move_to(f"{open_registry.host}/tui-e2e/hello")
            tags = table(app, "tag-list")
            await until(pilot, lambda: remote in tags.row_keys(), "the tag")

            # pull it from Registry; it shows in Images
            tags.move_to(remote)
            tags.focus()
            await pilot.press("p")
            await until(pilot, lambda: remote in images.row_keys(), "the pulled image in Images")
            assert f"dockyard pull {remote}" in app.commands

            # stop and remove the container
            await pilot.press("4")
            containers = table(app, "containers-table")
            container_id = next(i for i, c in app.view("containers").containers.items()  # type: ignore[attr-defined]
                                if c.name == name)
            containers.move_to(container_id)
            containers.focus()
            await pilot.press("s")
            await until(pilot, lambda: app.view("containers").containers[container_id].state == "exited",  # type: ignore[attr-defined]
                        "the container to stop")
            await pilot.press("d")
            await pilot.pause(0.2)
            await pilot.press("y")
            await until(pilot, lambda: container_id not in containers.row_keys(), "the container to go")
            assert app.commands[-2:] == [f"dockyard stop {name}", f"dockyard rm -f {name}"]
    finally:
        for container in await engine.containers.list(all=True):
            if container.name == name:
                await engine.containers.remove(container.id, force=True)
