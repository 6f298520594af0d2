"""Ring: the hub's store of encoded frames by sequence number, bounded by count and by bytes;
and the Selector by which a client picks frames.

It knows nothing of clients: the hub keeps their cursors (sequence numbers) and asks the ring
what it holds from a cursor on, and how far a cursor is behind.
"""

from __future__ import annotations

from dataclasses import dataclass

from monitor.hub.events import STREAM_TYPES


@dataclass(slots=True)
class Frame:
    """One published event, encoded once."""

    seq: int
    type: str
    source: str | None
    data: bytes
    end: int  # bytes published in this run up to and including this frame


@dataclass(frozen=True, slots=True)
class Selector:
    """What a client asked for: event types, and log sources (None: all)."""

    types: frozenset[str] = STREAM_TYPES
    sources: frozenset[str] | None = None

    def matches(self, frame: Frame) -> bool:
        """True if the client wants this frame."""
        return frame.type in self.types and (
            self.sources is None or frame.source is None or frame.source in self.sources
        )


class Ring:
    """Frames `tail`..`head - 1`; appending past either bound evicts the oldest."""

    def __init__(self, max_events: int, max_bytes: int) -> None:
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.head = 1  # seq of the next frame; seq 0 means "before all"
        self.tail = 1  # seq of the oldest frame held
        self.held_bytes = 0
        self._slots: list[Frame | None] = [None] * max_events
        self._total = 0  # bytes ever appended: Frame.end is measured on it

    def append(self, event_type: str, source: str | None, data: bytes) -> Frame:
        """Hold `data` as frame `head`; the newest frame is kept even if alone over max_bytes."""
        seq = self.head
        self._total += len(data)
        frame = Frame(seq, event_type, source, data, self._total)
        if seq - self.tail >= self.max_events:
            self._evict_oldest()
        self._slots[seq % self.max_events] = frame
        self.head = seq + 1
        self.held_bytes += len(data)
        while self.held_bytes > self.max_bytes and self.tail < seq:
            self._evict_oldest()
        return frame

    def get(self, seq: int) -> Frame | None:
        """Frame `seq`, or None if it is not held (evicted, or not yet published)."""
        if self.tail <= seq < self.head:
            return self._slots[seq % self.max_events]
        return None

    def lag(self, cursor: int) -> tuple[int, int]:
        """Bytes and frames from `cursor` to the head; (0, 0) for a cursor not in the ring."""
        frame = self.get(cursor)
        if frame is None:
            return 0, 0
        return self._total - (frame.end - len(frame.data)), self.head - cursor

    def _evict_oldest(self) -> None:
        i = self.tail % self.max_events
        frame = self._slots[i]
        assert frame is not None
        self.held_bytes -= len(frame.data)
        self._slots[i] = None
        self.tail += 1
