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
class HubStats:
    """The hub's own figures, for /healthz, /metrics and systemd's STATUS=."""

    subscribers: int  # clients subscribed now
    caught_up: int  # of them, those with nothing left to read (written to at publish)
    waiting_sources: int  # sources waiting now for a client that keeps up to read on
    published: int  # events published in this run
    gaps: int  # times a client fell behind and got a `gap` frame
    left_behind: int  # times a client held waiting sources back too long and was left behind
    held_events: int  # events the replay buffer holds now
    held_bytes: int  # encoded bytes the replay buffer holds now
    consumer_drops: int  # events an in-process consumer fell too far behind to see


class Publisher(Protocol):
    """What a source needs. A source whose input keeps what it has not read yet (a file, a
    pipe) asks for room before reading on, so a burst never laps a client that keeps up."""

    def publish(self, event_type: str, payload: dict[str, Any], source: str | None = None) -> str:
        """Publish one event (without waiting for any client); returns its id."""
        ...

    def has_room(self) -> bool:
        """True if another read's worth may be published now."""
        ...

    async def wait_for_room(self) -> None:
        """Wait until has_room() (or the hub gives up on the client that holds it back)."""
        ...

    @property
    def read_budget_bytes(self) -> int:
        """Raw bytes a waiting source should read at a time."""
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
