"""Progress of long operations (pull, push, build) docked above the footer; input is never blocked."""

from __future__ import annotations

from dataclasses import dataclass, field

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, ProgressBar

from engine.events import (
    BuildFinished,
    Event,
    LayerProgress,
    StepFinished,
    StepStarted,
    TransferFinished,
    TransferStarted,
)


@dataclass
class Tally:
    """Bytes (transfers) or steps (builds) done out of a total, from the events seen so far."""

    blobs: dict[str, tuple[int, int | None]] = field(default_factory=dict)
    steps_total: int = 0
    steps_done: int = 0
    finished: bool = False

    def feed(self, event: Event) -> None:
        if isinstance(event, LayerProgress):
            done = event.total if event.status in ("exists", "mounted", "done") and event.total else event.done
            self.blobs[event.digest] = (done, event.total)
        elif isinstance(event, StepStarted):
            self.steps_total = max(self.steps_total, event.total)
        elif isinstance(event, StepFinished):
            self.steps_done += 1
        elif isinstance(event, TransferStarted | BuildFinished | TransferFinished):
            self.finished = isinstance(event, BuildFinished | TransferFinished)

    def progress(self) -> tuple[float, float | None]:
        """(done, total); total None when unknown (an indeterminate bar)."""
        if self.finished:
            return 1.0, 1.0
        if self.steps_total:
            return float(self.steps_done), float(self.steps_total)
        if not self.blobs:
            return 0.0, None
        totals = [t for _, t in self.blobs.values()]
        if any(t is None for t in totals):
            return float(sum(d for d, _ in self.blobs.values())), None
        return float(sum(d for d, _ in self.blobs.values())), float(sum(t or 0 for t in totals))


class Operation(Horizontal):
    DEFAULT_CSS = """
    Operation { height: 1; }
    Operation Label { width: 1fr; }
    Operation ProgressBar { width: 50; }
    """

    def __init__(self, op: str) -> None:
        super().__init__(classes="operation")
        self.op = op
        self.tally = Tally()
        self.bar = ProgressBar(total=None, show_eta=False)

    def compose(self) -> ComposeResult:
        yield Label(self.op, markup=False)
        yield self.bar

    def feed(self, event: Event) -> None:
        self.tally.feed(event)
        done, total = self.tally.progress()
        self.bar.update(total=total, progress=done)


class OperationsPanel(Vertical):
    """One line per running operation plus the last CLI-equivalent command."""

    DEFAULT_CSS = """
    OperationsPanel { height: auto; max-height: 6; }
    OperationsPanel #last-command { color: $text-muted; height: 1; padding: 0 1; }
    """

    def compose(self) -> ComposeResult:
        yield Label("", id="last-command", markup=False)

    def operation(self, op: str) -> Operation:
        for child in self.query(Operation):
            if child.op == op:
                return child
        widget = Operation(op)
        self.mount(widget, before=0)
        return widget

    def feed(self, op: str, event: Event) -> None:
        self.operation(op).feed(event)

    def finish(self, op: str) -> None:
        for child in self.query(Operation):
            if child.op == op:
                child.remove()

    def show_command(self, line: str) -> None:
        self.query_one("#last-command", Label).update(f"$ {line}")
