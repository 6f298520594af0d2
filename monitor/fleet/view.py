"""HostView: one host of the fleet as an endpoint sees a hub (`Subscriptions`), read from
its Redis keys. Its event ids are the stream's entry ids, the same on every dashboard, so a
client moved to another dashboard (or back after a restart) resumes exactly; an id Redis
no longer holds (trimmed, or Redis lost its data) is a `reset`, never a silent skip."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as redis

from monitor.fleet.keys import (
    StreamId,
    entry_frame,
    events_key,
    format_stream_id,
    parse_stream_id,
    sticky_key,
)
from monitor.fleet.taps import Tap, Taps, frame_id
from monitor.hub.events import GAP, HELLO, LOG, RESET, STICKY_KEYS, Frame
from monitor.hub.interface import BadEventId, LogEvent, LogPage, Selector, Sink
from monitor.hub.states import around_gap
from monitor.tasks import SharedRuns

RUN_ID = "redis"  # ids are Redis stream ids: one "run" for as long as Redis keeps them
READ_COUNT = 500  # entries per XRANGE while catching up, at most
READ_BYTES = 1024 * 1024  # and about this many bytes: a catch-up read is parsed whole
RECENT_ENTRIES = 2000  # entries a new client's history is picked from
RECENT_S = 1.0  # new clients within this share one read of them (and its picking)
MAX_PICKED = 32  # selectors whose picks are kept, per read
WALK_ENTRIES = 20_000  # entries one /api/logs page looks through for a source's lines


def control_frame(kind: str, sid: StreamId, payload: dict[str, Any]) -> Frame:
    """A `hello` or `reset` carrying the id the client continues from."""
    head = f"event: {kind}\nid: {sid[0]}-{sid[1]}\ndata: ".encode()
    body = json.dumps(payload, separators=(",", ":")).encode()
    return Frame(sid[1], kind, None, b"%b%b\n\n" % (head, body), len(head), str(sid[0]))


def sticky_frame(kind: str, value: bytes) -> Frame | None:
    """A host's latest status or alert as its sticky hash keeps it (`<entry id> <JSON>`),
    with the id of the entry it was; None if the value is not one of ours."""
    entry_id, _, body = value.partition(b" ")
    return entry_frame(entry_id, {b"t": kind.encode(), b"d": body})


def sticky_frames(values: Mapping[bytes, bytes]) -> list[Frame]:
    """The frames of a host's sticky hash as HGETALL gives it (b"status:app" -> `<entry id>
    <JSON>`)."""
    frames = []
    for name, value in values.items():
        kind = name.decode("utf-8", "replace").partition(":")[0]
        if kind in STICKY_KEYS and (frame := sticky_frame(kind, value)) is not None:
            frames.append(frame)
    return frames


def before(sid: StreamId) -> StreamId:
    """The id just before `sid` (one Redis may never have held)."""
    ms, n = sid
    return (ms, n - 1) if n else (ms - 1, 2**64 - 1)


def gap_frames(after: StreamId, kept: StreamId | None, sticky: list[Frame]) -> list[Frame]:
    """Events after `after` were trimmed before the client read them (how many is not
    known), up to `kept`, the first entry still held. The gap's id is just before `kept`, so
    it is newer than the client's last; resuming from it (an id Redis never held) is a
    `reset`. The host's latest statuses and alerts among what was trimmed go out again,
    in id order around the gap (see MemoryHub._gap)."""
    payload = {"missed": None, "lines": None, "after": format_stream_id(after)}
    if kept is None:  # Redis lost its data: what the tap holds next may be older than these
        return [control_frame(GAP, after, payload)]
    again = [f for f in sticky if after < frame_id(f) < kept]
    last, earlier, later = around_gap(again, before(kept), frame_id, before)
    return [*earlier, control_frame(GAP, last, payload), *later]


Picked = tuple[list[Frame], StreamId, StreamId]


@dataclass(slots=True)
class Recent:
    """A host's newest entries (newest first) and sticky values, as frames; the newest id."""

    newest: list[Frame]
    sticky: list[Frame]
    cursor: StreamId
    # What was picked of it per selector (the frames, the hello's id, the cursor), and
    # the picks under way.
    picked: dict[Selector, Picked] = field(default_factory=dict)
    picking: SharedRuns[Picked] = field(default_factory=SharedRuns)


class HostView:
    """One host's events for clients: recent ones from its tap, older ones from Redis."""

    def __init__(
        self,
        host: str,
        client: redis.Redis,
        taps: Taps,
        sticky: Callable[[], Mapping[str, bytes]],
        history_events: int,
    ) -> None:
        self.host = host
        self.client = client
        self.taps = taps
        self._sticky = sticky  # the host's sticky hash as last read: "status:app" -> JSON
        self.history_events = history_events
        self._key = events_key(host)
        self.is_closed = False
        # Entry size as last seen: a read takes READ_BYTES of entries this size. It follows
        # a larger entry at once and a smaller one by halves, so it starts high (a read of
        # 4), and a run of small entries after large ones is read in few, short reads.
        self._entry_bytes = READ_BYTES // 4
        # The newest entries and sticky values as last read for new clients, with what was
        # picked of them per selector: a crowd arriving at once (a dashboard restarted
        # behind a balancer) costs one read, not one each. Kept RECENT_S, then let go.
        self._recent: Recent | None = None
        self._reading: SharedRuns[Recent] = SharedRuns()

    @property
    def run_id(self) -> str:
        return RUN_ID

    def latest(self, event_type: str) -> Mapping[str, dict[str, Any]]:
        """The host's latest status by source, or alert by rule, as its agent last wrote."""
        prefix = f"{event_type}:"
        latest = {}
        for name, value in self._sticky().items():
            frame = sticky_frame(event_type, value) if name.startswith(prefix) else None
            if frame is not None:  # one line: JSON, if an agent of ours wrote it
                with suppress(ValueError):
                    latest[name.removeprefix(prefix)] = json.loads(frame.json)
        return latest

    async def _exists(self, sid: StreamId) -> bool:
        text = format_stream_id(sid)
        found: Any = await self.client.xrange(self._key, min=text, max=text, count=1)
        return bool(found)

    async def state(self, selector: Selector, hello: dict[str, Any]) -> list[Frame]:
        """What a new client starts with: `hello`, the host's latest statuses and alerts,
        then recent history (history_events of each type and source)."""
        return (await self._start(selector, hello, None))[0]

    async def _start(
        self, selector: Selector, hello: dict[str, Any], reason: str | None
    ) -> tuple[list[Frame], StreamId]:
        """The hello (or reset) and history, and the cursor after them. The hello's id is
        the entry just before the history's first: ids grow along the stream (a page drops
        an event whose id is not newer than the last), and resuming from it replays all
        that followed. History up to RECENT_S old is as good as new: the client catches up
        from its cursor like any other."""
        recent = self._recent or await self._reading.run(None, self._read_recent)
        done = recent.picked.get(selector)
        picked, before, cursor = done or await recent.picking.run(
            selector, lambda: self._pick(selector, recent)
        )
        kind, payload = (HELLO, hello) if reason is None else (RESET, {**hello, "reason": reason})
        return [control_frame(kind, before, payload), *picked], cursor

    async def _read_recent(self) -> Recent:
        """The host's newest RECENT_ENTRIES entries and sticky values, kept RECENT_S for
        every client that asks meanwhile (the run ends here even if they all went away)."""
        # One snapshot of both (MULTI): every sticky value is of an entry the window has
        # passed, and none newer is missed.
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hgetall(sticky_key(self.host))
            pipe.xrevrange(self._key, count=RECENT_ENTRIES)
            sticky_values, newest = await pipe.execute()
        cursor = (parse_stream_id(newest[0][0]) if newest else None) or (0, 0)
        frames = [f for entry_id, fields in newest if (f := entry_frame(entry_id, fields))]
        recent = self._recent = Recent(frames, sticky_frames(sticky_values), cursor)
        asyncio.get_running_loop().call_later(RECENT_S, self._forget, recent)
        return recent

    def _forget(self, recent: Recent) -> None:
        if self._recent is recent:
            self._recent = None

    async def _pick(self, selector: Selector, recent: Recent) -> Picked:
        """What of `recent` a new client of `selector` is shown, the hello's id, the cursor;
        kept with it for the clients after (of at most MAX_PICKED selectors: they are the
        clients' to choose)."""
        counts: dict[tuple[str, str | None], int] = {}
        picked: list[Frame] = []
        for frame in recent.newest:
            # a new client starts from the host as it is: no gap of the past in its history
            if frame.type in STICKY_KEYS or frame.type == GAP or not selector.matches(frame):
                continue
            key = (frame.type, frame.source)
            if counts.get(key, 0) < self.history_events:
                counts[key] = counts.get(key, 0) + 1
                picked.append(frame)
        picked += [f for f in recent.sticky if selector.matches(f)]
        picked.sort(key=frame_id)
        before = recent.cursor
        if picked:
            oldest = format_stream_id(frame_id(picked[0]))
            earlier: Any = await self.client.xrevrange(self._key, max=f"({oldest}", count=1)
            before = (parse_stream_id(earlier[0][0]) if earlier else None) or (0, 0)
        if len(recent.picked) >= MAX_PICKED:
            recent.picked.clear()
        done = recent.picked[selector] = (picked, before, max(recent.cursor, before))
        return done

    @asynccontextmanager
    async def subscribe(
        self,
        selector: Selector,
        *,
        last_event_id: str | None = None,
        hello: dict[str, Any] | None = None,
        sink: Sink | None = None,
    ) -> AsyncIterator[AsyncIterator[list[Frame]]]:
        """A client's stream of the host's frames. With a sink, a caught-up client is written
        to by its tap as entries arrive; the batches are then what it reads to catch up."""
        tap = await self.taps.acquire(self.host)
        batches = self._batches(tap, selector, last_event_id, hello or {}, sink)
        try:
            yield batches
        finally:
            self.taps.release(tap)
            await batches.aclose()

    async def _batches(
        self,
        tap: Tap,
        selector: Selector,
        last_event_id: str | None,
        hello: dict[str, Any],
        sink: Sink | None,
    ) -> AsyncGenerator[list[Frame], None]:
        cursor, reason = None, None
        if last_event_id is not None:
            cursor = parse_stream_id(last_event_id)
            if cursor is None:
                reason = "invalid id"
            elif cursor != (0, 0) and not await self._exists(cursor):
                cursor, reason = None, "id no longer in Redis: trimmed, or Redis lost its data"
        if cursor is None:
            frames, cursor = await self._start(selector, hello, reason)
            yield frames
        while not self.is_closed:
            seen = tap.version
            held = tap.after(cursor)
            if held is None:  # behind the tap: read Redis up to it
                frames, read_to = await self._read(cursor)
                # Redis holds nothing after the cursor (its data was lost): the tap has all
                # there is from its floor on.
                cursor = read_to if read_to != cursor else max(cursor, tap.floor)
            elif held:
                frames, cursor = held, frame_id(held[-1])
            elif sink is not None:
                direct = tap.attach(selector, sink, cursor)
                try:
                    await direct.refused
                finally:
                    tap.detach(direct)
                cursor = direct.cursor
                continue
            else:
                await tap.wait(seen)
                continue
            wanted = [f for f in frames if selector.matches(f)]
            if wanted:
                yield wanted

    async def _read(self, cursor: StreamId) -> tuple[list[Frame], StreamId]:
        """Entries after `cursor`, read from Redis. From the cursor itself: a cursor the
        budget trimmed while the client caught up is a `gap`, not a silent skip (XRANGE
        from a trimmed id starts at the first entry kept)."""
        entries: Any = await self.client.xrange(
            self._key, min=format_stream_id(cursor), count=self._read_count() + 1
        )
        self._measure(entries)
        frames = []
        if entries and parse_stream_id(entries[0][0]) == cursor:
            entries = entries[1:]
        elif cursor != (0, 0):
            kept = parse_stream_id(entries[0][0]) if entries else None
            # The hash as it is now (gaps are rare): the one the registry last read may be
            # older than the latest status trimmed.
            values: Any = await self.client.hgetall(sticky_key(self.host))
            frames += gap_frames(cursor, kept, sticky_frames(values))
        for entry_id, fields in entries:
            cursor = parse_stream_id(entry_id) or cursor
            if (frame := entry_frame(entry_id, fields)) is not None:
                frames.append(frame)
        return frames, cursor

    async def log_before(self, source: str, before_id: str | None, limit: int) -> LogPage:
        """Log events of `source` before `before_id`, newest last, up to `limit` lines, as
        far back as the host's stream holds (its agent's older files are its own). The
        page's `before` goes on from where the walk stopped: a page may be short, or empty,
        with more before it."""
        high = "+"
        if before_id is not None:
            sid = parse_stream_id(before_id)
            if sid is None:
                raise BadEventId("not an event id of this fleet")
            high = f"({format_stream_id(sid)}"
        events, stopped_at = await self._log_events(source, high, limit, backwards=True)
        events.reverse()
        return LogPage(events, stopped_at)

    async def log_around(self, source: str, ts: float, before: int, after: int) -> LogPage:
        """Log events of `source` around the time `ts`, by the stream ids' clock."""
        ms = int(ts * 1000)
        page = await self.log_before(source, f"{ms}-0", before)
        later, _ = await self._log_events(source, f"{ms}-0", after, backwards=False)
        at = later[0].id if later else None
        newest = later[-1].id if later else None
        return LogPage(page.events + later, page.before, after=newest, at=at)

    async def _log_events(
        self, source: str, bound: str, limit: int, *, backwards: bool
    ) -> tuple[list[LogEvent], str | None]:
        """Up to `limit` lines of `source`'s log events from `bound` (an XRANGE bound), in
        the order walked; and the id of the last entry walked if the walk stopped before
        the stream's end: at the limit, or after WALK_ENTRIES entries (a quiet source's
        page is short rather than a walk through the whole stream), to go on from."""
        events: list[LogEvent] = []
        lines = walked = 0
        last = None
        while lines < limit:
            if walked >= WALK_ENTRIES:
                return events, last
            count = self._read_count()
            entries: Any = await (
                self.client.xrevrange(self._key, max=bound, count=count)
                if backwards
                else self.client.xrange(self._key, min=bound, count=count)
            )
            self._measure(entries)
            if not entries:
                return events, None
            walked += len(entries)
            for entry_id, fields in entries:
                last = entry_id.decode()
                bound = f"({last}"
                frame = entry_frame(entry_id, fields)
                if frame is None or frame.type != LOG or frame.source != source:
                    continue
                text = json.loads(frame.json)["lines"]
                events.append(LogEvent(frame.id, int(frame.run_id) / 1000, text))
                lines += len(text)
                if lines >= limit:
                    break
        return events, last

    def _read_count(self) -> int:
        """Entries per read: READ_COUNT, or fewer if they are large (READ_BYTES)."""
        return max(1, min(READ_COUNT, READ_BYTES // self._entry_bytes))

    def _measure(self, entries: Any) -> None:
        largest = max((len(fields.get(b"d", b"")) for _id, fields in entries), default=0)
        self._entry_bytes = max(largest, self._entry_bytes // 2, 256)
