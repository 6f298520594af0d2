"""The SSE wire format: one event encoded as a frame, and an incremental parser of a stream
(following the HTML event-stream rules) for clients. The server never parses its own frames."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from monitor.hub.events import Frame
from monitor.hub.lines import as_fragment, as_list

try:  # 30x faster than json.dumps on a log event's lines (bench/README), same bytes
    import orjson
except ImportError:  # pragma: no cover - a platform without its wheel: the standard library
    orjson = None  # type: ignore[assignment]

LINE_END = re.compile(rb"\r\n?|\n")
# A longer line of a stream is dropped (SSEParser.dropped_lines), never held whole. The server's
# largest event is one `data:` line holding what one read of a file gave: at most
# max_line_bytes (64 KiB by default, 16 MiB at most) plus a 256 KiB read, and JSON turns a
# control byte into 6 (\u001b), so ~98 MiB at worst; a journal event is 2000 entries whose
# MESSAGE journalctl nulls over 4 KiB, ~48 MiB at worst (8 MiB of plain text).
MAX_LINE_BYTES = 128 * 1024 * 1024


def encode_frame(
    event_type: str, seq: int, run_id: str, payload: Any, source: str | None = None
) -> Frame:
    """One SSE frame: `event:`, `id:` and a one-line JSON `data:`."""
    # JSON escapes every newline, so data is always one line. The head is ASCII (our event
    # types, digits): its length in characters is in bytes.
    head = f"event: {event_type}\nid: {run_id}-{seq}\ndata: "
    data = b"%b%b\n\n" % (head.encode(), compact_json(payload))  # the body copied once
    return Frame(seq, event_type, source, data, len(head), run_id)


def compact_json(payload: Any) -> bytes:
    """`payload` as compact UTF-8 JSON. orjson writes what
    json.dumps(ensure_ascii=False, separators=(",", ":")) would; what it refuses (a lone
    surrogate from a journal's JSON, an integer over 64 bits, a key that is not a string)
    goes the standard library's way, where backslashreplace makes a lone surrogate a JSON
    \\uXXXX escape instead of raising. LogLines (a log event's lines) go as their JSON."""
    if orjson is not None:
        try:
            return orjson.dumps(payload, default=as_fragment)
        except (TypeError, orjson.JSONEncodeError):
            pass
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=as_list)
    return body.encode("utf-8", "backslashreplace")


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
    """Feed bytes in any chunking; get whole events out. Counts comments (heartbeats) and
    lines dropped for being over `max_line_bytes` (with the rest of their event)."""

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self.max_line_bytes = max_line_bytes
        # The line so far, as it came: joined once when it ends, so feeding is linear in bytes.
        self._parts: list[bytes] = []
        self._size = 0
        self._is_after_cr = False  # the last chunk ended in \r: a \n next is the same line end
        self._is_dropping = False  # inside a line over max_line_bytes: skip to its end
        self._is_broken = False  # the event lost a line: dispatch nothing at its blank line
        self._data: list[str] = []
        self._type = ""
        self.last_id = ""
        self.retry_ms: int | None = None
        self.comments = 0
        self.dropped_lines = 0

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Parse what `chunk` completes; keep any partial line for the next call."""
        if not chunk:
            return []
        pos = 1 if self._is_after_cr and chunk.startswith(b"\n") else 0
        events: list[SSEEvent] = []
        for match in LINE_END.finditer(chunk, pos):
            event = self._end_line(chunk[pos : match.start()])
            pos = match.end()
            if event is not None:
                events.append(event)
        self._is_after_cr = chunk.endswith(b"\r")
        self._keep(chunk[pos:])
        return events

    def _keep(self, part: bytes) -> None:
        if self._is_dropping or not part:
            return
        self._size += len(part)
        if self._size > self.max_line_bytes:
            self._drop()
        else:
            self._parts.append(part)

    def _drop(self) -> None:
        self._parts, self._size = [], 0
        self._is_dropping = self._is_broken = True
        self.dropped_lines += 1

    def _end_line(self, last: bytes) -> SSEEvent | None:
        self._keep(last)
        if self._is_dropping:
            self._is_dropping = False
            return None
        line = b"".join(self._parts).decode("utf-8", "replace")
        self._parts, self._size = [], 0
        return self._line(line)

    def _line(self, line: str) -> SSEEvent | None:
        if not line:
            return self._dispatch()
        if self._is_broken:
            return None
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
        if not self._data or self._is_broken:
            self._data, self._type, self._is_broken = [], "", False
            return None
        event = SSEEvent(self._type or "message", self.last_id, "\n".join(self._data))
        self._data, self._type = [], ""
        return event
