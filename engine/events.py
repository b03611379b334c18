"""Typed, frozen events that long operations yield.

Each area defines its own events next to its code (``engine/registry/events.py``, ...), all subclasses
of :class:`Event`; consumers (CLI, TUI, tests) match on the classes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every engine event."""


@dataclass(frozen=True, slots=True)
class Message(Event):
    """A line of human-readable progress (``level``: info, warning)."""

    text: str
    level: str = "info"


@dataclass(frozen=True, slots=True)
class ImageStored(Event):
    """An image landed in the store (import, load, pull, build)."""

    reference: str | None
    image_id: str
    manifest_digest: str


@dataclass(frozen=True, slots=True)
class ImageRemoved(Event):
    reference: str | None
    image_id: str | None


# ---- transfers (pull, push) ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TransferStarted(Event):
    """A pull or push began; ``layers`` is the number of blobs it may move."""

    operation: str  # "pull" | "push"
    reference: str
    layers: int = 0


@dataclass(frozen=True, slots=True)
class LayerProgress(Event):
    """Bytes moved for one blob; ``status``: waiting, downloading, uploading, exists, mounted, done."""

    operation: str
    digest: str
    done: int
    total: int | None
    status: str


@dataclass(frozen=True, slots=True)
class TransferFinished(Event):
    operation: str
    reference: str
    manifest_digest: str
    bytes_moved: int
    seconds: float


@dataclass(frozen=True, slots=True)
class RateLimit(Event):
    """Docker Hub's rate-limit headers, shown to the user."""

    limit: str | None
    remaining: str | None


# ---- builds ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BuildStarted(Event):
    context: str
    dockerfile: str
    steps: int


@dataclass(frozen=True, slots=True)
class StepStarted(Event):
    step: int  # 1-based, across all built stages
    total: int
    stage: str
    instruction: str  # the Dockerfile line as written, e.g. "RUN apk add curl"
    line: int | None = None


@dataclass(frozen=True, slots=True)
class StepLog(Event):
    step: int
    line: str
    stream: str = "stdout"


@dataclass(frozen=True, slots=True)
class StepFinished(Event):
    step: int
    cached: bool
    seconds: float
    layer_size: int | None = None  # None for steps that add no layer


@dataclass(frozen=True, slots=True)
class StepFailed(Event):
    step: int
    message: str
    exit_code: int | None = None
    last_lines: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class BuildFinished(Event):
    image_id: str
    manifest_digest: str
    tags: tuple[str, ...]
    seconds: float


# ---- containers ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ContainerStateChanged(Event):
    container_id: str
    name: str
    state: str  # created, running, exited, removed, paused
    exit_code: int | None = None
    health: str | None = None


@dataclass(frozen=True, slots=True)
class LogLine(Event):
    container_id: str
    stream: str  # stdout | stderr
    text: str
    time: str  # RFC 3339 with nanoseconds, as docker prints with --timestamps


@dataclass(frozen=True, slots=True)
class PortBound(Event):
    container_id: str
    host_ip: str
    host_port: int
    container_port: int
    protocol: str


@dataclass(frozen=True, slots=True)
class HealthChanged(Event):
    container_id: str
    status: str  # starting, healthy, unhealthy
    output: str = ""


# ---- watch ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WatchStatus(Event):
    """The dev loop's phase: watching, changed, building, starting, ready, swapped, synced, failed."""

    phase: str
    detail: str = ""
    files: tuple[str, ...] = ()
    image_id: str | None = None
    container_id: str | None = None
    seconds: float | None = None
