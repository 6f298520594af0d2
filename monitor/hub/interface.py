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

from monitor.hub.events import STREAM_TYPES, Event, Frame

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
        """True if the client wants this frame."""
        return frame.type in self.types and (
            self.sources is None or frame.source is None or frame.source in self.sources
        )


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a log event's lines can be read again: bytes start..end of the file whose (st_dev,
    st_ino) is `key`, which held `lines` lines with this CRC-32 when they were read."""

    key: tuple[int, int]
    start: int
    end: int
    crc: int
    lines: int
    is_backlog: bool = False


@dataclass(frozen=True, slots=True)
class Resumed:
    """Where the previous run left a source: each file's last origin, by (st_dev, st_ino),
    and the time of the source's last recorded event (a file unchanged since was read to
    its end; one written since without a record is new)."""

    files: Mapping[tuple[int, int], Origin]
    until: float


# A source's way to make an event again from its origin: the payload, or None if the bytes
# are gone (the file deleted, rotated away, compressed, or rewritten: the CRC differs).
Reread = Callable[[Origin], "dict[str, Any] | None"]


@dataclass(frozen=True, slots=True)
class LogEvent:
    """A log event looked up in the history: its id, when its lines were read, the lines."""

    id: str
    ts: float
    lines: list[str]


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
    """An event id the hub cannot use; the message says why."""


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

    def keep_history(self, source: str, reread: Reread) -> Resumed | None:
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

    def snapshot(self, selector: Selector, hello: dict[str, Any]) -> list[Frame]:
        """What a new client starts with: a `hello` frame, then recent history."""
        ...

    def log_before(self, source: str, before_id: str | None, limit: int) -> LogPage:
        """Log events of `source` older than `before_id` (None: the newest), with up to
        `limit` lines in all; BadEventId for an id that is not one of this hub's."""
        ...

    def log_around(self, source: str, ts: float, before: int, after: int) -> LogPage:
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
