"""Event types, event ids, and the two forms an event takes: a Frame (encoded once, for
clients) and an Event (the payload, for in-process consumers)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# Published by sources; a client chooses among these with ?types=.
METRICS = "metrics"
LOG = "log"
ALERT = "alert"
STATUS = "status"
STREAM_TYPES = frozenset({METRICS, LOG, ALERT, STATUS})
MAX_LINES_PER_EVENT = 2000  # a `log` event carries at most this many lines
# Event types whose latest event per key is always part of a new client's state.
STICKY_KEYS = {STATUS: "source", ALERT: "rule"}

# Written by the stream itself to one client; never published, never filtered out.
HELLO = "hello"
RESET = "reset"
GAP = "gap"


def format_id(run_id: str, seq: int) -> str:
    """The id of event `seq` of run `run_id`: `<run-epoch-ms>-<sequence>`."""
    return f"{run_id}-{seq}"


ID_RE = re.compile(r"([0-9]{1,20})-([0-9]{1,18})")  # ASCII digits: str.isdigit() takes "²"


def parse_id(text: str) -> tuple[str, int] | None:
    """Split an event id into (run id, sequence); None if it is not one of ours."""
    match = ID_RE.fullmatch(text.strip())
    return (match[1], int(match[2])) if match else None


@dataclass(slots=True)
class Frame:
    """One event encoded once as an SSE frame; its payload's JSON is kept addressable, so an
    endpoint that needs the payload (or JSON to splice) never parses SSE."""

    seq: int
    type: str
    source: str | None
    data: bytes  # `event:`, `id:`, `data: <json>`, blank line
    json_at: int  # data[json_at:-2] is the payload's JSON
    run_id: str

    @property
    def id(self) -> str:
        """The event id, as the frame's `id:` line carries it."""
        return format_id(self.run_id, self.seq)

    @property
    def json(self) -> bytes:
        """The payload as one line of JSON."""
        return self.data[self.json_at : -2]


@dataclass(frozen=True, slots=True)
class Event:
    """One published event as an in-process consumer (history, alert rules) sees it."""

    type: str
    id: str
    source: str | None
    payload: dict[str, Any]
