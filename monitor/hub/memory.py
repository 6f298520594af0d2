"""MemoryHub: the embedded hub. Event ids, subscriptions, replay and recent history over one
bounded ring of frames; in-process consumers over bounded feeds.

Sources publish; each event is encoded once into the ring (ring.py); every client is only a
cursor into it (readers.py), so memory is bounded by the ring whatever the clients do.
It implements monitor.hub.interface.Hub.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from monitor.hub.events import (
    GAP,
    HELLO,
    LOG,
    RESET,
    STICKY_KEYS,
    Event,
    Frame,
    format_id,
    parse_id,
)
from monitor.hub.feeds import MAX_PENDING, Feed
from monitor.hub.interface import (
    BadEventId,
    History,
    HubStats,
    LogEvent,
    LogPage,
    Origin,
    Resumed,
    Selector,
    Sink,
)
from monitor.hub.positions import DEFAULT_CAPACITY, PositionLog, Record
from monitor.hub.readers import Reader, Readers
from monitor.hub.ring import Ring
from monitor.hub.sse import encode_frame
from monitor.hub.states import LatestStates, around_gap
from monitor.state import StateDir

# One read hands a client at most this much (plus one frame), so a client that stops
# reading holds at most one such chunk in its socket's buffer.
READ_CHUNK_BYTES = 256 * 1024
# A client behind the ring is caught up from the position log this many records at a time.
REPLAY_RECORDS = 4096
REPLAY_YIELD_BYTES = 32 * 1024  # made again between two turns of the loop, at most (about)


@dataclass(slots=True)
class Walk:
    """A walk through a source's records: the log events found, where it stopped, and the
    last record of the source it passed (readable again or not)."""

    events: list[LogEvent]
    stopped: int
    last: Record | None = None
    last_readable: bool = False


def seq_of(frame: Frame) -> int:
    return frame.seq


class UnknownEventId(Exception):
    """A Last-Event-ID the hub cannot resume from; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class MemoryHub:
    """In-process hub: publish never waits for a client; clients read by cursor."""

    def __init__(
        self,
        *,
        max_events: int = 10_000,
        max_bytes: int = 4 * 1024 * 1024,
        history_events: int = 300,
        run_id: str | None = None,
        positions: int = DEFAULT_CAPACITY,
        state: StateDir | None = None,
    ) -> None:
        # Where every event came from: a client behind the ring reads log lines again from
        # their files through the source's reread. In a state directory, it outlives us.
        self._positions = PositionLog(positions, state)
        # The run id is the first start's time in ms; with a state directory a restarted
        # server goes on with it after the last recorded seq, so clients resume across the
        # restart. Ids are <run>-<seq>, from <run>-1; <run>-0 means "before all".
        self.run_id = run_id or self._positions.run_id or str(time.time_ns() // 1_000_000)
        self._positions.start(self.run_id)
        self.history_events = history_events
        self._ring = Ring(max_events, max_bytes, first=self._positions.head)
        self._readers = Readers(self._ring)
        self._feeds: list[Feed] = []
        self._is_closed = False
        # The latest event of each source (status) and each alert rule (alert), kept outside
        # the ring: a new client must learn them even if they last changed long ago.
        self._sticky = LatestStates(self.run_id, state)
        self._recent_cache: tuple[int, Selector, list[Frame]] | None = None
        self._gaps = 0
        self._histories: dict[str, History] = {}
        self.replayed = 0  # log events made again from their files for clients behind the ring

    def stats(self) -> HubStats:
        """The hub's figures now."""
        ring = self._ring
        return HubStats(
            subscribers=len(self._readers),
            caught_up=self._readers.caught_up,
            published=ring.head - 1,
            gaps=self._gaps,
            replayed=self.replayed,
            held_events=ring.head - ring.tail,
            held_bytes=ring.held_bytes,
            consumer_drops=sum(f.dropped for f in self._feeds),
        )

    def latest(self, event_type: str) -> Mapping[str, dict[str, Any]]:
        """The latest payload of each key of a sticky type (status by source, alert by rule)."""
        return self._sticky.latest(event_type)

    def publish(
        self,
        event_type: str,
        payload: dict[str, Any],
        source: str | None = None,
        origin: Origin | None = None,
    ) -> str:
        """Encode the event once, record where it came from, append it to the ring, write or
        wake readers, feed consumers; returns its id."""
        seq = self._ring.head
        frame = encode_frame(event_type, seq, self.run_id, payload, source)
        lines = len(payload.get("lines", ())) if event_type == LOG else 0
        self._positions.write(seq, event_type, source, origin, time.time(), lines)
        self._ring.append(frame)
        if event_type in STICKY_KEYS:
            self._sticky.keep(frame, payload)
        self._readers.fan_out(frame)
        event_id = frame.id
        event = None
        for feed in self._feeds:
            if event_type in feed.types:
                event = event or Event(event_type, event_id, source, payload)
                feed.put(event)
        return event_id

    def keep_history(self, source: str, history: History) -> Resumed | None:
        """How events of `source` published with an origin are made again; returns where the
        previous run of the server left the source, once (a source restarted by its
        supervisor goes on from its own reading, not the previous process's)."""
        self._histories[source] = history
        return self._positions.resumed.pop(source, None)

    def feed(self, types: frozenset[str], max_pending: int = MAX_PENDING) -> Feed:
        """A consumer's feed of the events of these types published from now on."""
        feed = Feed(types, max_pending)
        if self._is_closed:
            feed.close()
        self._feeds.append(feed)
        return feed

    @asynccontextmanager
    async def consume(self, types: frozenset[str]) -> AsyncIterator[AsyncIterator[Event]]:
        """The events of these types published from now on; ends when the hub closes."""
        feed = self.feed(types)
        try:
            yield aiter(feed)
        finally:
            self._feeds.remove(feed)

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
        if seq + 1 < self._positions.tail:
            raise UnknownEventId("id too old: events after it were dropped")
        return seq + 1

    async def read(self, cursor: int, selector: Selector) -> tuple[list[Frame], int]:
        """Frames from `cursor` on that the selector wants; and the next cursor. A cursor
        the ring's tail has passed is caught up from the position log first (_replay)."""
        ring = self._ring
        frames: list[Frame] = []
        if cursor < ring.tail:
            frames, cursor = await self._replay(cursor, selector)
            if cursor < ring.tail:
                return frames, cursor
        size, head = sum(len(f.data) for f in frames), ring.head
        while cursor < head and size < READ_CHUNK_BYTES:
            frame = ring.get(cursor)
            cursor += 1
            if frame is not None and selector.matches(frame):
                frames.append(frame)
                size += len(frame.data)
        return frames, cursor

    async def _replay(self, cursor: int, selector: Selector) -> tuple[list[Frame], int]:
        """For a cursor the ring has passed: the log events it wants made again from their
        files, in order, up to a chunk's worth. A `gap` stands for what cannot be: lines whose
        bytes are gone from the file, other events (metrics, statuses) the ring dropped, and
        events whose record is gone too; it says how many events and lines."""
        frames: list[Frame] = []
        end = min(self._ring.tail, cursor + REPLAY_RECORDS)
        if cursor < self._positions.tail:
            # Lapped by the position log too: which events they were, of which types and
            # sources, and how many lines, is not known.
            self._gap(frames, selector, cursor, self._positions.tail, events=None, lines=None)
            return frames, self._positions.tail
        size = yielded = 0
        lost_from, lost_events = 0, 0
        lost_lines: int | None = 0  # None once a lost event's lines are not known
        for seq, record in self._records(range(cursor, end)):
            cursor = seq + 1
            # A record overwritten meanwhile is an event of unknown type: lost, as far as
            # the client can tell.
            if record is not None and not (
                record.type in selector.types
                and (selector.sources is None or record.source in (None, *selector.sources))
            ):
                continue
            if record is None:
                lost_from, lost_events, lost_lines = lost_from or cursor - 1, lost_events + 1, None
                continue
            payload = None
            if record.type == LOG and record.origin is not None:
                history = self._histories.get(record.source or "")
                payload = await history.reread(record.origin) if history else None
            if payload is None:
                lost_from, lost_events = lost_from or record.seq, lost_events + 1
                lost_lines = None if lost_lines is None else lost_lines + record.lines
                continue
            if lost_events:
                self._gap(
                    frames, selector, lost_from, record.seq, events=lost_events, lines=lost_lines
                )
                lost_from, lost_events, lost_lines = 0, 0, 0
            frame = encode_frame(LOG, record.seq, self.run_id, payload, record.source)
            frames.append(frame)
            self.replayed += 1
            size += len(frame.data)
            if size >= READ_CHUNK_BYTES:
                break
            if size >= yielded + REPLAY_YIELD_BYTES:
                # Decoding and encoding lines again costs ~10 µs per KiB: let sources and
                # caught-up clients run between parts, so a catch-up never delays them long.
                yielded = size
                await asyncio.sleep(0)
        if lost_events:
            self._gap(frames, selector, lost_from, cursor, events=lost_events, lines=lost_lines)
        return frames, cursor

    def _records(self, seqs: range) -> Iterator[tuple[int, Record | None]]:
        """The records of `seqs` (held seqs, walked in the range's order, either way), read
        a few first, then more and more: a catch-up or a page often takes only a few events,
        and unpacking thousands of records for them held the loop for milliseconds."""
        done, step = 0, 64
        while done < len(seqs):
            part = seqs[done : done + step]
            low = min(part[0], part[-1])
            records = self._positions.read(low, low + len(part))
            for seq in part:
                yield seq, records[seq - low] if seq - low < len(records) else None
            done, step = done + len(part), min(step * 2, REPLAY_RECORDS)

    async def _log_payload(self, record: Record) -> dict[str, Any] | None:
        """A recorded log event's payload: from the ring while it holds the frame, else read
        again from its file; None if neither can give it."""
        frame = self._ring.get(record.seq)
        if frame is not None:
            payload: dict[str, Any] = json.loads(frame.json)
            return payload
        history = self._histories.get(record.source or "")
        return await history.reread(record.origin) if history and record.origin else None

    async def _log_events(self, source: str, seqs: range, limit: int) -> Walk:
        """Log events of `source` among `seqs` (a range of held seqs, walked in its order)
        until `limit` lines; where the walk stopped (seqs.stop if it went through)."""
        walk = Walk([], seqs.stop)
        lines = 0
        for seq, record in self._records(seqs):
            if record is None or record.type != LOG or record.source != source:
                continue
            payload = await self._log_payload(record)
            walk.last, walk.last_readable = record, payload is not None
            if payload is None:
                continue  # no longer in its file
            lines_read = list(payload["lines"])  # LogLines from a file: a list to answer with
            walk.events.append(LogEvent(format_id(self.run_id, seq), record.ts, lines_read))
            lines += len(payload["lines"])
            if lines >= limit:
                walk.stopped = seq + seqs.step
                return walk
        return walk

    async def log_before(self, source: str, before_id: str | None, limit: int) -> LogPage:
        """Log events of `source` older than `before_id` (None: the newest), with up to
        `limit` lines in all, oldest first, then what its files hold from before the
        records; BadEventId for an id that is neither ours nor a position its files gave."""
        history = self._histories.get(source)
        if before_id is not None and parse_id(before_id) is None and history is not None:
            older = await history.older(before_id, limit)  # a position from an earlier page
            return LogPage(older.events, older.before)
        before = self._ring.head if before_id is None else self._seq_of(before_id)
        tail = self._positions.tail
        walk = await self._log_events(source, range(before - 1, tail - 1, -1), limit)
        walk.events.reverse()
        if walk.stopped != tail - 1:
            return LogPage(walk.events, walk.events[0].id)
        if walk.last is None and before_id is not None:
            # No record of the source before the id: its files go on before the id's own.
            walk.last = self._record_of(before_id)
            if walk.last is None:  # not "no record at all": the newest lines would come
                raise BadEventId("an id too old: its record is no longer held")
            walk.last_readable = walk.last.source == source
        events, position = await self._earlier(source, walk, limit)
        return LogPage([*events, *walk.events], position)

    async def _earlier(
        self, source: str, walk: Walk, limit: int
    ) -> tuple[list[LogEvent], str | None]:
        """Past the oldest record (a walk back that went through): what the source's files
        hold before the last event it found, up to `limit` lines with the walk's; and the
        position to continue from. Nothing if that event's lines are gone from its file
        (what came before went with it), or the source has no files."""
        history = self._histories.get(source)
        remaining = limit - sum(len(e.lines) for e in walk.events)
        if history is None or remaining <= 0:
            return [], walk.events[0].id if walk.events else None
        if walk.last is None:
            start = None  # no record of the source at all: before its newest line
        elif walk.last_readable and walk.last.origin is not None:
            start = walk.last.origin
        else:
            return [], None
        older = await history.older(start, remaining)
        return older.events, older.before

    async def log_around(self, source: str, ts: float, before: int, after: int) -> LogPage:
        """Log events of `source` around `ts`: up to `before` lines read before it (its
        files' earlier lines if the records end first) and `after` lines from it on, oldest
        first."""
        start = self._seq_at(ts)
        tail, head = self._positions.tail, self._ring.head
        older = await self._log_events(source, range(start - 1, tail - 1, -1), before)
        newer = await self._log_events(source, range(start, head), after)
        older.events.reverse()
        earlier: list[LogEvent] = []
        position = older.events[0].id if older.events else None
        if older.stopped == tail - 1 and before:
            if older.last is None and newer.events:
                # Nothing recorded before ts: the lines before the first event after it are
                # in the files alone. (Without any event, there is no place to start from.)
                older.last = self._record_of(newer.events[0].id)
                older.last_readable = older.last is not None
            if older.last is not None:
                earlier, position = await self._earlier(source, older, before)
        return LogPage(
            [*earlier, *older.events, *newer.events],
            position,
            newer.events[-1].id if newer.events and newer.stopped != head else None,
            newer.events[0].id if newer.events else None,
        )

    def _record_of(self, event_id: str) -> Record | None:
        return next(iter(self._positions.read(seq := self._seq_of(event_id), seq + 1)), None)

    def _seq_of(self, event_id: str) -> int:
        parsed = parse_id(event_id)
        if parsed is None:
            raise BadEventId("not an event id (RUN-SEQ, ASCII digits)")
        run_id, seq = parsed
        if run_id != self.run_id:
            raise BadEventId("an id from another run of the server")
        if seq >= self._ring.head:
            raise BadEventId("an id not issued yet")
        return seq

    def _seq_at(self, ts: float) -> int:
        """The first seq recorded at or after `ts` (records are in time order); the head if
        none is."""
        lo, hi = self._positions.tail, self._ring.head
        while lo < hi:
            mid = (lo + hi) // 2
            record = self._positions.read(mid, mid + 1)
            if record and record[0] is not None and record[0].ts < ts:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def _gap(
        self,
        frames: list[Frame],
        selector: Selector,
        first: int,
        after: int,
        *,
        events: int | None,
        lines: int | None = 0,
    ) -> None:
        """A `gap` frame for events first..after-1, with the id of the last of them; None
        for a count not known. The latest status of a source or alert of a rule that was
        among them is not lost: it goes out again (with its own id, in order, the gap's id
        among them), so a client never shows a state that changed while it fell behind."""
        again = self._sticky.among(first, after, selector)
        if events is not None:
            events -= len(again)
            if events <= 0:
                frames += sorted(again, key=seq_of)
                return
        last, earlier, later = around_gap(again, after - 1, seq_of, lambda seq: seq - 1)
        self._gaps += 1
        gap = {"missed": events, "lines": lines, "resume_id": format_id(self.run_id, last)}
        frames += [*earlier, encode_frame(GAP, last, self.run_id, gap), *later]

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
        picked.extend(f for f in self._sticky.frames() if selector.matches(f))
        picked.sort(key=lambda f: f.seq)
        self._recent_cache = (ring.head, selector, picked)
        return picked

    def snapshot(
        self, selector: Selector, hello: dict[str, Any], reason: str | None = None
    ) -> list[Frame]:
        """A `hello` (or, with a reason, `reset`) frame followed by recent history."""
        frames = self.recent(selector)
        # The control frame's id sits just before the history, so resuming from it replays
        # everything that followed.
        control_seq = (frames[0].seq if frames else self._ring.head) - 1
        if reason is None:
            head = encode_frame(HELLO, control_seq, self.run_id, hello)
        else:
            head = encode_frame(RESET, control_seq, self.run_id, {**hello, "reason": reason})
        return [head, *frames]

    async def state(self, selector: Selector, hello: dict[str, Any]) -> list[Frame]:
        """What a new client starts with (the snapshot, for /api/state)."""
        return self.snapshot(selector, hello)

    def close(self) -> None:
        """End every subscription and feed; publishing afterwards is harmless but unread."""
        self._is_closed = True
        self._readers.close()
        self._sticky.close()
        self._positions.close()
        for feed in self._feeds:
            feed.close()

    @asynccontextmanager
    async def subscribe(
        self,
        selector: Selector,
        *,
        last_event_id: str | None = None,
        hello: dict[str, Any] | None = None,
        sink: Sink | None = None,
    ) -> AsyncIterator[AsyncIterator[list[Frame]]]:
        """A client's stream of frames to write; ends when the hub closes.

        With a sink, a caught-up client is written to by publish() itself; the batches are
        then only what it reads to catch up (the snapshot, replay, after a refusal). Without
        one, it is woken by the next frame it wants."""
        reader = Reader(self._ring.head, selector, sink)
        self._readers.add(reader)
        batches = self._batches(reader, selector, last_event_id, hello or {})
        try:
            yield batches
        finally:
            self._readers.remove(reader)
            await batches.aclose()

    async def _batches(
        self, reader: Reader, selector: Selector, last_event_id: str | None, hello: dict[str, Any]
    ) -> AsyncGenerator[list[Frame], None]:
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
            frames, cursor = await self.read(cursor, selector)
            self._readers.moved(reader, cursor)
            if frames:
                yield frames
            elif cursor < self._ring.head:
                # Behind the ring, a replay found nothing this client wants in its records
                # so far: look on (letting others run), never park while behind.
                await asyncio.sleep(0)
            else:
                cursor = await self._readers.park(reader)
