"""What the watch loop knows, as frozen values: the TUI reads ``loop.current``; the same values travel
in the event stream (:class:`WatchCycle` after every handled batch), so a consumer of events alone
can rebuild the whole picture."""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.events import Event, WatchStatus


@dataclass(frozen=True, slots=True)
class Cycle:
    """One handled batch of changes: a rebuild (and swap) or a sync."""

    number: int
    trigger: tuple[str, ...]  # the changed files ("(initial build)" for the first run)
    kind: str  # "rebuild" | "sync"
    outcome: str  # swapped, unchanged, build failed, not ready, synced, sync failed
    seconds: float
    finished_at: float  # wall clock (time.time())
    image_id: str | None = None  # the image this cycle built (None if the build failed)
    manifest_digest: str | None = None
    container: str | None = None  # the container serving after the cycle
    build_seconds: float | None = None
    ready_seconds: float | None = None  # from "starting" to ready
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class WatchState:
    """A snapshot of the loop; never mutated (the loop replaces it)."""

    context: str
    phase: str = "watching"
    detail: str = ""
    image_id: str | None = None  # the newest image built (may have failed to get ready)
    manifest_digest: str | None = None
    good_image_id: str | None = None  # the image of the container serving the mapped ports
    good_manifest_digest: str | None = None
    container: str | None = None  # the container serving
    container_ip: str | None = None
    ports: tuple[str, ...] = ()  # host mappings the loop owns, e.g. "127.0.0.1:8080->8080/tcp"
    pending: tuple[str, ...] = ()  # changes waiting for the next cycle
    history: tuple[Cycle, ...] = field(default=())
    last_error: str | None = None

    @property
    def rebuilds(self) -> int:
        return sum(1 for c in self.history if c.kind == "rebuild")


@dataclass(frozen=True, slots=True)
class WatchFailed(WatchStatus):
    """``WatchStatus("failed", ...)`` with the details: which part failed, the step, exit code, last lines.

    ``image_id``/``container_id`` name what keeps serving (the last good image and container)."""

    stage: str = ""  # build | start | sync
    step: int | None = None
    instruction: str | None = None
    exit_code: int | None = None
    last_lines: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class WatchCycle(Event):
    """After every handled batch: the cycle and the loop's state right after it."""

    cycle: Cycle
    state: WatchState
