"""Event types, event ids and the SSE wire format of one event."""

from __future__ import annotations

import json
from typing import Any

# Published by sources; a client chooses among these with ?types=.
METRICS = "metrics"
LOG = "log"
ALERT = "alert"
STATUS = "status"
STREAM_TYPES = frozenset({METRICS, LOG, ALERT, STATUS})
MAX_LINES_PER_EVENT = 2000  # a `log` event carries at most this many lines

# Written by the stream itself to one client; never published, never filtered out.
HELLO = "hello"
RESET = "reset"
GAP = "gap"


def format_id(run_id: str, seq: int) -> str:
    """The id of event `seq` of run `run_id`: `<run-epoch-ms>-<sequence>`."""
    return f"{run_id}-{seq}"


def parse_id(text: str) -> tuple[str, int] | None:
    """Split an event id into (run id, sequence); None if it is not one of ours."""
    run_id, sep, seq = text.strip().rpartition("-")
    if not sep or not run_id.isdigit() or not seq.isdigit() or len(seq) > 18:
        return None
    return run_id, int(seq)


def encode_frame(event_type: str, event_id: str, payload: Any) -> bytes:
    """One SSE frame: `event:`, `id:` and a one-line JSON `data:`."""
    # json.dumps escapes every newline, so data is always one line. backslashreplace turns
    # a lone surrogate into a JSON \\uXXXX escape instead of raising.
    data = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    text = f"event: {event_type}\nid: {event_id}\ndata: {data}\n\n"
    return text.encode("utf-8", "backslashreplace")
