"""EventHub: event ids, one bounded ring of encoded frames, and the cursors clients read it by.

Sources publish; every client is only a cursor (an int) into the ring, so memory is bounded by
the ring whatever the clients do. A source that can wait (a tailer: the file is its buffer)
asks has_room()/wait_for_room() before reading on, so a burst never laps a client that keeps
up. The interface a distributed backend must offer is small: publish(), resolve() an id to a
cursor, read() from a cursor, wait() for news, close()."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from monitor.events import (
    ALERT,
    GAP,
    HELLO,
    RESET,
    STATUS,
    STREAM_TYPES,
    encode_frame,
    format_id,
    parse_id,
)

Observer = Callable[[str, dict[str, Any], "str | None"], None]
# Writes one encoded frame to a client at once, never waiting; False if it cannot now (its
# socket is backed up or closing): the client then reads from its cursor instead.
Sink = Callable[[bytes], bool]
# Event types whose latest event per key is always part of a new client's state.
STICKY_KEYS = {STATUS: "source", ALERT: "rule"}

# One read hands a client at most this much (plus one frame), so a client that stops
# reading holds at most one such chunk in its socket's buffer.
READ_CHUNK_BYTES = 256 * 1024
# A reader that holds a waiting source back this long in all (without catching up) is left
# behind: it gets a `gap` rather than stopping every source for everyone.
STALL_S = 5.0


@dataclass(slots=True)
class Frame:
    """One published event, encoded once."""

    seq: int
    type: str
    source: str | None
    data: bytes
    end: int  # bytes published in this run up to and including this frame


@dataclass(slots=True, eq=False)
class Reader:
    """One subscriber's cursor, and how long it has held waiting sources back."""

    cursor: int
    selector: Selector
    sink: Sink | None = None
    # Set while the reader is caught up and parked: publish() writes to its sink directly.
    wake: asyncio.Future[None] | None = None
    blocked_s: float = 0.0
    is_left_behind: bool = False


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


