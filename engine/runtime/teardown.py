"""Undo what create did: runtime state, rootfs mount, network attachment, state directory.

Shared by ``ContainerService.remove`` and the monitor (``--rm``).  Every step is idempotent, so a
remove after a crash half-way finishes the job.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.errors import EngineError
from engine.runtime.record import ContainerDir
from engine.runtime.runc import OciRuntime
from engine.runtime.snapshots import is_mountpoint, release_rootfs


def stop_runtime(runtime: OciRuntime, container_id: str) -> None:
    runtime.delete(container_id, force=True)


def release_mounts(cdir: ContainerDir) -> None:
    if is_mountpoint(cdir.rootfs):
        release_rootfs(cdir.rootfs)


def detach_network(network: dict[str, Any], container_id: str) -> None:
    if network.get("mode") != "bridge":
        return
    from engine.net.network import BridgeNetwork

    net = BridgeNetwork(Path(network["state_dir"]), bridge=network["bridge"], subnet=network["subnet"])
    net.detach(container_id)


def remove_dir(cdir: ContainerDir) -> None:
    """Rename first (the container disappears from listings at once), then delete."""
    if not cdir.path.exists():
        return
    doomed = cdir.path.with_name(f".removing-{cdir.id}-{uuid.uuid4().hex[:6]}")
    try:
        os.rename(cdir.path, doomed)
    except FileNotFoundError:
        return
    shutil.rmtree(doomed, ignore_errors=True)


def teardown(runtime: OciRuntime, cdir: ContainerDir, network: dict[str, Any]) -> list[str]:
    """Remove everything of the container; returns the problems met (empty when clean)."""
    problems: list[str] = []
    steps: list[Callable[[], None]] = [
        lambda: stop_runtime(runtime, cdir.id), lambda: release_mounts(cdir),
        lambda: detach_network(network, cdir.id),
    ]
    for step in steps:
        try:
            step()
        except EngineError as exc:
            problems.append(exc.message)
        except OSError as exc:
            problems.append(str(exc))
    if not problems:
        with contextlib.suppress(OSError):
            remove_dir(cdir)
    return problems
