"""The watch loop end to end with the real builder, real runc and the loop's own port forwarder.

Each test gets a private DOCKYARD_ROOT (tests/conftest.py) with an offline busybox image, a build
context serving a site with busybox httpd, and the loop running as a task; an HTTP client reads the
mapped port from a thread (as a browser would) while the test edits files.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from engine import events as ev
from engine.api import Engine
from engine.build.builder import BuildOptions
from engine.config import EngineConfig
from engine.oci.reference import Reference
from engine.runtime.options import RunOptions
from engine.store.importer import import_rootfs
from engine.store.layout import ImageStore
from engine.watch.loop import WatchLoop, WatchOptions
from engine.watch.state import WatchCycle, WatchFailed
from tests.images import have_busybox, make_busybox_tar

SITE_DOCKERFILE = """\
FROM busybox
RUN echo built > /built
COPY site /www
CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]
"""


def _skip_without_runtime() -> None:
    if os.geteuid() != 0:
        pytest.skip("the watch loop runs containers: needs root")
    if shutil.which("runc") is None:
        pytest.skip("runc is not installed")
    if not have_busybox():
        pytest.skip("busybox-static is not installed")


@pytest.fixture(scope="module")
def busybox_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _skip_without_runtime()
    return make_busybox_tar(tmp_path_factory.mktemp("busybox") / "busybox.tar")


@pytest.fixture(scope="module", autouse=True)
def _remove_test_bridge() -> Iterator[None]:
    yield
    bridge = os.environ.get("DOCKYARD_BRIDGE") or f"dyt{os.getpid() % 200}"
    brif = Path(f"/sys/class/net/{bridge}/brif")
    if bridge.startswith("dyt") and brif.is_dir() and not any(brif.iterdir()):
        subprocess.run(["ip", "link", "delete", "dev", bridge], check=False, capture_output=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Watched:
    """A running loop, the events it produced so far, and its context."""

    loop: WatchLoop
    context: Path
    port: int
    root: Path
    events: list[ev.Event] = field(default_factory=list)

    def statuses(self, phase: str | None = None) -> list[ev.WatchStatus]:
        return [e for e in self.events if isinstance(e, ev.WatchStatus) and (phase is None or e.phase == phase)]

    def cycles(self) -> list[WatchCycle]:
        return [e for e in self.events if isinstance(e, WatchCycle)]

    async def until(self, predicate: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                phases = [f"{s.phase}:{s.detail[:60]}" for s in self.statuses()]
                raise AssertionError(f"timed out waiting for {what or predicate}; statuses: {phases}")
            await asyncio.sleep(0.02)

    async def cycle(self, count: int, timeout: float = 20.0) -> WatchCycle:
        await self.until(lambda: len(self.cycles()) >= count, timeout, f"cycle {count}")
        return self.cycles()[count - 1]

    def get(self, path: str = "/index.html", timeout: float = 2.0) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=timeout) as resp:
            return str(resp.read().decode())

    async def aget(self, path: str = "/index.html") -> str:
        return await asyncio.to_thread(self.get, path)

    async def until_served(self, text: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                last = await self.aget()
                if last == text:
                    return
            await asyncio.sleep(0.02)
        raise AssertionError(f"port {self.port} still serves {last!r}, not {text!r}")


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _prepare(tmp_path: Path, busybox_tar: Path, files: dict[str, str], name: str = "ctx"
             ) -> tuple[EngineConfig, Path, int]:
    """The test's store with busybox imported, a context holding ``files``, and a free host port."""
    config = EngineConfig.from_env()
    import_rootfs(ImageStore(config.store_dir), busybox_tar, Reference.parse("busybox"), changes=['CMD ["sh"]'])
    context = tmp_path / name
    for rel, text in files.items():
        _write(context / rel, text)
    return config, context, _free_port()


