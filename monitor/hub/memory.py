"""EventHub: event ids, subscriptions, replay and history over one bounded ring of frames.

Sources publish; each event is encoded once into the ring (ring.py); every client is only a
cursor into it (readers.py), so memory is bounded by the ring whatever the clients do. A
source that can wait asks has_room()/wait_for_room() before reading on. The interface a
distributed backend must offer is small: publish(), resolve() an id to a cursor, read() from
a cursor, a wake-up (or a write) for a caught-up reader, close()."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from monitor.hub.events import (
    ALERT,
    GAP,
    HELLO,
    RESET,
    STATUS,
    encode_frame,
    format_id,
    parse_id,
)
from monitor.hub.readers import STALL_S, Reader, Readers, Sink
from monitor.hub.ring import Frame, Ring, Selector

Observer = Callable[[str, dict[str, Any], "str | None"], None]
# Event types whose latest event per key is always part of a new client's state.
STICKY_KEYS = {STATUS: "source", ALERT: "rule"}

# One read hands a client at most this much (plus one frame), so a client that stops
# reading holds at most one such chunk in its socket's buffer.
READ_CHUNK_BYTES = 256 * 1024
__all__ = ["STALL_S", "EventHub", "Frame", "Selector", "Sink", "UnknownEventId"]


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
        # Ids are <run>-<seq>, from <run>-1; <run>-0 means "before all".
        self._ring = Ring(max_events, max_bytes)
        self._readers = Readers(self._ring, stall_s)
        self._is_closed = False
        # The latest event of each source (status) and each alert rule (alert), kept outside
        # the ring: a new client must learn them even if they last changed long ago.
        self._sticky: dict[tuple[str, str], tuple[Frame, dict[str, Any]]] = {}
        self._observers: list[Observer] = []
        self._recent_cache: tuple[int, Selector, list[Frame]] | None = None
        self.gaps = 0

    @property
    def subscribers(self) -> int:
        """Clients subscribed now."""
        return len(self._readers)

    @property
    def published(self) -> int:
        """Events published in this run (sequence numbers start at 1)."""
        return self._ring.head - 1

    @property
    def held_bytes(self) -> int:
        """Bytes of encoded frames the ring holds now."""
        return self._ring.held_bytes

    @property
    def held_events(self) -> int:
        """Number of events the ring holds now."""
        return self._ring.head - self._ring.tail

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
        event_id = format_id(self.run_id, self._ring.head)
        frame = self._ring.append(event_type, source, encode_frame(event_type, event_id, payload))
        sticky_key = STICKY_KEYS.get(event_type)
        if sticky_key:
            self._sticky[(event_type, str(payload[sticky_key]))] = (frame, payload)
        self._readers.fan_out(frame)
        for observer in self._observers:
            observer(event_type, payload, source)
        return event_id

    @property
    def left_behind(self) -> int:
        """Times a reader stalled a waiting source for STALL_S and was left behind."""
        return self._readers.left_behind

    @property
    def read_budget_bytes(self) -> int:
        """Raw bytes a waiting source should read at a time (see Readers)."""
        return self._readers.read_budget_bytes

    def has_room(self) -> bool:
        """True if a source may publish another read's worth without lapping any reader."""
        return self._readers.has_room()

    async def wait_for_room(self) -> None:
        """Wait until has_room(); a reader that holds it back for STALL_S is left behind."""
        await self._readers.wait_for_room()

    def resolve(self, event_id: str) -> int:
        """The cursor just after `event_id`; raises UnknownEventId if it can't be honoured."""
        parsed = parse_id(event_id)
        if parsed is None:
            raise UnknownEventId("invalid id")
        run_id, seq = parsed
        if run_id != self.run_id:
            raise UnknownEventId("id from another run of the server")
        if seq >= self._ring.head:
            raise UnknownEventId("id not issued yet")
        if seq + 1 < self._ring.tail:
            raise UnknownEventId("id too old: events after it were dropped")
        return seq + 1

    def read(self, cursor: int, selector: Selector) -> tuple[bytes, int]:
        """Frames from `cursor` on that the selector wants, joined; and the next cursor.

        A cursor the ring's tail has passed gets a `gap` frame first and moves to the tail.
        """
        parts = []
        ring = self._ring
        if cursor < ring.tail:
            missed = ring.tail - cursor
            cursor = ring.tail
            self.gaps += 1
            gap = {"missed": missed, "resume_id": format_id(self.run_id, cursor - 1)}
            parts.append(encode_frame(GAP, format_id(self.run_id, cursor - 1), gap))
        size, head = 0, ring.head
        while cursor < head and size < READ_CHUNK_BYTES:
            frame = ring.get(cursor)
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
        ring = self._ring
        if cached and cached[0] == ring.head and cached[1] == selector:
            return cached[2]
        counts: dict[tuple[str, str | None], int] = {}
        picked: list[Frame] = []
        for seq in range(ring.head - 1, ring.tail - 1, -1):
            frame = ring.get(seq)
            if frame is None or frame.type in STICKY_KEYS or not selector.matches(frame):
                continue
            key = (frame.type, frame.source)
            if counts.get(key, 0) < self.history_events:
                counts[key] = counts.get(key, 0) + 1
                picked.append(frame)
        picked.extend(f for f, _ in self._sticky.values() if selector.matches(f))
        picked.sort(key=lambda f: f.seq)
        self._recent_cache = (ring.head, selector, picked)
        return picked

    def snapshot(self, selector: Selector, hello: dict[str, Any], reason: str | None) -> bytes:
        """A `hello` (or, with a reason, `reset`) frame followed by recent history."""
        frames = self.recent(selector)
        first_seq = frames[0].seq if frames else self._ring.head
        # The control frame's id sits just before the history, so resuming from it replays
        # everything that followed.
        control_id = format_id(self.run_id, first_seq - 1)
        if reason is None:
            head = encode_frame(HELLO, control_id, hello)
        else:
            head = encode_frame(RESET, control_id, {**hello, "reason": reason})
        return head + b"".join(f.data for f in frames)

    def close(self) -> None:
        """End every subscription; publishing afterwards is harmless but unread."""
        self._is_closed = True
        self._readers.close()

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
        then only what it reads to catch up (the snapshot, replay, after a refusal). Without
        one, it is woken by the next frame it wants."""
        reader = Reader(self._ring.head, selector, sink)
        self._readers.add(reader)
        chunks = self._chunks(reader, selector, last_event_id, hello or {})
        try:
            yield chunks
        finally:
            self._readers.remove(reader)
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
            cursor = self._ring.head
            yield self.snapshot(selector, hello, reason)
        self._readers.moved(reader, cursor)
        while not self._is_closed:
            data, cursor = self.read(cursor, selector)
            self._readers.moved(reader, cursor)
            if data:
                yield data
            else:
                cursor = await self._readers.park(reader)
