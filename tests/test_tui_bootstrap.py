"""First run: the dev registry (engine.devservices), busybox import, example build and push — idempotent."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from textual.pilot import Pilot

from engine.api import Engine
from engine.config import EngineConfig
from engine.devservices import answers, ensure_registry, stop_registry
from engine.store.busybox import make_busybox_rootfs_tar
from tests.registryfixtures import free_port
from tui.app import DockyardApp, make_app
from tui.bootstrap import first_run, pushed_reference

pytestmark = [
    pytest.mark.registry,
    pytest.mark.skipif(shutil.which("docker-registry") is None, reason="docker-registry is not installed"),
    pytest.mark.skipif(not Path("/bin/busybox").exists(), reason="busybox-static (/bin/busybox) is not installed"),
    pytest.mark.timeout(120),
]


def test_busybox_rootfs_tar_has_the_applets(tmp_path: Path) -> None:
    import tarfile

    with tarfile.open(make_busybox_rootfs_tar(tmp_path / "bb.tar")) as tar:
        names = set(tar.getnames())
    assert {"bin/busybox", "bin/sh", "etc/passwd", "etc/group", "tmp"} <= names


def test_dev_registry_starts_once_and_is_reused(tmp_path: Path) -> None:
    config = EngineConfig(root=tmp_path / "root")
    address = f"127.0.0.1:{free_port()}"
    first = ensure_registry(config, address)
    try:
        assert first.started and answers(address)
        again = ensure_registry(config, address)
        assert not again.started and again.pid == first.pid
    finally:
        assert stop_registry(config)
    assert not stop_registry(config)


async def bootstrap_done(app: DockyardApp) -> None:
    for worker in list(app.workers):
        if worker.name == "bootstrap":
            await worker.wait()


async def wait(pilot: Pilot[None], app: DockyardApp, line: str, timeout: float = 60) -> None:
    for _ in range(int(timeout / 0.1)):
        if any(c.startswith(line) for c in app.commands) and not list(app.query("Operation")):
            return
        await pilot.pause(0.1)
    raise AssertionError(f"no {line!r} in {app.commands}")


async def test_first_run_imports_builds_pushes_then_reuses(tmp_path: Path) -> None:
    config = EngineConfig.from_env()
    address = f"127.0.0.1:{free_port()}"
    try:
        app = make_app(Engine(config), poll_interval=3600, bootstrap=lambda a: first_run(a, address))
        async with app.run_test(size=(120, 36)) as pilot:
            await wait(pilot, app, "dockyard push hello:latest")
            await bootstrap_done(app)
        assert app.commands[0].startswith("# started the dev registry on")
        assert "dockyard import busybox.tar busybox:latest" in app.commands
        assert any(c.startswith("dockyard build -t hello:latest") for c in app.commands)
        engine = Engine(config)
        assert {"busybox:latest", "hello:latest"} <= {t for i in await engine.images.list() for t in i.repo_tags}
        details = await engine.registry.tag_details(pushed_reference(address))
        assert details.digest.startswith("sha256:")

        again = make_app(Engine(config), poll_interval=3600, bootstrap=lambda a: first_run(a, address))
        async with again.run_test(size=(120, 36)) as pilot:
            await bootstrap_done(again)
        assert again.commands == []  # everything was there: nothing started, imported, built or pushed
    finally:
        stop_registry(config)
