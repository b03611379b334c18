"""Shared machinery for pull and push: an event queue fed by concurrent per-blob tasks."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import TypeVar

from engine.events import Event, LayerProgress

T = TypeVar("T")
Emit = Callable[[Event], None]

PROGRESS_INTERVAL = 0.1  # seconds between LayerProgress events of one blob


class Progress:
    """Throttled LayerProgress for one blob."""

    def __init__(self, emit: Emit, operation: str, digest: str, total: int | None) -> None:
        self.emit = emit
        self.operation = operation
        self.digest = digest
        self.total = total
        self._last = 0.0

    def update(self, done: int, status: str, *, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last >= PROGRESS_INTERVAL:
            self._last = now
            self.emit(LayerProgress(self.operation, self.digest, done, self.total, status))


async def run_concurrently(
    jobs: Iterable[Callable[[Emit], Awaitable[T]]], limit: int,
) -> AsyncIterator[Event | list[T]]:
    """Run ``jobs`` (each gets an ``emit``) at most ``limit`` at a time; yield their events as they come,
    then one final list of results. The first failure cancels the rest and is raised."""
    queue: asyncio.Queue[Event | None] = asyncio.Queue()
    semaphore = asyncio.Semaphore(max(1, limit))
    job_list = list(jobs)

    async def one(job: Callable[[Emit], Awaitable[T]]) -> T:
        try:
            async with semaphore:
                return await job(queue.put_nowait)
        finally:
            queue.put_nowait(None)

    tasks = [asyncio.create_task(one(job)) for job in job_list]
    finished = 0
    try:
        while finished < len(tasks):
            event = await queue.get()
            if event is None:
                finished += 1
                for task in tasks:
                    if task.done() and not task.cancelled() and task.exception() is not None:
                        raise task.exception()  # type: ignore[misc]
                continue
            yield event
        while not queue.empty():
            leftover = queue.get_nowait()
            if leftover is not None:
                yield leftover
        yield [task.result() for task in tasks]
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
