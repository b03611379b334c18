"""A pool of ready network attachments, so ``run`` needs no netlink call (and never imports pyroute2).

A pool entry is a complete attachment made ahead of time by :func:`fill`: an address from the IPAM,
a namespace ``<netns_prefix><id12>`` whose ``eth0`` is configured (address, default route, ``lo``
up) and its veth peer ``<veth_prefix><id12>`` enslaved to the bridge and up.  Its IPAM key is the id
the container that takes it will get, so every name stays derived from the container id and
``detach``/``gc`` work on it unchanged.

The entry's state is its IPAM allocation's ``extra["pool"]``; each change is one IPAM transaction
(flock + atomic replace), so a crash at any instant leaves a state that ``gc`` and ``fill`` clean:

* ``pending``  being made by a filler, which holds ``<bridge>.pool.lock`` for its whole run (an
               entry left ``pending`` with that lock free belongs to a filler that died);
* ``ready``    complete, waiting for a ``run``;
* ``claimed``  handed to a ``run`` whose ``attach(id)`` turns it into the container's allocation; a
               claim whose container never appears is garbage for ``gc``;
* ``stale``    failed the claim-time check (namespace or veth gone, veth not on the bridge or down).

A fresh namespace per container, never a recycled one: a used namespace keeps the last container's
TIME_WAIT sockets (a new server's ``bind`` without SO_REUSEADDR would fail) and whatever else it
left behind.  :func:`claim` is file I/O only (one IPAM transaction and a few sysfs reads);
:func:`fill` runs off the critical path: in the ``--rm`` monitor after it let its client go, after
``rm`` (in a forked child: pyroute2 is loaded already), or in the background after a ``run`` that
drained the pool; only CLI processes refill (see :func:`fill_in_background`).  ``python -m
engine.net.pool '<BridgeNetwork.describe() JSON>'`` fills from a shell.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import NetworkSetupError, os_error_message
from engine.net.ipam import Allocation
from engine.store.locking import try_flock

if TYPE_CHECKING:
    from engine.net.network import BridgeNetwork

POOL_KEY = "pool"
PENDING, READY, CLAIMED, STALE = "pending", "ready", "claimed", "stale"
#: Ready attachments kept per network (``DOCKYARD_NET_POOL`` overrides; 0 turns the pool off).
DEFAULT_POOL_SIZE = 2
POOL_SIZE_ENV = "DOCKYARD_NET_POOL"
MAX_POOL_SIZE = 64
SYS_CLASS_NET = "/sys/class/net"


def default_pool_size() -> int:
    raw = os.environ.get(POOL_SIZE_ENV, "").strip()
    if not raw:
        return DEFAULT_POOL_SIZE
    try:
        size = int(raw)
    except ValueError as exc:
        raise NetworkSetupError(f"{POOL_SIZE_ENV}={raw!r} is not a number") from exc
    return max(0, min(size, MAX_POOL_SIZE))


def pool_state(alloc: Allocation) -> str | None:
    """The entry's pool state, or None for an ordinary container allocation."""
    value = alloc.extra.get(POOL_KEY)
    return None if value is None else str(value)


def _with_state(alloc: Allocation, state: str | None) -> Allocation:
    extra = {k: v for k, v in alloc.extra.items() if k != POOL_KEY}
    if state is not None:
        extra[POOL_KEY] = state
    return replace(alloc, extra=extra)


# ---- checks without netlink ---------------------------------------------------------------------


def bridge_present(bridge: str) -> bool:
    return os.path.isdir(os.path.join(SYS_CLASS_NET, bridge, "bridge"))


def _bridge_ifindex(bridge: str) -> int | None:
    try:
        with open(os.path.join(SYS_CLASS_NET, bridge, "ifindex"), encoding="ascii") as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return None


def entry_usable(bridge: str, netns_path: str, veth: str) -> bool:
    """sysfs/stat only: the namespace is mounted, the veth is on ``bridge`` and up with its peer up."""
    try:
        if os.stat(netns_path).st_dev == os.stat(os.path.dirname(netns_path)).st_dev:
            return False  # a plain file, not a namespace bind mount
        if os.path.basename(os.readlink(os.path.join(SYS_CLASS_NET, veth, "master"))) != bridge:
            return False
        with open(os.path.join(SYS_CLASS_NET, veth, "operstate"), encoding="ascii") as fh:
            return fh.read().strip() == "up"  # "lowerlayerdown" when eth0 inside is down
    except OSError:
        return False


# ---- the lock a filler holds --------------------------------------------------------------------


def _lock_path(net: BridgeNetwork) -> Path:
    return net.ipam.state_dir / f"{net.bridge}.pool.lock"


