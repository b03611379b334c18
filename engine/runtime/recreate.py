"""Recreate a container with the configuration it was created with and another set of published ports.

The container record keeps the ``RunOptions`` it was made from (volumes, labels, limits, health, env,
user, network ...), so nothing has to be rebuilt from ``inspect``.  The order keeps the old container
recoverable at every step:

1. the new mappings are checked (parsed, no host port twice, allowed on the network mode): a bad spec
   fails here with nothing touched;
2. the old record takes a temporary name (the name is free for the new one) and its ``--rm`` is
   cleared, so stopping it does not delete it;
3. the old container stops (its host ports are released);
4. the new one runs under the original name, from the same image id, with the same options;
5. success: the old one is removed.  Failure (a host port in use, a runtime error): whatever the run
   made is gone already (``ContainerManager.run`` cleans up), the old record gets its name and ``--rm``
   back and starts again if it was running; the error keeps its class and says the old one is back.

Anonymous volumes are per container: the new one gets fresh ones (named volumes and binds are shared).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace

from engine.errors import ConflictError, ContainerRuntimeError, EngineError
from engine.runtime.manager import ContainerManager
from engine.runtime.record import ContainerDir, ContainerRecord

TEMP_MARK = ".recreating-"


def merged_publish(current: Sequence[str], publish: Sequence[str] | None, add: Sequence[str]) -> tuple[str, ...]:
    """``publish`` (or the current specs when None) followed by ``add``, each spec once, in order."""
    base = tuple(current) if publish is None else tuple(publish)
    return tuple(dict.fromkeys(spec.strip() for spec in (*base, *add) if spec.strip()))


def temp_name(name: str) -> str:
    """A valid, unused-looking container name for the old container while the new one takes ``name``."""
    return f"{name[:100]}{TEMP_MARK}{os.urandom(4).hex()}"


def recreate(manager: ContainerManager, name_or_id: str, *, publish: Sequence[str] | None = None,
             add_publish: Sequence[str] = (), timeout: float | None = None,
             caller_env: Mapping[str, str] | None = None) -> ContainerRecord:
    """Replace the container by one with the same name, image and options but these port mappings.

    ``publish`` replaces the ``-p`` specs (None keeps them), ``add_publish`` appends to them; ``timeout``
    is the stop grace period (None: the container's own).  Returns the new container's record.
    """
    cdir, old = manager.load(name_or_id)
    if old.state.status in ("creating", "removing"):
        raise ConflictError(f"container {old.name} is being {old.state.status[:-3]}ed; try again")
    if TEMP_MARK in old.name:
        raise ConflictError(f"container {old.name} is the old half of a recreate; remove it instead")
    options = replace(old.options, name=old.name, publish=merged_publish(old.options.publish, publish, add_publish))
    manager._requested_ports(options, old.image_config)  # a bad spec fails before anything changes
    image = _same_image(manager, old)
    was_running = old.state.status == "running"

    parked = temp_name(old.name)
    _rename(manager, cdir, parked, remove=False)
    try:
        if was_running:
            stopped = manager.stop(old.id, timeout)
            manager._wait_monitor_gone(cdir, stopped)  # "exited" is written before its ports close
        started = manager.run(image, options, caller_env, wait_attach=False)
    except BaseException as exc:
        problem = _roll_back(manager, cdir, old, parked, was_running)
        if isinstance(exc, EngineError):
            raise _same_kind(exc, f"cannot recreate {old.name}: {exc}; {problem or 'the old container is back'}"
                             ) from exc
        raise
    try:
        manager.remove(old.id, force=True)
    except EngineError as exc:
        raise ContainerRuntimeError(
            f"{old.name} was recreated, but removing the old container {old.id[:12]} failed: {exc}") from exc
    return started.record


def _same_image(manager: ContainerManager, record: ContainerRecord) -> str:
    """The name the container was made from while it still means the same image, else the image id."""
    from engine.store.layout import ImageStore

    try:
        resolved = ImageStore(manager.config.store_dir).resolve(record.image)
    except EngineError:
        return record.image_id
    return record.image if str(resolved.config.digest) == record.image_id else record.image_id


def _rename(manager: ContainerManager, cdir: ContainerDir, name: str, *, remove: bool) -> ContainerRecord:
    """Give the record another name (under the lock ``create`` claims names with) and set its ``--rm``."""
    with manager._names_lock():
        taken = {r.name: r.id for r in manager._raw_records() if r.id != cdir.id}
        if name in taken:
            raise ConflictError(f'the container name "/{name}" is already in use by container "{taken[name]}"')
        return cdir.update(lambda r: replace(r, name=name, options=replace(r.options, remove=remove)))


def _roll_back(manager: ContainerManager, cdir: ContainerDir, old: ContainerRecord, parked: str,
               was_running: bool) -> str:
    """Put the old container back as it was; returns what could not be restored ("" when all was)."""
    try:
        _rename(manager, cdir, old.name, remove=old.options.remove)
    except EngineError as exc:
        return f"the old container is kept as {parked} ({exc})"
    if was_running:
        try:
            manager.start(old.id)
        except EngineError as exc:
            return f"the old container is back but did not start: {exc}"
    return ""


def _same_kind(error: EngineError, message: str) -> EngineError:
    """``message`` in an error of ``error``'s class (PortInUseError stays one), else ContainerRuntimeError."""
    with contextlib.suppress(TypeError):
        return type(error)(message)
    return ContainerRuntimeError(message)
