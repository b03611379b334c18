"""``ContainerService.recreate``: the same container again (every stored option) with other port mappings.

Real runc, the real bridge and port forwarder, a busybox image imported into the test's private
DOCKYARD_ROOT (tests/conftest.py).  The containers serve HTTP with busybox httpd, so "the port works"
means an HTTP answer through the published host port.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from engine.api import Engine
from engine.config import EngineConfig
from engine.errors import ContainerNotFoundError, InvalidPortSpecError, PortInUseError
from engine.runtime.options import HealthOptions, RunOptions, VolumeSpec
from engine.runtime.recreate import TEMP_MARK, merged_publish, temp_name
from tests.registryfixtures import free_port

pytest_plugins = ["tests.runtime_fixtures"]
pytestmark = pytest.mark.timeout(90)
needs_runtime = pytest.mark.root  # the fixtures skip, with the reason, where containers cannot run


SERVE = ("sh", "-c", "mkdir -p /www && echo \"hello $GREETING\" > /www/index.html && exec httpd -f -p 80 -h /www")


# ---- pure parts ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("current", "publish", "add", "expected"), [
    (("8080:80",), None, ("8081:80",), ("8080:80", "8081:80")),
    (("8080:80",), None, ("8080:80",), ("8080:80",)),
    (("8080:80",), (), ("9000:90",), ("9000:90",)),
    (("8080:80",), ("7000:70", " "), (), ("7000:70",)),
    ((), None, (" 1:2 ",), ("1:2",)),
])
def test_merged_publish(current: tuple[str, ...], publish: tuple[str, ...] | None, add: tuple[str, ...],
                        expected: tuple[str, ...]) -> None:
    assert merged_publish(current, publish, add) == expected


def test_temp_name_is_a_valid_distinct_name() -> None:
    from engine.runtime.options import check_name

    long = "a" * 128
    for name in ("web", long):
        parked = temp_name(name)
        assert check_name(parked) == parked and TEMP_MARK in parked and parked != temp_name(name)


# ---- real containers ------------------------------------------------------------------------------------

@pytest.fixture
async def engine(busybox_image: str) -> AsyncIterator[Engine]:
    engine = Engine(EngineConfig.from_env())
    yield engine
    for container in await engine.containers.list(all=True):
        with contextlib.suppress(Exception):
            await engine.containers.remove(container.id, force=True)


async def fetch(port: int, tries: int = 50) -> str:
    def get() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
            return str(response.read().decode())

    for _ in range(tries):
        try:
            return await asyncio.to_thread(get)
        except OSError:
            await asyncio.sleep(0.1)
    raise AssertionError(f"nothing answers HTTP on port {port}")


async def run(engine: Engine, options: RunOptions) -> str:
    ids = [e.container_id async for e in engine.containers.run("busybox", options)  # type: ignore[attr-defined]
           if hasattr(e, "container_id")]
    return ids[0]


@needs_runtime
async def test_recreate_adds_a_mapping_and_keeps_every_option(engine: Engine, tmp_path: Path) -> None:
    first, second = free_port(), free_port()
    bind = tmp_path / "bind"
    bind.mkdir()
    (bind / "note").write_text("from the host\n")
    options = RunOptions(
        name="web", command=SERVE, env=("GREETING=world",), publish=(f"{first}:80",), detach=True,
        volumes=(VolumeSpec("/data", "recreate-data"), VolumeSpec("/host", str(bind), read_only=True)),
        labels={"team": "dock"}, memory=64 * 1024 * 1024, pids_limit=64, stop_timeout=1,
        health=HealthOptions(cmd="true", interval=1.0, retries=2), hostname="webhost",
    )
    old_id = await run(engine, options)
    assert await fetch(first) == "hello world\n"
    await engine.containers.exec("web", ["sh", "-c", "echo kept > /data/file"], capture=True)

    summary = await engine.containers.recreate("web", add_publish=(f"{second}:80",))

    assert summary.name == "web" and summary.id != old_id and summary.state == "running"
    assert {p.host_port for p in summary.ports} == {first, second}
    assert await fetch(first) == await fetch(second) == "hello world\n"
    with pytest.raises(ContainerNotFoundError):
        await engine.containers.get(old_id)
    assert [c.name for c in await engine.containers.list(all=True)] == ["web"]
    record = engine.containers.manager.load("web")[1]  # type: ignore[attr-defined]
    assert record.options == replace(options, publish=(f"{first}:80", f"{second}:80"))
    inspect = await engine.containers.inspect("web")
    assert inspect["Config"]["Labels"]["team"] == "dock" and inspect["Config"]["Hostname"] == "webhost"
    assert inspect["HostConfig"]["Memory"] == 64 * 1024 * 1024 and inspect["Config"]["Healthcheck"]
    assert {m["Destination"] for m in inspect["Mounts"]} >= {"/data", "/host"}
    _, out = await engine.containers.exec("web", ["cat", "/data/file", "/host/note"], capture=True)
    assert out.decode() == "kept\nfrom the host\n"


@needs_runtime
@pytest.mark.parametrize("remove", [False, True], ids=["plain", "rm"])
async def test_a_taken_port_rolls_back_to_the_old_container(engine: Engine, remove: bool) -> None:
    first = free_port()
    old_id = await run(engine, RunOptions(name="api", command=SERVE, env=("GREETING=old",), publish=(f"{first}:80",),
                                          detach=True, stop_timeout=1, remove=remove))
    assert await fetch(first) == "hello old\n"
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        with pytest.raises(PortInUseError) as caught:
            await engine.containers.recreate("api", add_publish=(f"{busy}:80",))
    message = str(caught.value)
    assert "\n" not in message and message.startswith("cannot recreate api:") and "old container is back" in message
    containers = await engine.containers.list(all=True)
    assert [(c.id, c.name, c.state) for c in containers] == [(old_id, "api", "running")]
    assert await fetch(first) == "hello old\n"
    record = engine.containers.manager.load("api")[1]  # type: ignore[attr-defined]
    assert record.options.remove is remove and record.options.publish == (f"{first}:80",)


@needs_runtime
async def test_a_bad_spec_changes_nothing(engine: Engine) -> None:
    first = free_port()
    old_id = await run(engine, RunOptions(name="db", command=SERVE, publish=(f"{first}:80",), detach=True,
                                          stop_timeout=1))
    before = await engine.containers.get("db")
    for bad in ("not-a-port", f"{first}:81"):  # garbage, and the same host port twice
        with pytest.raises(InvalidPortSpecError):
            await engine.containers.recreate("db", add_publish=(bad,))
    after = await engine.containers.get("db")
    assert (after.id, after.state, after.started_at) == (old_id, "running", before.started_at)
