"""First run of `dockyard` / `make run`: something to look at in every view.

Idempotent, and in the background (a worker; the app is usable meanwhile):
1. start or reuse the dev registry on 127.0.0.1:5000 (engine.devservices);
2. import busybox:latest from the host's static busybox if the store lacks it;
3. build examples/hello as hello:latest if missing (its steps stream into the Build view);
4. push it to localhost:5000/hello:latest if the registry lacks it.
Each step is logged with its CLI equivalent.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from engine.errors import EngineError

if TYPE_CHECKING:
    from tui.app import DockyardApp

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "hello"
BASE = "busybox:latest"
IMAGE = "hello:latest"
DEV_REGISTRY = "127.0.0.1:5000"


async def first_run(app: DockyardApp, address: str = DEV_REGISTRY) -> None:
    from engine.devservices import ensure_registry

    engine = app.engine
    registry = await asyncio.to_thread(ensure_registry, engine.config, address)
    if registry.started:
        app.record_command(f"# started the dev registry on {registry.address} ({registry.directory})")
    if not await engine.images.exists(BASE):
        await import_busybox(app)
    if not await engine.images.exists(IMAGE):
        if not (EXAMPLE / "Dockerfile").exists():
            return
        await build_example(app)
    target = pushed_reference(address)
    if not await pushed(app, target):
        app.start_push(target, source=IMAGE)


def pushed_reference(address: str) -> str:
    """Where the example goes: localhost:PORT/hello:latest (loopback, so plain HTTP)."""
    return f"localhost:{address.rpartition(':')[2]}/hello:latest"


async def import_busybox(app: DockyardApp) -> None:
    from engine.store.busybox import make_busybox_rootfs_tar

    app.engine.config.tmp_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=app.engine.config.tmp_dir) as scratch:
        tarball = await asyncio.to_thread(make_busybox_rootfs_tar, Path(scratch) / "busybox.tar")
        await app.engine.images.import_rootfs(tarball, BASE, message="busybox from the host (dockyard first run)")
    app.record_command(f"dockyard import busybox.tar {BASE}")
    app.images_changed()


async def build_example(app: DockyardApp) -> None:
    from engine.build.builder import BuildOptions
    from tui.bridge import pump_operation
    from tui.views.build import BuildView, build_command

    options = BuildOptions(context=EXAMPLE, dockerfile=EXAMPLE / "Dockerfile", tags=(IMAGE,))
    app.record_command(build_command(str(EXAMPLE), "Dockerfile", IMAGE, {}))
    views = list(app.views("build"))
    target = views[0] if views else app
    if isinstance(target, BuildView):
        target.reset()
    await pump_operation(f"build {IMAGE}", app.engine.builds.build(options), target)


async def pushed(app: DockyardApp, reference: str) -> bool:
    try:
        await app.engine.registry.tag_details(reference)
    except EngineError:  # MANIFEST_UNKNOWN, NAME_UNKNOWN, ...
        return False
    return True
