"""Textual messages the app passes upward. Engine events enter the UI only through tui/bridge.py."""

from __future__ import annotations

from textual.message import Message

from engine.events import (
    Event,
    LayerProgress,
)


class EngineMessage(Message):
    """An engine event for the operation ``op`` (e.g. ``"pull localhost:5000/hello:latest"``)."""

    def __init__(self, op: str, event: Event) -> None:
        super().__init__()
        self.op = op
        self.event = event


class TransferUpdate(EngineMessage):
    """Pull/push progress. A newer byte count for the same blob replaces an unprocessed older one."""

    def can_replace(self, message: Message) -> bool:
        if not isinstance(message, TransferUpdate) or message.op != self.op:
            return False
        old, new = message.event, self.event
        return (isinstance(old, LayerProgress) and isinstance(new, LayerProgress)
                and old.digest == new.digest and old.status == new.status)


class BuildUpdate(EngineMessage):
    """Build steps, their log lines and the result."""


class ContainerUpdate(EngineMessage):
    """A container changed state, health or ports: views refresh their rows."""


class LogUpdate(EngineMessage):
    """One container log line (op names the container)."""


class WatchUpdate(EngineMessage):
    """The dev loop's status."""


class Note(EngineMessage):
    """A human-readable progress line (engine.events.Message)."""


class OperationEnded(Message):
    """A long operation finished (ok) or failed (error is the one-line message)."""

    def __init__(self, op: str, error: str | None = None) -> None:
        super().__init__()
        self.op = op
        self.error = error


class CommandIssued(Message):
    """The user triggered an action; ``command`` is the equivalent CLI line."""

    def __init__(self, command: str) -> None:
        super().__init__()
        self.command = command


class ImagesChanged(Message):
    """The local image store changed (pull, build, tag, remove): the Images view reloads."""


class ContainersChanged(Message):
    """The set of containers changed (run, remove, ports): Containers and Ports reload."""