@contextlib.contextmanager
def locked(net: BridgeNetwork, *, wait: bool = True) -> Iterator[bool]:
    """Hold the pool lock; yields False (without it) when ``wait`` is off and a filler holds it."""
    try:
        net.ipam.state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(_lock_path(net), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise NetworkSetupError(os_error_message(exc, "cannot open the pool lock")) from exc
    try:
        with try_flock(fd, wait=wait) as held:
            yield held
    finally:
        os.close(fd)


def remove_lock(net: BridgeNetwork) -> None:
    with contextlib.suppress(FileNotFoundError):
        _lock_path(net).unlink()


# ---- run's side: claim --------------------------------------------------------------------------


def claim(net: BridgeNetwork) -> tuple[str, int] | None:
    """Take a ready entry: ``(container id, ready entries left)``, or None when there is none.

    Entries failing :func:`entry_usable` are marked stale (the next fill removes them).
    """
    if not net.ipam.state_file.exists():
        return None
    with net.ipam.transaction() as state:
        ready = sorted(cid for cid, a in state.allocations.items() if pool_state(a) == READY)
        for index, cid in enumerate(ready):
            alloc = state.allocations[cid]
            if entry_usable(net.bridge, net.netns_path(cid), net.veth_name(cid)):
                state.allocations[cid] = _with_state(alloc, CLAIMED)
                return cid, len(ready) - index - 1
            state.allocations[cid] = _with_state(alloc, STALE)
    return None


def ready_count(net: BridgeNetwork) -> int:
    if not net.ipam.state_file.exists():
        return 0
    return sum(1 for a in net.ipam.allocations().values() if pool_state(a) == READY)


def live_entries(net: BridgeNetwork) -> set[str]:
    """Entries ``gc`` must keep: ready ones, and pending ones while their filler runs."""
    allocs = net.ipam.allocations()
    pending = [cid for cid, a in allocs.items() if pool_state(a) == PENDING]
    keep = {cid for cid, a in allocs.items() if pool_state(a) == READY}
    if pending:
        with locked(net, wait=False) as free:
            if not free:
                keep.update(pending)
    return keep


# ---- the filler ---------------------------------------------------------------------------------


def fill(net: BridgeNetwork, size: int | None = None) -> int:
    """Top the pool up to ``size`` ready entries (default ``net.pool_size``); returns how many were made.

    Needs the bridge to exist already (the first bridge attach makes it): a filler never brings back
    a bridge that ``destroy`` removed.  Stale entries and the pending ones of a dead filler go first.
    """
    size = net.pool_size if size is None else size
    if size <= 0:
        return 0
    with locked(net):
        index = _bridge_ifindex(net.bridge)
        if index is None or not bridge_present(net.bridge):
            return 0
        allocs = net.ipam.allocations()
        for cid, alloc in allocs.items():
            if pool_state(alloc) in (PENDING, STALE):  # we hold the lock: no filler is making these
                net.drop_entry(cid)
        ready = sum(1 for a in allocs.values() if pool_state(a) == READY)
        made = 0
        for _ in range(size - ready):
            cid = os.urandom(32).hex()
            try:
                alloc = net.ipam.allocate(cid, extra={POOL_KEY: PENDING})
            except NetworkSetupError:
                break  # the subnet is full: containers come first
            try:
                net.plug(cid, alloc.ip, index)
            except BaseException:
                with contextlib.suppress(Exception):
                    net.drop_entry(cid)
                raise
            with net.ipam.transaction() as state:
                current = state.allocations.get(cid)
                if current is not None and pool_state(current) == PENDING:
                    state.allocations[cid] = _with_state(current, READY)
            made += 1
        return made


def release_ready(net: BridgeNetwork) -> int:
    """Give back the addresses of the ready entries (the subnet ran out); needs netlink."""
    dropped = 0
    with locked(net):
        for cid, alloc in net.ipam.allocations().items():
            if pool_state(alloc) in (READY, STALE):
                net.drop_entry(cid)
                dropped += 1
    return dropped


def fill_in_background(net: BridgeNetwork) -> None:
    """Top the pool up in a forked, detached, low-priority child, unless it is full already.

    Only a single-threaded caller (the CLI) keeps the pool warm: forking is safe there, and a child
    of a process that did netlink work already skips the pyroute2 import.  A long-lived threaded
    process (the TUI, the watch loop, a library user) pays that import once and ~45 ms per attach,
    and should not leave ready attachments behind when it goes away, so this is a no-op there.
    Never raises.
    """
    try:
        import threading

        if threading.active_count() != 1 or net.pool_size <= 0 or not bridge_present(net.bridge):
            return
        if ready_count(net) < net.pool_size:
            _fork_fill(net)
    except Exception:  # noqa: BLE001 - best effort: run falls back to a fresh attach when the pool is empty
        return


def _fork_fill(net: BridgeNetwork) -> None:
    """One fork, not waited for: the CLI exits soon after (the child is then re-parented) and a
    finished child of a still-attached ``run`` is a harmless zombie until then."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    if os.fork() == 0:  # the child never returns into the caller's code
        try:
            os.setsid()
            _become_background()
            with contextlib.suppress(BaseException):
                fill(net)
        finally:
            os._exit(0)


def _become_background() -> None:
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.closerange(3, 65536)  # the caller's pipes (a test's captured stdout) must not stay open
    with contextlib.suppress(OSError):
        os.nice(10)
    os.chdir("/")


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m engine.net.pool '<network description json>'", file=sys.stderr)
        return 2
    from engine.net.network import BridgeNetwork

    description: dict[str, Any] = json.loads(argv[1])
    with contextlib.suppress(OSError):
        os.nice(10)
    try:
        fill(BridgeNetwork.from_description(description))
    except NetworkSetupError as exc:
        print(f"dockyard pool: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
