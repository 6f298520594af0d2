"""Ring: the in-memory hub's store of encoded frames by sequence number, bounded by count and
by bytes.

It knows nothing of clients: the hub keeps their cursors (sequence numbers) and asks the ring
what it holds from a cursor on, and how far a cursor is behind.
"""

from __future__ import annotations

from array import array

from monitor.hub.events import Frame


class Ring:
    """Frames `tail`..`head - 1`; appending past either bound evicts the oldest."""

    def __init__(self, max_events: int, max_bytes: int, first: int = 1) -> None:
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.head = first  # seq of the next frame; seq 0 means "before all"
        self.tail = first  # seq of the oldest frame held
        self.held_bytes = 0
        self._slots: list[Frame | None] = [None] * max_events
        self._total = 0  # bytes ever appended
        # Where each held frame starts in that count: machine integers in one array, not an
        # int object per frame (at 10,000 frames that is 80 KB instead of 400 KB).
        self._starts = array("q", [0]) * max_events

    def append(self, frame: Frame) -> None:
        """Hold `frame` (encoded as number `head`); the newest frame is kept even if alone over
        max_bytes."""
        seq, data = self.head, frame.data
        assert frame.seq == seq
        if seq - self.tail >= self.max_events:
            self._evict_oldest()
        self._slots[seq % self.max_events] = frame
        self._starts[seq % self.max_events] = self._total
        self._total += len(data)
        self.head = seq + 1
        self.held_bytes += len(data)
        while self.held_bytes > self.max_bytes and self.tail < seq:
            self._evict_oldest()

    def get(self, seq: int) -> Frame | None:
        """Frame `seq`, or None if it is not held (evicted, or not yet published)."""
        if self.tail <= seq < self.head:
            return self._slots[seq % self.max_events]
        return None

    def lag(self, cursor: int) -> tuple[int, int]:
        """Bytes and frames from `cursor` to the head; (0, 0) for a cursor not in the ring."""
        if not self.tail <= cursor < self.head:
            return 0, 0
        return self._total - self._starts[cursor % self.max_events], self.head - cursor

    def _evict_oldest(self) -> None:
        i = self.tail % self.max_events
        frame = self._slots[i]
        assert frame is not None
        self.held_bytes -= len(frame.data)
        self._slots[i] = None
        self.tail += 1
