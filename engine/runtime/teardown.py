"""Undo what create did: runtime state, rootfs mount, network attachment, state directory.

Shared by ``ContainerService.remove`` and the monitor (``--rm``).  Every step is idempotent, so a
remove after a crash half-way finishes the job.  A removed bridge container's slot in the network's
pool of ready attachments is refilled afterwards (``refill``), by the process that has just loaded
pyroute2 for the detach.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from engine.errors import EngineError
from engine.runtime.record import ContainerDir
from engine.runtime.runc import OciRuntime
from engine.runtime.snapshots import is_mountpoint, release_rootfs


def stop_runtime(runtime: OciRuntime, container_id: str) -> None:
    runtime.delete(container_id, force=True)


def release_mounts(cdir: ContainerDir) -> None:
    if is_mountpoint(cdir.rootfs):
        release_rootfs(cdir.rootfs)


Refill = Literal["inline", "background"] | None


def detach_network(network: dict[str, Any], container_id: str, refill: Refill = None) -> None:
    """Free the container's attachment; ``refill`` tops the network's pool up here ("inline") or in a
    forked child ("background")."""
    if network.get("mode") != "bridge":
        return
    from engine.net.network import BridgeNetwork

    net = BridgeNetwork(Path(network["state_dir"]), bridge=network["bridge"], subnet=network["subnet"])
    net.detach(container_id)
    if refill == "inline":
        with contextlib.suppress(EngineError):
            net.fill()
    elif refill == "background":
        net.fill_in_background()


def hide_dir(cdir: ContainerDir) -> Path | None:
    """Rename the state directory out of the listings (the name is free again); its new path."""
    if not cdir.path.exists():
        return None
    doomed = cdir.path.with_name(f".removing-{cdir.id}-{uuid.uuid4().hex[:6]}")
    try:
        os.rename(cdir.path, doomed)
    except FileNotFoundError:
        return None
    return doomed


def remove_dir(cdir: ContainerDir) -> None:
    """Rename first (the container disappears from listings at once), then delete."""
    doomed = hide_dir(cdir)
    if doomed is not None:
        shutil.rmtree(doomed, ignore_errors=True)


def _run_steps(steps: list[Callable[[], None]], problems: list[str]) -> None:
    for step in steps:
        try:
            step()
        except EngineError as exc:
            problems.append(exc.message)
        except OSError as exc:
            problems.append(str(exc))


def teardown(runtime: OciRuntime, cdir: ContainerDir, network: dict[str, Any], *,
             gone: Callable[[], None] | None = None, refill: Refill = None) -> list[str]:
    """Remove everything of the container; returns the problems met (empty when clean).

    ``gone`` (the ``--rm`` monitor letting its client return, after the container exited) runs as
    soon as the container is gone for users: rootfs unmounted and state directory renamed out of the
    listings (its name is free).  ``runc delete``, the network detach and the deletion of the
    directory follow; leftovers of a failed detach are then ``BridgeNetwork.gc``'s job.  Without
    ``gone`` a failure keeps the directory, so ``rm`` can be retried.
    """
    problems: list[str] = []
    if gone is None:
        _run_steps([lambda: stop_runtime(runtime, cdir.id), lambda: release_mounts(cdir),
                    lambda: detach_network(network, cdir.id, refill)], problems)
        if not problems:
            with contextlib.suppress(OSError):
                remove_dir(cdir)
        return problems
    # the container has exited: its rootfs can go before runc forgets it
    _run_steps([lambda: release_mounts(cdir)], problems)
    doomed = None if problems else hide_dir(cdir)
    gone()
    _run_steps([lambda: stop_runtime(runtime, cdir.id), lambda: detach_network(network, cdir.id, refill)],
               problems)
    if doomed is not None:
        shutil.rmtree(doomed, ignore_errors=True)
    return problems