def _scenario(tmp_path: Path, busybox_tar: Path, files: dict[str, str],
              body: Callable[[Watched], Awaitable[None]], *, check_cleanup: bool = True, **options: Any) -> Watched:
    """Run ``body`` against a live loop over a context holding ``files``; then stop it and check cleanup."""
    config, context, port = _prepare(tmp_path, busybox_tar, files)
    engine = Engine(config)
    run = RunOptions(publish=(f"127.0.0.1:{port}:8080",), stop_timeout=1)
    watch_options = WatchOptions(build=BuildOptions(context=context, tags=("site:dev",)), run=run, name="site",
                                 ready_timeout=10)
    loop = engine.watch(replace(watch_options, **options))
    watched = Watched(loop, context, port, config.root)

    async def main() -> None:
        async def consume() -> None:
            async for event in loop.run():
                watched.events.append(event)

        task = asyncio.create_task(consume())
        try:
            await asyncio.wait_for(body(watched), 45)
        finally:
            loop.stop()
            await asyncio.wait_for(task, 15)

    asyncio.run(main())
    if check_cleanup:
        _assert_cleaned_up(engine, config)
    return watched


def _assert_cleaned_up(engine: Engine, config: EngineConfig) -> None:
    leftover = asyncio.run(engine.containers.list(all=True))
    assert leftover == [], [c.name for c in leftover]
    mounts = [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if str(config.root) in line]
    assert mounts == []
    from engine.net.network import BridgeNetwork

    assert BridgeNetwork.from_config(config).allocations() == {}
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    ids = {path.name[:12] for path in config.containers_dir.glob("*")} if config.containers_dir.exists() else set()
    assert not any(i in netns for i in ids)


SITE = {"Dockerfile": SITE_DOCKERFILE, "site/index.html": "v1\n", ".dockerignore": "ignored/\n"}


def test_serves_through_the_mapped_port_and_rebuilds_on_edit(tmp_path: Path, busybox_tar: Path) -> None:
    async def body(w: Watched) -> None:
        first = await w.cycle(1)
        assert first.cycle.outcome == "swapped", first.cycle.error
        assert await w.aget() == "v1\n"
        (w.context / "ignored").mkdir()
        (w.context / "ignored/x").write_text("no rebuild for this")
        (w.context / ".index.html.swp").write_text("editor noise")
        await asyncio.sleep(0.5)
        assert len(w.cycles()) == 1, "ignored and editor temp files must not trigger a rebuild"
        (w.context / "site/index.html").write_text("v2\n")
        second = await w.cycle(2)
        assert second.cycle.outcome == "swapped", second.cycle.error
        assert second.cycle.trigger == ("site/index.html",)
        await w.until_served("v2\n")

    w = _scenario(tmp_path, busybox_tar, SITE, body)
    phases = [s.phase for s in w.statuses()]
    assert phases[0] == "watching" and phases[-1] == "stopped"
    for phase in ("changed", "building", "starting", "ready", "swapped"):
        assert phase in phases
    # the rebuild ran only the changed steps: FROM and RUN from the cache, COPY again
    builds = [i for i, e in enumerate(w.events) if isinstance(e, ev.BuildStarted)]
    second = [e for e in w.events[builds[1]:] if isinstance(e, ev.StepFinished)]
    assert [s.cached for s in second][:3] == [True, True, False]
    state = w.loop.current
    assert state.rebuilds == 2 and [c.outcome for c in state.history] == ["swapped", "swapped"]
    assert all(c.seconds > 0 and c.build_seconds is not None and c.ready_seconds is not None for c in state.history)
    assert state.history[0].image_id != state.history[1].image_id
    assert state.history[1].manifest_digest and state.history[1].manifest_digest.startswith("sha256:")
    assert state.container is None  # removed at stop (no --keep)
    assert w.cycles()[-1].state.good_image_id == state.history[1].image_id