class UnknownEventId(Exception):
    """A Last-Event-ID the hub cannot resume from; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class EventHub:
    """In-process hub: publish never waits for a client; clients read by cursor."""

    def __init__(
        self,
        *,
        max_events: int = 10_000,
        max_bytes: int = 4 * 1024 * 1024,
        history_events: int = 300,
        run_id: str | None = None,
        stall_s: float = STALL_S,
    ) -> None:
        # The run id is the start time in ms: ids stay unique and increasing across restarts.
        self.run_id = run_id or str(time.time_ns() // 1_000_000)
        self.history_events = history_events
        self._slots: list[Frame | None] = [None] * max_events
        self._max_bytes = max_bytes
        self._head = 1  # seq of the next event; ids start at <run>-1, <run>-0 means "before all"
        self._tail = 1  # seq of the oldest event held
        self._bytes = 0
        self._total = 0  # bytes ever published: Frame.end is measured on it
        self._news = asyncio.Event()
        self._progress = asyncio.Event()  # a reader moved its cursor
        self._readers: set[Reader] = set()
        self._parked: dict[Selector, dict[Reader, None]] = {}
        self._floor = 1  # a lower bound of the slowest counted reader's cursor
        self._stall_s = stall_s
        # Keep this much of the ring free for the next read: one 256 KiB read can encode to
        # several times its size (JSON escapes), and other sources publish meanwhile.
        self._spare_bytes = max_bytes // 4
        self._spare_events = max_events // 4
        self._is_closed = False
        # The latest event of each source (status) and each alert rule (alert), kept outside
        # the ring: a new client must learn them even if they last changed long ago.
        self._sticky: dict[tuple[str, str], tuple[Frame, dict[str, Any]]] = {}
        self._observers: list[Observer] = []
        self._recent_cache: tuple[int, Selector, list[Frame]] | None = None
        self.gaps = 0
        self.left_behind = 0  # readers that stalled a waiting source for STALL_S

    @property
    def subscribers(self) -> int:
        """Clients subscribed now."""
        return len(self._readers)

    @property
    def published(self) -> int:
        """Events published in this run (sequence numbers start at 1)."""
        return self._head - 1

    @property
    def held_bytes(self) -> int:
        """Bytes of encoded frames the ring holds now."""
        return self._bytes

    @property
    def held_events(self) -> int:
        """Number of events the ring holds now."""
        return self._head - self._tail

    @property
    def is_closed(self) -> bool:
        """True once close() was called."""
        return self._is_closed

    def statuses(self) -> Mapping[str, dict[str, Any]]:
        """The latest status payload of each source, by source name."""
        return {key: p for (kind, key), (_, p) in self._sticky.items() if kind == STATUS}

    def alerts(self) -> Mapping[str, dict[str, Any]]:
        """The latest alert payload of each rule, by rule name."""
        return {key: p for (kind, key), (_, p) in self._sticky.items() if kind == ALERT}

    def add_observer(self, observer: Observer) -> None:
        """Call `observer(type, payload, source)` on every publish, before it returns.

        For in-process consumers (history, alert rules) that need the payload, not the
        bytes; an observer must be quick and must not raise.
        """
        self._observers.append(observer)

    def publish(self, event_type: str, payload: dict[str, Any], source: str | None = None) -> str:
        """Encode the event once, append it to the ring, wake readers; returns its id."""
        seq = self._head
        event_id = format_id(self.run_id, seq)
        data = encode_frame(event_type, event_id, payload)
        self._total += len(data)
        frame = Frame(seq, event_type, source, data, self._total)
        if seq - self._tail >= len(self._slots):
            self._evict_oldest()
        self._slots[seq % len(self._slots)] = frame
        self._head = seq + 1
        self._bytes += len(frame.data)
        while self._bytes > self._max_bytes and self._tail < seq:
            self._evict_oldest()
        sticky_key = STICKY_KEYS.get(event_type)
        if sticky_key:
            self._sticky[(event_type, str(payload[sticky_key]))] = (frame, payload)
        self._news.set()
        self._news.clear()
        if self._parked:
            self._fan_out(frame)
        for observer in self._observers:
            observer(event_type, payload, source)
        return event_id

    def _fan_out(self, frame: Frame) -> None:
        """Write the frame to every parked reader that wants it, now: no task switch per
        client. A reader whose sink refuses is woken to read the frame from the ring."""
        refused = []
        for selector, group in self._parked.items():
            if selector.matches(frame):
                for reader in group:
                    assert reader.sink is not None
                    try:
                        if not reader.sink(frame.data):
                            refused.append(reader)
                    # A source must not die of one client: its task meets the error and ends.
                    except Exception:  # noqa: BLE001
                        refused.append(reader)
        for reader in refused:
            self._unpark(reader, frame.seq)

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

    async def _park(self, reader: Reader) -> int:
        """Hand a caught-up reader to publish(); returns the cursor to read from when woken."""
        reader.wake = asyncio.get_running_loop().create_future()
        self._parked.setdefault(reader.selector, {})[reader] = None
        try:
            await reader.wake
        finally:
            self._unpark(reader, reader.cursor)
        return reader.cursor

    def _evict_oldest(self) -> None:
        i = self._tail % len(self._slots)
        frame = self._slots[i]
        assert frame is not None
        self._bytes -= len(frame.data)
        self._slots[i] = None
        self._tail += 1

    def _is_holding_back(self, reader: Reader) -> bool:
        """True if publishing much more would lap this reader, which is keeping up."""
        return not reader.wake and not reader.is_left_behind and self._is_lapping(reader.cursor)

    def _is_lapping(self, cursor: int) -> bool:
        """True if publishing much more would lap a cursor the ring still holds."""
        if cursor < self._tail or cursor >= self._head:
            return False
        frame = self._slots[cursor % len(self._slots)]
        assert frame is not None
        lag_bytes = self._total - (frame.end - len(frame.data))
        return (
            lag_bytes > self._max_bytes - self._spare_bytes
            or self._head - cursor > len(self._slots) - self._spare_events
        )

    @property
    def read_budget_bytes(self) -> int:
        """Raw bytes a waiting source should read at a time: what one read publishes (JSON
        escapes and all) must fit in the spare part of the ring, or it could lap a reader."""
        return self._spare_bytes // 2

    def has_room(self) -> bool:
        """True if a source may publish another read's worth without lapping any reader."""
        if not self._readers or self._floor >= self._head:
            return True
        if self._tail <= self._floor and not self._is_lapping(self._floor):
            return True  # the floor is below every counted cursor: they are all fine
        # A cursor the tail already passed holds nothing back: it gets a `gap` when it reads.
        counted = [
            r.cursor
            for r in self._readers
            if not r.wake and not r.is_left_behind and r.cursor >= self._tail
        ]
        self._floor = min(counted, default=self._head)
        return not any(self._is_holding_back(r) for r in self._readers)

    async def wait_for_room(self) -> None:
        """Wait until has_room(); a reader that holds it back for STALL_S is left behind."""
        loop = asyncio.get_running_loop()
        while not self.has_room() and not self._is_closed:
            holding = [r for r in self._readers if self._is_holding_back(r)]
            self._progress.clear()
            started = loop.time()
            timeout = min(self._stall_s - r.blocked_s for r in holding)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, timeout)):
                    await self._progress.wait()
            waited = loop.time() - started
            for reader in holding:
                reader.blocked_s += waited
                if reader.blocked_s >= self._stall_s:
                    reader.is_left_behind = True
                    self.left_behind += 1

    def _moved(self, reader: Reader, cursor: int) -> None:
        reader.cursor = cursor
        self._floor = min(self._floor, cursor)
        if cursor >= self._head:  # caught up: it counts again, with a fresh allowance
            reader.blocked_s, reader.is_left_behind = 0.0, False
        self._progress.set()

    def resolve(self, event_id: str) -> int:
        """The cursor just after `event_id`; raises UnknownEventId if it can't be honoured."""
        parsed = parse_id(event_id)
        if parsed is None:
            raise UnknownEventId("invalid id")
        run_id, seq = parsed
        if run_id != self.run_id:
            raise UnknownEventId("id from another run of the server")
        if seq >= self._head:
            raise UnknownEventId("id not issued yet")
        if seq + 1 < self._tail:
            raise UnknownEventId("id too old: events after it were dropped")
        return seq + 1

    def read(self, cursor: int, selector: Selector) -> tuple[bytes, int]:
        """Frames from `cursor` on that the selector wants, joined; and the next cursor.

        A cursor the ring's tail has passed gets a `gap` frame first and moves to the tail.
        """
        parts = []
        if cursor < self._tail:
            missed = self._tail - cursor
            cursor = self._tail
            self.gaps += 1
            gap = {"missed": missed, "resume_id": format_id(self.run_id, cursor - 1)}
            parts.append(encode_frame(GAP, format_id(self.run_id, cursor - 1), gap))
        slots, n, head = self._slots, len(self._slots), self._head
        size = 0
        while cursor < head and size < READ_CHUNK_BYTES:
            frame = slots[cursor % n]
            cursor += 1
            if frame is not None and selector.matches(frame):
                parts.append(frame.data)
                size += len(frame.data)
        return b"".join(parts), cursor

    def recent(self, selector: Selector) -> list[Frame]:
        """Recent history for a new client: the last `history_events` frames of each
        (type, source), plus every source's latest status and every rule's latest alert;
        in publish order."""
        cached = self._recent_cache
        if cached and cached[0] == self._head and cached[1] == selector:
            return cached[2]
        counts: dict[tuple[str, str | None], int] = {}
        picked: list[Frame] = []
        for seq in range(self._head - 1, self._tail - 1, -1):
            frame = self._slots[seq % len(self._slots)]
            if frame is None or frame.type in STICKY_KEYS or not selector.matches(frame):
                continue
            key = (frame.type, frame.source)
            if counts.get(key, 0) < self.history_events:
                counts[key] = counts.get(key, 0) + 1
                picked.append(frame)
        picked.extend(f for f, _ in self._sticky.values() if selector.matches(f))
        picked.sort(key=lambda f: f.seq)
        self._recent_cache = (self._head, selector, picked)
        return picked

    def snapshot(self, selector: Selector, hello: dict[str, Any], reason: str | None) -> bytes:
        """A `hello` (or, with a reason, `reset`) frame followed by recent history."""
        frames = self.recent(selector)
        first_seq = frames[0].seq if frames else self._head
        # The control frame's id sits just before the history, so resuming from it replays
        # everything that followed.
        control_id = format_id(self.run_id, first_seq - 1)
        if reason is None:
            head = encode_frame(HELLO, control_id, hello)
        else:
            head = encode_frame(RESET, control_id, {**hello, "reason": reason})
        return head + b"".join(f.data for f in frames)

    async def wait(self, cursor: int) -> None:
        """Return once an event at or after `cursor` exists, or the hub is closed."""
        while cursor >= self._head and not self._is_closed:
            await self._news.wait()

    def close(self) -> None:
        """End every subscription; publishing afterwards is harmless but unread."""
        self._is_closed = True
        self._news.set()
        for group in list(self._parked.values()):
            for reader in list(group):
                self._unpark(reader, self._head)
        self._progress.set()

    @asynccontextmanager
    async def subscribe(
        self,
        selector: Selector,
        *,
        last_event_id: str | None = None,
        hello: dict[str, Any] | None = None,
        sink: Sink | None = None,
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        """A client's stream of ready-to-write chunks; ends when the hub closes.

        With a sink, a caught-up client is written to by publish() itself; the chunks are
        then only what it reads to catch up (the snapshot, replay, after a refusal)."""
        reader = Reader(self._head, selector, sink)
        self._readers.add(reader)
        chunks = self._chunks(reader, selector, last_event_id, hello or {})
        try:
            yield chunks
        finally:
            self._readers.discard(reader)
            self._unpark(reader, reader.cursor)
            self._progress.set()
            await chunks.aclose()

    async def _chunks(
        self, reader: Reader, selector: Selector, last_event_id: str | None, hello: dict[str, Any]
    ) -> AsyncGenerator[bytes, None]:
        reason = None
        try:
            cursor = self.resolve(last_event_id) if last_event_id is not None else None
        except UnknownEventId as exc:
            cursor, reason = None, exc.reason
        if cursor is None:
            # Take the cursor before yielding: events published while the client writes the
            # snapshot must follow it, not be skipped.
            cursor = self._head
            yield self.snapshot(selector, hello, reason)
        self._moved(reader, cursor)
        while not self._is_closed:
            data, cursor = self.read(cursor, selector)
            self._moved(reader, cursor)
            if data:
                yield data
            elif reader.sink is not None:
                cursor = await self._park(reader)
            else:
                await self.wait(cursor)
