"""Readers: every subscriber's cursor, and who is caught up.

A caught-up reader is parked: publish() writes each frame it wants straight to its sink, with
no task switch per client (a reader without a sink is woken to read it). No reader ever holds
a source back: one the ring laps is caught up from the position log and the files.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from monitor.hub.events import Frame
from monitor.hub.interface import Selector, Sink
from monitor.hub.ring import Ring


@dataclass(slots=True, eq=False)
class Reader:
    """One subscriber's cursor."""

    cursor: int
    selector: Selector
    sink: Sink | None = None
    # Set while the reader is caught up and parked: publish() writes to its sink directly.
    wake: asyncio.Future[None] | None = None


class Readers:
    """The subscribers of one ring."""

    def __init__(self, ring: Ring) -> None:
        self._ring = ring
        self._all: set[Reader] = set()
        self._parked: dict[Selector, dict[Reader, None]] = {}
        self._is_closed = False

    def __len__(self) -> int:
        return len(self._all)

    @property
    def caught_up(self) -> int:
        """Readers parked now: publish() writes to them (or wakes them) directly."""
        return sum(len(group) for group in self._parked.values())

    def add(self, reader: Reader) -> None:
        """Count a new subscriber."""
        self._all.add(reader)

    def remove(self, reader: Reader) -> None:
        """Forget a subscriber that went away."""
        self._all.discard(reader)
        self._unpark(reader, reader.cursor)

    def close(self) -> None:
        """Wake every parked reader, to see the hub closed."""
        self._is_closed = True
        for group in list(self._parked.values()):
            for reader in list(group):
                self._unpark(reader, self._ring.head)

    def moved(self, reader: Reader, cursor: int) -> None:
        """The reader has read up to `cursor`."""
        reader.cursor = cursor

    def fan_out(self, frame: Frame) -> None:
        """Write the frame to every parked reader that wants it, now. A reader without a
        sink, or whose sink refuses, is woken to read the frame from the ring."""
        if not self._parked:
            return
        refused = []
        for selector, group in self._parked.items():
            if selector.matches(frame):
                for reader in group:
                    try:
                        if reader.sink is None or not reader.sink(frame):
                            refused.append(reader)
                    # A source must not die of one client: its task meets the error and ends.
                    except Exception:  # noqa: BLE001
                        refused.append(reader)
        for reader in refused:
            self._unpark(reader, frame.seq)

    async def park(self, reader: Reader) -> int:
        """Hand a caught-up reader to fan_out(); returns the cursor to read from when woken."""
        if self._is_closed:
            return reader.cursor
        reader.wake = asyncio.get_running_loop().create_future()
        self._parked.setdefault(reader.selector, {})[reader] = None
        try:
            await reader.wake
        finally:
            self._unpark(reader, reader.cursor)
        return reader.cursor

    def _unpark(self, reader: Reader, cursor: int) -> None:
        reader.cursor = cursor
        group = self._parked.get(reader.selector)
        if group is not None:
            group.pop(reader, None)
            if not group:
                del self._parked[reader.selector]
        if reader.wake is not None and not reader.wake.done():
            reader.wake.set_result(None)
        reader.wake = None