def test_a_broken_dockerfile_keeps_the_old_content_served(tmp_path: Path, busybox_tar: Path) -> None:
    async def body(w: Watched) -> None:
        await w.cycle(1)
        _write(w.context / "site/index.html", "v2\n")
        _write(w.context / "Dockerfile", SITE_DOCKERFILE.replace("RUN echo built > /built",
                                                                  "RUN echo boom-1 && echo boom-2 && exit 7"))
        failed = await w.cycle(2)
        assert failed.cycle.outcome == "build failed"
        assert await w.aget() == "v1\n"
        assert failed.state.good_image_id == w.cycles()[0].cycle.image_id
        assert failed.state.container == "site-1" and failed.state.last_error
        _write(w.context / "Dockerfile", SITE_DOCKERFILE)  # fixed: the loop recovers
        recovered = await w.cycle(3)
        assert recovered.cycle.outcome == "swapped", recovered.cycle.error
        await w.until_served("v2\n")

    w = _scenario(tmp_path, busybox_tar, SITE, body)
    failure = [e for e in w.events if isinstance(e, WatchFailed)]
    assert len(failure) == 1
    assert failure[0].stage == "build" and failure[0].step == 2 and failure[0].exit_code == 7
    assert failure[0].last_lines[-2:] == ("boom-1", "boom-2")
    assert failure[0].container_id == "site-1" and "keeps serving" in failure[0].detail


def test_a_burst_of_saves_rebuilds_at_most_twice(tmp_path: Path, busybox_tar: Path) -> None:
    async def body(w: Watched) -> None:
        await w.cycle(1)
        for i in range(20):
            _write(w.context / "site/index.html", f"save {i}\n")
            _write(w.context / f"site/page{i % 4}.html", f"page {i}\n")
            await asyncio.sleep(0.01)
        await w.until_served("save 19\n")
        await asyncio.sleep(1.0)  # anything still queued would have started by now

    w = _scenario(tmp_path, busybox_tar, SITE, body)
    rebuilds = [c for c in w.loop.current.history if c.kind == "rebuild"][1:]
    assert 1 <= len(rebuilds) <= 2, [c.trigger for c in rebuilds]
    assert sum(isinstance(e, ev.BuildStarted) for e in w.events) == 1 + len(rebuilds)


def test_changes_during_a_build_queue_exactly_one_more(tmp_path: Path, busybox_tar: Path) -> None:
    slow = SITE_DOCKERFILE.replace("COPY site /www", "COPY site /www\nRUN sleep 2")

    async def body(w: Watched) -> None:
        await w.cycle(1)
        mark = len(w.events)  # before the change: the slow step's status may come before we look
        _write(w.context / "site/index.html", "v2\n")
        await w.until(lambda: bool(w.statuses("changed")), what="the change")
        await w.until(lambda: any(isinstance(e, ev.WatchStatus) and "RUN sleep 2" in e.detail
                                  for e in w.events[mark:]), what="the slow step")
        for i in range(5):  # all during the build
            _write(w.context / "site/index.html", f"v3-{i}\n")
            await asyncio.sleep(0.05)
        await w.cycle(3, timeout=25)
        await w.until_served("v3-4\n")
        await asyncio.sleep(0.6)

    w = _scenario(tmp_path, busybox_tar, {**SITE, "Dockerfile": slow}, body)
    assert len(w.loop.current.history) == 3
    starts = [i for i, e in enumerate(w.events) if isinstance(e, ev.BuildStarted)]
    finishes = [i for i, e in enumerate(w.events) if isinstance(e, ev.BuildFinished)]
    assert all(f < s for f, s in zip(finishes, starts[1:], strict=False)), "two builds overlapped"


def test_no_failed_request_while_swapping(tmp_path: Path, busybox_tar: Path) -> None:
    results: list[str] = []
    stop = threading.Event()

    def poll(port: int) -> None:
        while not stop.is_set():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=2) as resp:
                    results.append(resp.read().decode())
            except (OSError, urllib.error.URLError) as exc:
                results.append(f"error: {exc}")
            time.sleep(0.02)

    async def body(w: Watched) -> None:
        await w.cycle(1)
        thread = threading.Thread(target=poll, args=(w.port,), daemon=True)
        thread.start()
        try:
            for n in (2, 3):
                _write(w.context / "site/index.html", f"v{n}\n")
                cycle = await w.cycle(n)
                assert cycle.cycle.outcome == "swapped", cycle.cycle.error
                await asyncio.sleep(1.2)  # the retired container stops (1 s grace) while we keep polling
        finally:
            stop.set()
            await asyncio.to_thread(thread.join, 5)

    _scenario(tmp_path, busybox_tar, SITE, body)
    errors = [r for r in results if r.startswith("error")]
    assert errors == [], errors[:3]
    assert results[0] == "v1\n" and results[-1] == "v3\n" and "v2\n" in results and len(results) > 50


