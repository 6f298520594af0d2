"""The hub's interface, as typing Protocols: what a source needs (Publisher), what an endpoint
needs (Subscriptions), what an in-process consumer needs (Consumable), and what the exporter
reads (HubStats). Everything outside monitor/hub depends on these, never on a concrete hub;
a second hub (Redis Streams, for many hosts) implements `Hub`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from monitor.hub.events import GAP, STREAM_TYPES, Event, Frame

# Writes one frame to a client at once, never waiting; False if it cannot now (its socket is
# backed up or closing, or the frame needs the client's own task): the client then reads
# from its cursor instead.
Sink = Callable[[Frame], bool]


@dataclass(frozen=True, slots=True)
class Selector:
    """What a client asked for: event types, and log sources (None: all)."""

    types: frozenset[str] = STREAM_TYPES
    sources: frozenset[str] | None = None

    def matches(self, frame: Frame) -> bool:
        """True if the client wants this frame. Every client hears of a `gap` (an agent's,
        stored in Redis among its host's events): what it lost may be what it asked for."""
        return frame.type == GAP or (
            frame.type in self.types
            and (self.sources is None or frame.source is None or frame.source in self.sources)
        )


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a log event's lines can be read again, in its source's terms; the hub keeps it
    without looking inside. For a file: bytes start..end of the file whose (st_dev, st_ino)
    is `key` (`is_cut`: one line cut at the maximum length, its first bytes). For the
    journal: the entry with seqnum `start` of the journal whose 128-bit seqnum id is `key`,
    written at `end` (µs), and the entries that followed it. `crc` is a CRC-32 of what was
    read, `lines` how many lines it made."""

    key: tuple[int, int]
    start: int
    end: int
    crc: int
    lines: int
    is_backlog: bool = False
    is_cut: bool = False


@dataclass(frozen=True, slots=True)
class Resumed:
    """Where the previous run left a source: each file's last origin, by (st_dev, st_ino),
    and the time of the source's last recorded event (a file unchanged since was read to
    its end; one written since without a record is new)."""

    files: Mapping[tuple[int, int], Origin]
    until: float


@dataclass(frozen=True, slots=True)
class LogEvent:
    """A log event looked up in the history: its id, when its lines were read, the lines.
    Lines older than the hub's records come from the files alone: their id is a position in
    the source's files, their time unknown (None)."""

    id: str
    ts: float | None
    lines: list[str]


@dataclass(frozen=True, slots=True)
class Older:
    """Lines a source's files hold from before the hub's records, oldest first; `before`
    the position to continue from (None: the oldest file's start, or nothing older held)."""

    events: list[LogEvent]
    before: str | None


@dataclass(frozen=True, slots=True)
class LogPage:
    """Log events of one source, oldest first; `before` (and `after`) the ids to continue
    from, None where nothing further is held. `at` is the first event at or after the time
    asked for, if any."""

    events: list[LogEvent]
    before: str | None
    after: str | None = None
    at: str | None = None


class BadEventId(ValueError):
    """An event id (or a position in a source's files) the hub cannot use; the message says
    why."""


class History(Protocol):
    """A source's way to make its events again from their origins, and to read what its
    files held before the hub's records (registered with `Publisher.keep_history`)."""

    async def reread(self, origin: Origin) -> dict[str, Any] | None:
        """The event's payload again, or None if what it was read from is gone (deleted,
        rotated away, compressed, rewritten: the CRC differs)."""
        ...

    async def older(self, before: Origin | str | None, limit: int) -> Older:
        """Up to `limit` lines from before `before`: an event's origin, a position an earlier
        `Older` gave (BadEventId if it is not one of this source's, or not a line's start),
        or None for the newest line read."""
        ...


@dataclass(frozen=True, slots=True)
class HubStats:
    """The hub's own figures, for /healthz, /metrics and systemd's STATUS=."""

    subscribers: int  # clients subscribed now
    caught_up: int  # of them, those with nothing left to read (written to at publish)
    published: int  # events published in this run
    gaps: int  # times a client fell behind and got a `gap` frame
    replayed: int  # log events read again from their files for clients behind the buffer
    held_events: int  # events the replay buffer holds now
    held_bytes: int  # encoded bytes the replay buffer holds now
    consumer_drops: int  # events an in-process consumer fell too far behind to see


class Publisher(Protocol):
    """What a source needs. Publishing never waits for a client: a client that falls behind
    the hub's buffer gets log events again from their origin (the file), or a `gap`."""

    def publish(
        self,
        event_type: str,
        payload: dict[str, Any],
        source: str | None = None,
        origin: Origin | None = None,
    ) -> str:
        """Publish one event (without waiting for any client); returns its id. With an
        origin, a client that falls behind gets the event again from there."""
        ...

    def keep_history(self, source: str, history: History) -> Resumed | None:
        """How events of `source` published with an origin are made again; returns where the
        previous run of the server left the source (once: None after the first call, and
        if there was none)."""
        ...


class Subscriptions(Protocol):
    """What an endpoint needs."""

    @property
    def run_id(self) -> str:
        """This run of the hub: event ids from another run cannot be resumed."""
        ...

    def subscribe(
        self,
        selector: Selector,
        *,
        last_event_id: str | None = None,
        hello: dict[str, Any] | None = None,
        sink: Sink | None = None,
    ) -> AbstractAsyncContextManager[AsyncIterator[list[Frame]]]:
        """A client's stream: batches of frames to write, starting with a `hello` (or `reset`)
        and recent history unless it resumes from `last_event_id`; ends when the hub closes.
        With a sink, frames for a caught-up client are written by publish() itself."""
        ...

    async def state(self, selector: Selector, hello: dict[str, Any]) -> list[Frame]:
        """What a new client starts with: a `hello` frame, then recent history."""
        ...

    async def log_before(self, source: str, before_id: str | None, limit: int) -> LogPage:
        """Log events of `source` older than `before_id` (None: the newest), with up to
        `limit` lines in all, then what the source's files hold before them; BadEventId for
        an id that is not one of this hub's (nor a position the source gave)."""
        ...

    async def log_around(self, source: str, ts: float, before: int, after: int) -> LogPage:
        """Log events of `source` around the time `ts` (epoch seconds): up to `before` lines
        read before it and `after` lines from it on."""
        ...

    def latest(self, event_type: str) -> Mapping[str, dict[str, Any]]:
        """The latest payload of each key of a sticky type: `status` by source, `alert` by
        rule."""
        ...


class Consumable(Protocol):
    """What an in-process consumer (history, alert rules) needs: payloads, in order."""

    def consume(self, types: frozenset[str]) -> AbstractAsyncContextManager[AsyncIterator[Event]]:
        """The events of these types published from now on; ends when the hub closes."""
        ...


class Hub(Publisher, Subscriptions, Consumable, Protocol):
    """A whole hub, as the app composes it."""

    def stats(self) -> HubStats:
        """The hub's figures now."""
        ...

    def close(self) -> None:
        """End every subscription and consumer; publishing afterwards is harmless."""
        ...
