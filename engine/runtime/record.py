"""A container's on-disk record: ``<containers>/<id>/config.json`` plus the paths of its state dir.

The record holds what the container was created with and its current state.  The service (create,
rm, start) and the monitor (running, exited, health) both update it: every change is a
read-modify-write under an ``flock`` on the state dir's lock file, written atomically, so a crash at any
instant leaves the old or the new record and never half of one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from engine.errors import ContainerRuntimeError, from_os_error
from engine.runtime.options import HealthOptions, RunOptions, VolumeSpec

RECORD_VERSION = 1


def now_rfc3339() -> str:
    """UTC time with nanoseconds, as docker writes it (``2024-05-01T10:00:00.123456789Z``)."""
    ns = time.time_ns()
    return format_rfc3339(ns)


def format_rfc3339(ns: int) -> str:
    seconds, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{frac:09d}Z"


def parse_rfc3339(text: str) -> float:
    """Seconds since the epoch of a ``format_rfc3339`` string (the ``Z`` form; nanoseconds kept to µs)."""
    import calendar

    base, _, frac = text.rstrip("Z").partition(".")
    seconds = calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S"))
    return seconds + (float("0." + frac) if frac else 0.0)


@dataclass(frozen=True, slots=True)
class HealthState:
    """A container's health: status, failing streak and the last probe results."""

    status: str = "starting"  # starting, healthy, unhealthy
    failing_streak: int = 0
    log: tuple[dict[str, Any], ...] = ()  # last results: {Start, End, ExitCode, Output}


@dataclass(frozen=True, slots=True)
class ContainerState:
    """What changes while a container lives: status, pids, exit, health, monitor."""

    status: str = "created"  # created, running, exited, dead, removing
    pid: int = 0
    exit_code: int = 0
    started_at: str | None = None
    finished_at: str | None = None
    error: str = ""
    monitor_pid: int = 0
    oom_killed: bool = False
    health: HealthState | None = None
    restart_count: int = 0


@dataclass(frozen=True, slots=True)
class ContainerRecord:
    """A container as created (options, image, network) plus its current state."""

    id: str
    name: str
    image: str  # as the user named it
    image_id: str
    created: str
    args: tuple[str, ...]
    options: RunOptions
    hostname: str
    runtime: str = "runc"
    stop_signal: str = "SIGTERM"
    stop_timeout: int = 10
    healthcheck: dict[str, Any] | None = None  # docker's Healthcheck: Test, Interval (ns), ...
    network: dict[str, Any] = field(default_factory=dict)  # mode, attachment, ports (bound)
    mounts: tuple[dict[str, Any], ...] = ()  # for inspect: Type, Source, Destination, RW
    image_config: dict[str, Any] = field(default_factory=dict)  # the image's run config (inspect Config)
    lowerdirs: tuple[str, ...] = ()
    state: ContainerState = field(default_factory=ContainerState)

    def with_state(self, **changes: Any) -> ContainerRecord:
        return replace(self, state=replace(self.state, **changes))

    def to_json(self) -> bytes:
        data = asdict(self)
        data["version"] = RECORD_VERSION
        return json.dumps(data, indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> ContainerRecord:
        data = json.loads(raw)
        data.pop("version", None)
        opts = dict(data["options"])
        opts["volumes"] = tuple(VolumeSpec(**v) for v in opts.get("volumes") or ())
        opts["health"] = HealthOptions(**(opts.get("health") or {}))
        for key in ("command", "env", "env_file_lines", "group_add", "publish"):
            opts[key] = tuple(opts.get(key) or ())
        opts["ulimits"] = tuple(tuple(u) for u in opts.get("ulimits") or ())
        state = dict(data["state"])
        health = state.get("health")
        state["health"] = (HealthState(health["status"], health["failing_streak"], tuple(health["log"]))
                           if health else None)
        data["options"] = RunOptions(**opts)
        data["state"] = ContainerState(**state)
        data["args"] = tuple(data["args"])
        data["mounts"] = tuple(data.get("mounts") or ())
        data["lowerdirs"] = tuple(data.get("lowerdirs") or ())
        return cls(**data)


@contextlib.contextmanager
def socket_path(path: Path) -> Iterator[str]:
    """A path to bind or connect a unix socket at ``path`` even when it is longer than sun_path's 108
    bytes (deep DOCKYARD_ROOTs): the directory is reached through ``/proc/self/fd/<dir fd>``."""
    if len(os.fsencode(path)) < 100:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


class ContainerDir:
    """The paths of one container's state directory."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def record(self) -> Path:
        return self.path / "config.json"

    @property
    def lock(self) -> Path:
        return self.path / ".lock"

    @property
    def bundle(self) -> Path:
        return self.path / "bundle"

    @property
    def spec(self) -> Path:
        return self.path / "bundle" / "config.json"

    @property
    def rootfs(self) -> Path:
        return self.path / "rootfs"

    @property
    def upper(self) -> Path:
        return self.path / "upper"

    @property
    def work(self) -> Path:
        return self.path / "work"

    @property
    def etc(self) -> Path:
        return self.path / "etc"

    @property
    def volumes(self) -> Path:
        return self.path / "volumes"

    @property
    def log(self) -> Path:
        return self.path / "container.log"

    @property
    def pid_file(self) -> Path:
        return self.path / "pid"

    @property
    def attach_socket(self) -> Path:
        return self.path / "attach.sock"

    @property
    def console_socket(self) -> Path:
        return self.path / "console.sock"

    @property
    def monitor_lock(self) -> Path:
        return self.path / "monitor.lock"

    def monitor_running(self) -> bool:
        """True while a monitor holds ``monitor.lock`` (it does for its whole life)."""
        try:
            fd = os.open(self.monitor_lock, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    @property
    def monitor_log(self) -> Path:
        return self.path / "monitor.log"

    def exists(self) -> bool:
        return self.record.exists()

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        fd = os.open(self.lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def load(self) -> ContainerRecord:
        try:
            raw = self.record.read_bytes()
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                from engine.errors import ContainerNotFoundError

                raise ContainerNotFoundError(f"no such container: {self.id}") from None
            raise from_os_error(exc, f"cannot read container record {self.record}") from exc
        try:
            return ContainerRecord.from_json(raw)
        except (ValueError, KeyError, TypeError) as exc:
            raise ContainerRuntimeError(f"container record {self.record} is damaged: {exc}") from exc

    def save(self, record: ContainerRecord) -> None:
        """Atomically replace the record (callers that read-modify-write use ``update``).

        Written to a temp file and renamed over the old one, without fsync: like runc's state.json
        this is runtime state rewritten several times per start (an fsync costs ~15 ms here, more than
        the rest of ``create``); a crash leaves the old or the new record, and ``refresh`` reconciles
        the state with runc after a reboot.
        """
        tmp = self.path / f".config.json.tmp-{os.getpid()}-{threading.get_ident()}"
        try:
            with open(tmp, "wb") as fh:
                fh.write(record.to_json())
            os.replace(tmp, self.record)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise from_os_error(exc, f"cannot write container record {self.record}") from exc

    def update(self, change: Callable[[ContainerRecord], ContainerRecord]) -> ContainerRecord:
        with self.locked():
            record = change(self.load())
            self.save(record)
            return record