def test_sync_rules_copy_into_the_running_container(tmp_path: Path, busybox_tar: Path) -> None:
    toml = """[[watch]]
path = "site"
action = "sync"
target = "/www"
ignore = ["*.draft"]

[[watch]]
path = "hooks"
action = "sync+exec"
target = "/hooks"
exec = ["sh", "-c", "cp /hooks/extra.html /www/extra.html"]
"""

    async def body(w: Watched) -> None:
        first = await w.cycle(1)
        container = first.state.container
        _write(w.context / "site/index.html", "synced\n")
        _write(w.context / "site/new/page.html", "new page\n")
        synced = await w.cycle(2)
        assert synced.cycle.kind == "sync" and synced.cycle.outcome == "synced", synced.cycle.error
        assert await w.aget() == "synced\n"
        assert await w.aget("/new/page.html") == "new page\n"
        _write(w.context / "hooks/extra.html", "from exec\n")
        hooked = await w.cycle(3)
        assert hooked.cycle.outcome == "synced", hooked.cycle.error
        assert await w.aget("/extra.html") == "from exec\n"
        (w.context / "site/new/page.html").unlink()
        await w.cycle(4)
        with pytest.raises(urllib.error.HTTPError):
            await w.aget("/new/page.html")
        assert w.loop.current.container == container  # never rebuilt

    w = _scenario(tmp_path, busybox_tar, {**SITE, "dockyard.toml": toml}, body)
    assert sum(isinstance(e, ev.BuildStarted) for e in w.events) == 1
    assert [c.kind for c in w.loop.current.history] == ["rebuild", "sync", "sync", "sync"]


def test_a_container_that_never_gets_ready_keeps_the_old_one(tmp_path: Path, busybox_tar: Path) -> None:
    exits = SITE_DOCKERFILE.replace('CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]',
                                    'CMD ["sh", "-c", "echo starting up; echo no config >&2; exit 3"]')

    async def body(w: Watched) -> None:
        await w.cycle(1)
        _write(w.context / "Dockerfile", exits)
        failed = await w.cycle(2)
        assert failed.cycle.outcome == "not ready"
        assert await w.aget() == "v1\n"
        assert failed.state.container == "site-1" and failed.state.good_image_id == w.cycles()[0].cycle.image_id
        assert failed.state.image_id == failed.cycle.image_id != failed.state.good_image_id

    w = _scenario(tmp_path, busybox_tar, SITE, body)
    failure = next(e for e in w.events if isinstance(e, WatchFailed))
    assert failure.stage == "start" and failure.exit_code == 3
    assert "no config" in failure.last_lines and "starting up" in failure.last_lines


def test_keep_leaves_the_last_container_running(tmp_path: Path, busybox_tar: Path) -> None:
    async def body(w: Watched) -> None:
        await w.cycle(1)

    config = EngineConfig.from_env()
    w = _scenario(tmp_path, busybox_tar, SITE, body, check_cleanup=False, keep=True)
    assert "keeps running" in w.statuses("stopped")[0].detail
    engine = Engine(config)
    kept = asyncio.run(engine.containers.list())
    assert [c.name for c in kept] == ["site-1"]
    asyncio.run(engine.containers.remove("site-1", force=True))
    _assert_cleaned_up(engine, config)


