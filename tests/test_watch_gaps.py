"""Two watch-loop gaps, closed: (a) before the first container is ready, or while the first build fails, a
client of the mapped port is refused at once (the forwarder's no-target mode), not left hanging in the
listen backlog; (b) a swap that retires a container also removes the image that rebuild left untagged
(unless a container or the last good state uses it) and gcs its blobs, keeping the build cache's layers.
Real builder, runc, bridge network and forwarder (the helpers of tests/test_watch_loop.py)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from pathlib import Path

from engine import events as ev
from engine.net.forward import Forwarder, bind_all
from engine.net.ports import parse_publish
from engine.oci.digest import Digest
from engine.store.layout import ImageStore
from tests.test_watch_loop import SITE, SITE_DOCKERFILE, Watched, _remove_test_bridge, _scenario, _write, busybox_tar

__all__ = ["_remove_test_bridge", "busybox_tar"]  # fixtures, used by name

FAST = 1.0  # a refused connection answers within this (a hang would wait for the client's own timeout)


def _attempt(port: int, timeout: float = 5.0) -> tuple[str, float]:
    """Connect and read: 'refused' (RST or ECONNREFUSED), 'closed' (EOF), 'data', or 'hang'."""
    started = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
            data = sock.recv(100)
            outcome = "data" if data else "closed"
    except (ConnectionResetError, ConnectionRefusedError, BrokenPipeError):
        outcome = "refused"
    except TimeoutError:
        outcome = "hang"
    return outcome, time.monotonic() - started


# ---- (a) the forwarder's no-target mode ------------------------------------------------------------------


def _echo_server() -> tuple[socket.socket, int]:
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"echo:" + conn.recv(100))

    threading.Thread(target=serve, daemon=True).start()
    return server, server.getsockname()[1]


def test_a_forwarder_without_target_refuses_at_once_until_set_target() -> None:
    server, echo_port = _echo_server()
    bound = bind_all(parse_publish(f"127.0.0.1:0:{echo_port}") + parse_publish("127.0.0.1:0:9/udp"))
    tcp_port = bound.mappings[0].host_port
    udp_port = bound.mappings[1].host_port
    with server, Forwarder(bound, None) as fwd:
        assert fwd.target is None
        for _ in range(3):
            outcome, seconds = _attempt(tcp_port)
            assert outcome in ("refused", "closed") and seconds < FAST, (outcome, seconds)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:  # dropped, and the loop lives on
            udp.sendto(b"nobody home", ("127.0.0.1", udp_port))
        assert fwd.stats()[0].failed == 3 and fwd.stats()[0].active == 0
        assert fwd.handle_request('{"op": "stats"}')["target"] is None

        fwd.set_target("127.0.0.1")
        with socket.create_connection(("127.0.0.1", tcp_port), timeout=5) as sock:
            sock.sendall(b"hi")
            assert sock.recv(100) == b"echo:hi"

        fwd.set_target(None)  # back to refusing
        outcome, seconds = _attempt(tcp_port)
        assert outcome in ("refused", "closed") and seconds < FAST, (outcome, seconds)


# ---- (a) in the watch loop -----------------------------------------------------------------------------


def _probe_while(w: Watched, busy: str) -> list[tuple[str, float]]:
    """Probe the port from a thread (as a browser would) while the loop is in phase ``busy``."""
    seen: list[tuple[str, float]] = []
    while w.loop.current.phase == busy and len(seen) < 5:
        seen.append(_attempt(w.port))
    return seen


def test_before_the_first_container_is_ready_clients_are_refused_fast(tmp_path: Path, busybox_tar: Path) -> None:
    slow = {**SITE, "Dockerfile": SITE_DOCKERFILE.replace("COPY site /www", "COPY site /www\nRUN sleep 2")}

    async def body(w: Watched) -> None:
        await w.until(lambda: w.loop.current.phase == "building", 10, "the first build")
        probes = await asyncio.to_thread(_probe_while, w, "building")
        assert probes, "the first build ended before a probe"
        assert all(o in ("refused", "closed") and s < FAST for o, s in probes), probes
        first = await w.cycle(1)
        assert first.cycle.outcome == "swapped", first.cycle.error
        assert await w.aget() == "v1\n"

    _scenario(tmp_path, busybox_tar, slow, body)


def test_while_the_first_build_fails_clients_are_refused_fast(tmp_path: Path, busybox_tar: Path) -> None:
    broken = {**SITE, "Dockerfile": SITE_DOCKERFILE.replace("RUN echo built > /built", "RUN exit 9")}

    async def body(w: Watched) -> None:
        failed = await w.cycle(1)
        assert failed.cycle.outcome == "build failed"
        for _ in range(3):
            outcome, seconds = await asyncio.to_thread(_attempt, w.port)
            assert outcome in ("refused", "closed") and seconds < FAST, (outcome, seconds)
        _write(w.context / "Dockerfile", SITE_DOCKERFILE)  # fixed: the port serves
        fixed = await w.cycle(2)
        assert fixed.cycle.outcome == "swapped", fixed.cycle.error
        await w.until_served("v1\n")

    _scenario(tmp_path, busybox_tar, broken, body)


# ---- (b) retired images ----------------------------------------------------------------------------------


def test_a_swap_removes_the_image_the_rebuild_left_untagged(tmp_path: Path, busybox_tar: Path) -> None:
    ids: list[str] = []

    async def body(w: Watched) -> None:
        store = ImageStore(w.root / "images")
        first = await w.cycle(1)
        ids.append(str(first.cycle.image_id))
        for n, text in enumerate(("v2\n", "v3\n"), start=2):
            _write(w.context / "site/index.html", text)
            cycle = await w.cycle(n)
            assert cycle.cycle.outcome == "swapped", cycle.cycle.error
            ids.append(str(cycle.cycle.image_id))
            await w.until_served(text)

        def listed() -> set[str]:
            return {str(image.id) for image in store.images()}

        def gone() -> bool:  # out of the index, and their config blobs out of the store: gc ran
            return not listed() & set(ids[:2]) and not any(store.has_blob(Digest.parse(i)) for i in ids[:2])

        await w.until(gone, 15, "the retired images and their blobs to go")
        assert ids[2] in listed()
        assert store.resolve("site:dev").id.hex == ids[2].split(":")[1]
        report = store.fsck()
        assert report.clean and not report.temp_files

        # the build cache kept the old layers: going back to v1 is all cache hits and the same image
        _write(w.context / "site/index.html", "v1\n")
        back = await w.cycle(4)
        assert back.cycle.outcome == "swapped", back.cycle.error
        assert back.cycle.image_id == ids[0]
        await w.until_served("v1\n")

    w = _scenario(tmp_path, busybox_tar, SITE, body)
    builds = [i for i, e in enumerate(w.events) if isinstance(e, ev.BuildStarted)]
    last = [e.cached for e in w.events[builds[3]:] if isinstance(e, ev.StepFinished)]
    assert all(last), last


def test_an_untagged_image_a_container_uses_is_kept(tmp_path: Path, busybox_tar: Path) -> None:
    from engine.runtime.options import RunOptions

    async def body(w: Watched) -> None:
        engine = w.loop.engine
        first = await w.cycle(1)
        pinned = str(first.cycle.image_id)
        # another container of the first image, outside the loop
        async for _ in engine.containers.run(pinned, RunOptions(name="pinned", detach=True, network="none",
                                                                command=("sleep", "30")), attach=False):
            pass
        try:
            _write(w.context / "site/index.html", "v2\n")
            assert (await w.cycle(2)).cycle.outcome == "swapped"
            await w.until(lambda: not any(t for t in w.loop._retiring), 15, "the retirement")
            image = await engine.images.get(pinned)
            assert image.names == ()  # untagged, but in use: kept
            _write(w.context / "site/index.html", "v3\n")
            assert (await w.cycle(3)).cycle.outcome == "swapped"
            await w.until(lambda: not any(t for t in w.loop._retiring), 15, "the retirement")
            assert await engine.images.exists(pinned)
        finally:
            await engine.containers.remove("pinned", force=True)

    _scenario(tmp_path, busybox_tar, SITE, body)
