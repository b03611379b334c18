"""The one place where engine events become Textual messages.

Workers iterate an engine async iterator through :func:`pump`; each event is turned into a message by
:func:`to_message` and posted to the widget that started the operation (it bubbles up from there).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from textual.message_pump import MessagePump

from engine.events import (
    BuildFinished,
    BuildStarted,
    ContainerStateChanged,
    Event,
    HealthChanged,
    ImageRemoved,
    ImageStored,
    LayerProgress,
    LogLine,
    Message,
    PortBound,
    RateLimit,
    StepFailed,
    StepFinished,
    StepLog,
    StepStarted,
    TransferFinished,
    TransferStarted,
    WatchStatus,
)
from tui import messages as m

_KINDS: tuple[tuple[tuple[type[Event], ...], type[m.EngineMessage]], ...] = (
    ((TransferStarted, LayerProgress, TransferFinished, RateLimit), m.TransferUpdate),
    ((BuildStarted, StepStarted, StepLog, StepFinished, StepFailed, BuildFinished), m.BuildUpdate),
    ((ContainerStateChanged, HealthChanged, PortBound), m.ContainerUpdate),
    ((LogLine,), m.LogUpdate),
    ((WatchStatus,), m.WatchUpdate),
    ((Message, ImageStored, ImageRemoved), m.Note),
)


def to_message(op: str, event: Event) -> m.EngineMessage:
    """The message class for an event; unknown event classes travel as a plain EngineMessage."""
    for classes, message_class in _KINDS:
        if isinstance(event, classes):
            return message_class(op, event)
    return m.EngineMessage(op, event)


async def pump(op: str, events: AsyncIterator[Event], target: MessagePump) -> list[Event]:
    """Post every event of ``events`` to ``target`` as a message; returns the terminal events seen.

    Terminal events (ImageStored, TransferFinished, BuildFinished, StepFailed) are returned so the
    caller can act on the outcome without keeping its own state.
    """
    terminal: list[Event] = []
    async for event in events:
        target.post_message(to_message(op, event))
        if isinstance(event, ImageStored | TransferFinished | BuildFinished | StepFailed):
            terminal.append(event)
    return terminal


async def pump_operation(op: str, events: AsyncIterator[Event], target: MessagePump) -> list[Event]:
    """:func:`pump` for a long operation: posts OperationEnded (with the one-line error, if any) at the end,
    so the progress line goes away whatever happens; exceptions still propagate to the worker."""
    error: str | None = None
    try:
        terminal = await pump(op, events, target)
        failed = [e for e in terminal if isinstance(e, StepFailed)]
        error = failed[0].message if failed else None
        return terminal
    except BaseException as exc:
        error = str(exc) or type(exc).__name__
        raise
    finally:
        target.post_message(m.OperationEnded(op, error))
