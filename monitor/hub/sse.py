"""The SSE wire format: one event encoded as a frame, and an incremental parser of a stream
(following the HTML event-stream rules) for clients. The server never parses its own frames."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from monitor.hub.events import Frame

LINE_END = re.compile(rb"\r\n|\r|\n")


def encode_frame(
    event_type: str, seq: int, run_id: str, payload: Any, source: str | None = None
) -> Frame:
    """One SSE frame: `event:`, `id:` and a one-line JSON `data:`."""
    # json.dumps escapes every newline, so data is always one line. backslashreplace turns
    # a lone surrogate into a JSON \\uXXXX escape instead of raising.
    head = f"event: {event_type}\nid: {run_id}-{seq}\ndata: "
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    data = f"{head}{body}\n\n".encode("utf-8", "backslashreplace")
    return Frame(seq, event_type, source, data, len(head.encode()), run_id)


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event: its type, the last event id at dispatch, and its data."""

    type: str
    id: str
    data: str

    def json(self) -> Any:
        """The data parsed as JSON."""
        return json.loads(self.data)


class SSEParser:
    """Feed bytes in any chunking; get whole events out. Counts comments (heartbeats)."""

    def __init__(self) -> None:
        self._buf = b""
        self._data: list[str] = []
        self._type = ""
        self.last_id = ""
        self.retry_ms: int | None = None
        self.comments = 0

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Parse what `chunk` completes; keep any partial line for the next call."""
        buf = self._buf + chunk
        events: list[SSEEvent] = []
        pos = 0
        for match in LINE_END.finditer(buf):
            if match.group() == b"\r" and match.end() == len(buf):
                break  # maybe the first half of \r\n: wait for the next chunk
            event = self._line(buf[pos : match.start()].decode("utf-8", "replace"))
            pos = match.end()
            if event is not None:
                events.append(event)
        self._buf = buf[pos:]
        return events

    def _line(self, line: str) -> SSEEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            self.comments += 1
            return None
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._type = value
        elif field == "id" and "\0" not in value:
            self.last_id = value
        elif field == "retry" and value.isdigit():
            self.retry_ms = int(value)
        return None

    def _dispatch(self) -> SSEEvent | None:
        if not self._data:
            self._type = ""
            return None
        event = SSEEvent(self._type or "message", self.last_id, "\n".join(self._data))
        self._data, self._type = [], ""
        return event
