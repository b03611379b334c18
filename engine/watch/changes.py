"""Turning a stream of file changes into rebuild batches (pure: the clock is passed in).

A burst of saves becomes one batch: the batch is due once no change came for ``quiet`` seconds, or
``cap`` seconds after its first change however busy the editor is. Changes that arrive while a batch
is being handled collect into the next one, so a change during a build queues exactly one more run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path


class ChangeBuffer:
    def __init__(self, quiet: float, cap: float) -> None:
        if quiet <= 0 or cap < quiet:
            raise ValueError("quiet must be positive and cap at least quiet")
        self.quiet = quiet
        self.cap = cap
        self._paths: set[str] = set()
        self._first: float | None = None
        self._last: float | None = None

    def add(self, paths: Iterable[str], now: float) -> bool:
        """Record changed paths; True when something new was added."""
        incoming = set(paths)
        if not incoming:
            return False
        before = len(self._paths)
        self._paths |= incoming
        self._last = now  # the same file saved again still extends the quiet period
        if self._first is None:
            self._first = now
        return len(self._paths) > before

    @property
    def pending(self) -> tuple[str, ...]:
        return tuple(sorted(self._paths))

    def due_at(self) -> float | None:
        """When the current batch is due (monotonic seconds), or None when nothing is pending."""
        if self._first is None or self._last is None:
            return None
        return min(self._last + self.quiet, self._first + self.cap)

    def take(self, now: float) -> tuple[str, ...] | None:
        """The batch if it is due at ``now`` (and start a new one), else None."""
        due = self.due_at()
        if due is None or now < due:
            return None
        batch = self.pending
        self._paths.clear()
        self._first = self._last = None
        return batch


def change_filter(context: Path, dockerfile: Path, ignored: Callable[[str], bool]) -> Callable[[str], str | None]:
    """A function mapping an absolute changed path to its context-relative name, or None to drop it.

    The Dockerfile always counts (even when it lives outside the context or is .dockerignore'd);
    other paths count when they are inside the context and neither noise nor ignored.
    """
    from engine.watch.rules import is_noise

    def relative(path: str) -> str | None:
        absolute = Path(path)
        if absolute == dockerfile:
            try:
                return absolute.relative_to(context).as_posix()
            except ValueError:
                return absolute.name
        try:
            rel = absolute.relative_to(context).as_posix()
        except ValueError:
            return None
        if rel in ("", ".") or is_noise(rel) or ignored(rel):
            return None
        return rel

    return relative
