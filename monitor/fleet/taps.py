"""Taps: the live end of each watched host's events stream, as this dashboard follows it.

A tap holds the frames of the entries after `floor`, every one of them, up to a bound; its
clients read from it, and one whose cursor is older than the floor (it fell behind, or it
resumes from further back) reads Redis with XRANGE until it reaches the tap: exact either
way, with no per-client connection. A tap lives while someone watches its host.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Any

import redis.asyncio as redis

from monitor.fleet.follower import Entries, StreamFollower
from monitor.fleet.keys import StreamId, entry_frame, events_key, format_stream_id, host_of
from monitor.fleet.keys import parse_stream_id as parse
from monitor.hub.events import Frame
from monitor.hub.interface import Selector, Sink
from monitor.tasks import SharedRuns

MAX_FRAMES = 2000  # per tap; a client further behind reads Redis
MAX_BYTES = 4 * 1024 * 1024


def frame_id(frame: Frame) -> StreamId:
    """The stream id a frame of ours carries (run_id is the id's milliseconds)."""
    return int(frame.run_id), frame.seq


@dataclass(eq=False, slots=True)
class Direct:
    """A caught-up client the tap writes to itself, through its sink, as entries arrive (no
    task switch per client per event); when the sink refuses, the client's own task takes
    over from `cursor`."""

    selector: Selector
    sink: Sink
    cursor: StreamId
    refused: asyncio.Future[None]


class Tap:
    """Recent frames of one events stream, contiguous after `floor`."""

    def __init__(self, host: str, floor: StreamId) -> None:
        self.host = host
        self.floor = floor  # every entry after this is held, or was evicted (floor moves up)
        self.newest = floor
        self.frames: deque[Frame] = deque()
        self._bytes = 0
        self.watchers = 0
        self.version = 0  # entries arrived so far (batches); wait() waits for a change
        self._arrived: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.direct: set[Direct] = set()

    def add(self, entries: Entries) -> None:
        """Entries the follower read, in order."""
        for entry_id, fields in entries:
            frame = entry_frame(entry_id, fields)
            sid = parse(entry_id)
            if sid is None or sid <= self.newest:
                continue
            self.newest = sid
            if frame is None:
                continue  # not ours: skipped, its id passed
            self.frames.append(frame)
            self._bytes += len(frame.data)
            if self.direct:
                self._write(frame, sid)
        while self.frames and (len(self.frames) > MAX_FRAMES or self._bytes > MAX_BYTES):
            old = self.frames.popleft()
            self._bytes -= len(old.data)
            self.floor = frame_id(old)
        self.version += 1
        arrived, self._arrived = self._arrived, asyncio.get_running_loop().create_future()
        arrived.set_result(None)

    def _write(self, frame: Frame, sid: StreamId) -> None:
        for direct in list(self.direct):
            if sid <= direct.cursor:
                continue  # it read this far from Redis before the follower did: had it
            if direct.selector.matches(frame) and not direct.sink(frame):
                self.detach(direct)
            else:
                direct.cursor = sid

    def attach(self, selector: Selector, sink: Sink, cursor: StreamId) -> Direct:
        """A client with nothing left to read, written to from now on by add()."""
        refused = asyncio.get_running_loop().create_future()
        direct = Direct(selector, sink, cursor, refused)
        self.direct.add(direct)
        return direct

    def detach(self, direct: Direct) -> None:
        """Back to its own task (its sink refused, the client left, or the tap closes)."""
        self.direct.discard(direct)
        if not direct.refused.done():
            direct.refused.set_result(None)

    def after(self, cursor: StreamId) -> list[Frame] | None:
        """The frames after `cursor`; None if some of them are no longer held."""
        if cursor < self.floor:
            return None
        frames = self.frames
        if not frames or frame_id(frames[-1]) <= cursor:
            return []
        # Clients are mostly caught up: look from the end.
        i = len(frames)
        while i > 0 and frame_id(frames[i - 1]) > cursor:
            i -= 1
        return [frames[j] for j in range(i, len(frames))]

    async def wait(self, seen: int) -> None:
        """Until entries arrive after `version` was `seen`."""
        if self.version == seen:
            await asyncio.shield(self._arrived)


class Taps:
    """A tap per watched host, fed by one follower of their events streams."""

    def __init__(self, client: redis.Redis, follower_client: redis.Redis) -> None:
        self.client = client  # shared with requests: the follower's own is always in a read
        self.follower = StreamFollower(follower_client, self._on_entries)
        self._taps: dict[str, Tap] = {}
        self._starting: SharedRuns[StreamId] = SharedRuns()  # taps' floors being read

    async def acquire(self, host: str) -> Tap:
        """The host's tap, started if nobody watched it yet (clients arriving together
        wait for one read of where it starts)."""
        tap = self._taps.get(host)
        if tap is None:
            floor = await self._starting.run(host, lambda: self._newest(host))
            tap = self._taps.get(host)  # another client may have started it meanwhile
            if tap is None:
                tap = self._taps[host] = Tap(host, floor or (0, 0))
                self.follower.follow(events_key(host), format_stream_id(tap.floor))
        tap.watchers += 1
        return tap

    async def _newest(self, host: str) -> StreamId:
        newest: Any = await self.client.xrevrange(events_key(host), count=1)
        return (parse(newest[0][0]) if newest else None) or (0, 0)

    def release(self, tap: Tap) -> None:
        """One watcher fewer; the last one stops the tap."""
        tap.watchers -= 1
        if tap.watchers == 0 and self._taps.get(tap.host) is tap:
            del self._taps[tap.host]
            self.follower.drop(events_key(tap.host))

    def is_watched(self, host: str) -> bool:
        """Someone streams this host's events."""
        return host in self._taps

    def close(self) -> None:
        """Wake every client of every tap (its view is closed: it ends)."""
        for tap in self._taps.values():
            for direct in list(tap.direct):
                tap.detach(direct)
            tap.add([])

    def _on_entries(self, key: str, entries: Entries) -> None:
        host = host_of(key.removesuffix(":events") + ":metrics")
        tap = self._taps.get(host) if host else None
        if tap is not None:
            tap.add(entries)