def test_sync_restart_restarts_the_container_with_the_synced_files(tmp_path: Path, busybox_tar: Path) -> None:
    toml = '[[watch]]\npath = "conf"\naction = "sync+restart"\ntarget = "/www/conf"\n'
    dockerfile = SITE_DOCKERFILE.replace('CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]',
                                         'CMD ["sh", "-c", "cat /www/conf/greeting > /www/index.html; '
                                         'exec httpd -f -p 8080 -h /www"]')
    files = {**SITE, "Dockerfile": dockerfile, "dockyard.toml": toml, "site/conf/greeting": "hello\n",
             "conf/greeting": "hello\n"}

    async def body(w: Watched) -> None:
        await w.cycle(1)
        assert await w.aget() == "hello\n"
        _write(w.context / "conf/greeting", "restarted\n")
        cycle = await w.cycle(2)
        assert cycle.cycle.kind == "sync" and cycle.cycle.outcome == "synced", cycle.cycle.error
        await w.until_served("restarted\n")
        assert w.loop.current.container == "site-1"

    w = _scenario(tmp_path, busybox_tar, files, body)
    assert sum(isinstance(e, ev.BuildStarted) for e in w.events) == 1


def test_readiness_waits_for_the_healthcheck(tmp_path: Path, busybox_tar: Path) -> None:
    # httpd answers at once, but the app only reports healthy a second later: the swap waits for that
    slow = SITE_DOCKERFILE.replace(
        'CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]',
        'HEALTHCHECK --interval=0.2s --timeout=1s --start-period=5s CMD test -f /tmp/ready\n'
        'CMD ["sh", "-c", "httpd -p 8080 -h /www; sleep 1; touch /tmp/ready; exec sleep 1000"]')

    async def body(w: Watched) -> None:
        first = await w.cycle(1)
        assert first.cycle.outcome == "swapped", first.cycle.error
        assert first.cycle.ready_seconds is not None and first.cycle.ready_seconds >= 1.0
        assert await w.aget() == "v1\n"

    _scenario(tmp_path, busybox_tar, {**SITE, "Dockerfile": slow}, body, ready_timeout=8)


def test_a_container_that_never_listens_times_out(tmp_path: Path, busybox_tar: Path) -> None:
    silent = SITE_DOCKERFILE.replace('CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]', 'CMD ["sleep", "1000"]')

    async def body(w: Watched) -> None:
        await w.cycle(1)
        _write(w.context / "Dockerfile", silent)
        failed = await w.cycle(2)
        assert failed.cycle.outcome == "not ready" and "within 1.5s" in (failed.cycle.error or "")
        assert await w.aget() == "v1\n"

    _scenario(tmp_path, busybox_tar, SITE, body, ready_timeout=1.5)


def test_the_service_stream_cleans_up_when_the_consumer_stops(tmp_path: Path, busybox_tar: Path) -> None:
    """The TUI's entry point: ``engine.watch.watch(context, tag=..., ports=...)``; closing it ends the loop."""
    config, context, port = _prepare(tmp_path, busybox_tar, SITE)
    engine = Engine(config)

    async def main() -> list[ev.Event]:
        seen: list[ev.Event] = []
        stream = engine.watch.watch(context, tag="tui:dev", ports=[f"127.0.0.1:{port}:8080"])
        async with contextlib.aclosing(stream):
            async for event in stream:
                seen.append(event)
                if isinstance(event, WatchCycle):
                    assert engine.watch.active is not None
                    assert engine.watch.active.current.container == "ctx-1"
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=2) as resp:
                        assert resp.read() == b"v1\n"
                    break
        return seen

    seen = asyncio.run(main())
    assert any(isinstance(e, ev.BuildFinished) for e in seen)
    _assert_cleaned_up(engine, config)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_ctrl_c_stops_the_cli_loop_and_removes_the_container(tmp_path: Path, busybox_tar: Path) -> None:
    import signal
    import sys

    config, context, port = _prepare(tmp_path, busybox_tar, SITE, name="app")
    cli = [sys.executable, "-c", "import sys; from cli.main import main; sys.argv[0] = 'dockyard'; main()"]
    proc = subprocess.Popen([*cli, "watch", "-p", f"127.0.0.1:{port}:8080", str(context)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                            cwd=Path(__file__).resolve().parent.parent)
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), \
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=1) as resp:
                if resp.read() == b"v1\n":
                    break
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.stdout else ""
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "[swapped] - -> app-1" in out and "[stopped] removed app-1" in out, out
    _assert_cleaned_up(Engine(config), config)
