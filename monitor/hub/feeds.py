"""Feeds: the in-memory hub's in-process consumers (history, alert rules), each a bounded
queue of payloads filled by publish() and drained by the consumer's own task.

A consumer runs outside publish(): a slow one never delays a source, and one that publishes
in turn (the alert engine) never re-enters publish(). A consumer MAX_PENDING events behind
loses the oldest; they are counted (HubStats.consumer_drops) and logged once per episode.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator

from monitor.hub.events import Event

log = logging.getLogger(__name__)

MAX_PENDING = 10_000


class Feed:
    """One consumer's events of the types it asked for, in publish order."""

    def __init__(self, types: frozenset[str], max_pending: int = MAX_PENDING) -> None:
        self.types = types
        self.dropped = 0
        self._events: deque[Event] = deque()
        self._max_pending = max_pending
        self._wake: asyncio.Future[None] | None = None
        self._is_closed = False
        self._is_dropping = False

    def put(self, event: Event) -> None:
        """Queue one event (from publish(): never waits)."""
        if len(self._events) >= self._max_pending:
            self._events.popleft()
            self.dropped += 1
            if not self._is_dropping:
                self._is_dropping = True
                log.warning("a consumer of %s fell behind; dropping its oldest events", self.types)
        self._events.append(event)
        self._set_wake()

    def drain(self) -> list[Event]:
        """Every queued event, now."""
        events = list(self._events)
        self._events.clear()
        self._is_dropping = False
        return events

    def close(self) -> None:
        """End the iteration once the queued events are taken."""
        self._is_closed = True
        self._set_wake()

    async def __aiter__(self) -> AsyncIterator[Event]:
        while True:
            for event in self.drain():
                yield event
            if self._is_closed:
                # One more turn of the loop first: a consumer woken before the close that
                # publishes what it makes of its last events (the alert rules) does so now,
                # and a consumer of those (the notifier) still gets them.
                await asyncio.sleep(0)
                for event in self.drain():
                    yield event
                return
            self._wake = asyncio.get_running_loop().create_future()
            try:
                await self._wake
            finally:
                self._wake = None

    def _set_wake(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)
