"""Background tasks: ending them, sharing one run among callers, and running an
in-process consumer of the hub."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable, Iterable
from contextlib import suppress
from typing import Any, Generic, TypeVar

from monitor.hub.events import Event
from monitor.hub.interface import Consumable

log = logging.getLogger(__name__)

T = TypeVar("T")


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel every task, then await each in order: an error other than the cancellation
    (a crashed source, a client's failure) is raised here."""
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    for task in tasks:
        with suppress(asyncio.CancelledError):
            await task


class SharedRuns(Generic[T]):
    """One run per key of a coroutine many callers ask for at once (a crowd of clients
    wanting the same read), shared by every caller while it runs. A caller leaving never
    cancels it for the others, its failure reaches every caller and is not kept, and it is
    let go when done: what to keep of its result is the coroutine's own business."""

    def __init__(self) -> None:
        self._running: dict[Hashable, asyncio.Future[T]] = {}

    async def run(self, key: Hashable, start: Callable[[], Awaitable[T]]) -> T:
        """The result of the run for `key`, started with `start()` if none is running."""
        running = self._running.get(key)
        if running is None:
            running = self._running[key] = asyncio.ensure_future(start())
            running.add_done_callback(lambda done: self._done(key, done))
        return await asyncio.shield(running)

    def _done(self, key: Hashable, done: asyncio.Future[T]) -> None:
        if self._running.get(key) is done:
            del self._running[key]
        if not done.cancelled():
            done.exception()  # retrieved: every caller may have gone before it ended


async def consume(
    hub: Consumable, types: frozenset[str], handle: Callable[[Event], None], name: str
) -> None:
    """Hand every event of these types to `handle`, in publish order, until the hub closes.

    An event `handle` fails on is logged (the first failure, then every 1,000th) and
    skipped: one bad payload must not end the history or the alert rules for good."""
    failures = 0
    async with hub.consume(types) as events:
        async for event in events:
            try:
                handle(event)
            except Exception:  # noqa: BLE001 - see the docstring
                failures += 1
                if failures == 1 or failures % 1000 == 0:
                    log.exception(
                        "%s: could not handle a %s event (%d so far)", name, event.type, failures
                    )
