"""Readers: every subscriber's cursor, who is caught up, and who holds the sources back.

A caught-up reader is parked: publish() writes each frame it wants straight to its sink, with
no task switch per client (a reader without a sink is woken to read it). A source that can
wait (a tailer: the file is its buffer) asks has_room()/wait_for_room() before reading on,
so a burst never laps a reader that keeps up.
A reader that holds the sources back for STALL_S (forgiven at a rate of 1/STALL_DECAY_S)
is left behind: it gets a `gap`, and the sources go on at the pace of the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from dataclasses import dataclass

from monitor.hub.events import Frame
from monitor.hub.interface import Selector, Sink
from monitor.hub.ring import Ring

# A reader that holds a waiting source back this long is left behind: it gets a `gap` rather
# than setting every source's pace. Held-back time decays with STALL_DECAY_S, so a reader
# slower than a burst for 5 s is left behind even though it catches up between reads, while
# one that is briefly slow now and then (a GC pause, a busy tab) never is.
STALL_S = 5.0
STALL_DECAY_S = 30.0


@dataclass(slots=True, eq=False)
class Reader:
    """One subscriber's cursor, and how long it has held waiting sources back."""

    cursor: int
    selector: Selector
    sink: Sink | None = None
    # Set while the reader is caught up and parked: publish() writes to its sink directly.
    wake: asyncio.Future[None] | None = None
    blocked_s: float = 0.0  # seconds it held sources back, decayed to `blocked_at`
    blocked_at: float = 0.0
    is_left_behind: bool = False

    def charge(self, waited_s: float, now: float) -> float:
        """Add time it held a source back; returns its decayed total."""
        decay = math.exp(-(now - self.blocked_at) / STALL_DECAY_S) if self.blocked_at else 1.0
        self.blocked_s = self.blocked_s * decay + waited_s
        self.blocked_at = now
        return self.blocked_s


class Readers:
    """The subscribers of one ring."""

    def __init__(self, ring: Ring, stall_s: float = STALL_S) -> None:
        self._ring = ring
        self._all: set[Reader] = set()
        self._parked: dict[Selector, dict[Reader, None]] = {}
        self._floor = 1  # a lower bound of the slowest counted reader's cursor
        self._progress = asyncio.Event()  # a reader moved its cursor, or left
        self._stall_s = stall_s
        self._is_closed = False
        # Keep this much of the ring free for the next read: one 256 KiB read can encode to
        # several times its size (JSON escapes), and other sources publish meanwhile.
        self._spare_bytes = ring.max_bytes // 4
        self._spare_events = ring.max_events // 4
        self.left_behind = 0  # readers that stalled a waiting source for STALL_S
        self.waiting_sources = 0  # sources in wait_for_room() now

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
        """Forget a subscriber that went away; a source waiting on it may go on."""
        self._all.discard(reader)
        self._unpark(reader, reader.cursor)
        self._progress.set()

    def close(self) -> None:
        """Wake every parked reader (to see the hub closed) and every waiting source."""
        self._is_closed = True
        for group in list(self._parked.values()):
            for reader in list(group):
                self._unpark(reader, self._ring.head)
        self._progress.set()

    def moved(self, reader: Reader, cursor: int) -> None:
        """The reader has read up to `cursor`."""
        reader.cursor = cursor
        self._floor = min(self._floor, cursor)
        if cursor >= self._ring.head:  # caught up: it counts again (its held time stays)
            reader.is_left_behind = False
        self._progress.set()

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

    @property
    def read_budget_bytes(self) -> int:
        """Raw bytes a waiting source should read at a time: what one read publishes (JSON
        escapes and all) must fit in the spare part of the ring, or it could lap a reader."""
        return self._spare_bytes // 2

    def has_room(self) -> bool:
        """True if a source may publish another read's worth without lapping any reader."""
        head, tail = self._ring.head, self._ring.tail
        if not self._all or self._floor >= head:
            return True
        if tail <= self._floor and not self._is_lapping(self._floor):
            return True  # the floor is below every counted cursor: they are all fine
        # A cursor the tail already passed holds nothing back: it gets a `gap` when it reads.
        counted = [
            r.cursor for r in self._all if not r.wake and not r.is_left_behind and r.cursor >= tail
        ]
        self._floor = min(counted, default=head)
        return not any(self._is_holding_back(r) for r in self._all)

    async def wait_for_room(self) -> None:
        """Wait until has_room(); a reader that holds it back for STALL_S is left behind."""
        loop = asyncio.get_running_loop()
        self.waiting_sources += 1
        try:
            await self._wait_for_room(loop)
        finally:
            self.waiting_sources -= 1

    async def _wait_for_room(self, loop: asyncio.AbstractEventLoop) -> None:
        while not self.has_room() and not self._is_closed:
            holding = [r for r in self._all if self._is_holding_back(r)]
            self._progress.clear()
            started = loop.time()
            timeout = min(self._stall_s - r.charge(0.0, started) for r in holding)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, timeout)):
                    await self._progress.wait()
            now = loop.time()
            for reader in holding:
                if reader.charge(now - started, now) >= self._stall_s:
                    reader.is_left_behind = True
                    self.left_behind += 1

    def _is_holding_back(self, reader: Reader) -> bool:
        """True if publishing much more would lap this reader, which is keeping up."""
        return not reader.wake and not reader.is_left_behind and self._is_lapping(reader.cursor)

    def _is_lapping(self, cursor: int) -> bool:
        """True if publishing much more would lap a cursor the ring still holds."""
        ring = self._ring
        lag_bytes, lag_events = ring.lag(cursor)
        return (
            lag_bytes > ring.max_bytes - self._spare_bytes
            or lag_events > ring.max_events - self._spare_events
        )
