"""Background tasks: ending them, and running an in-process consumer of the hub."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from contextlib import suppress
from typing import Any

from monitor.hub.events import Event
from monitor.hub.interface import Consumable

log = logging.getLogger(__name__)


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel every task, then await each in order: an error other than the cancellation
    (a crashed source, a client's failure) is raised here."""
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    for task in tasks:
        with suppress(asyncio.CancelledError):
            await task


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
