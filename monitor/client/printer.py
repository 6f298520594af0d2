"""Reading an SSE stream (an incremental parser that follows the HTML event-stream rules), and
what `sse-monitor tail` prints from it; the command itself is monitor.tailclient."""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import aiohttp

from monitor.hub.events import GAP, HELLO, LOG, RESET

LINE_END = re.compile(rb"\r\n|\r|\n")
# Lines remembered per file, to find where we left off when a restarted server resends them.
SEEN_LINES = 256


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


async def iter_events(
    response: aiohttp.ClientResponse, parser: SSEParser | None = None
) -> AsyncIterator[SSEEvent]:
    """The events of an open `text/event-stream` response, as they arrive."""
    parser = parser or SSEParser()
    async for chunk in response.content.iter_any():
        for event in parser.feed(chunk):
            yield event


async def iter_chunk_events(
    response: aiohttp.ClientResponse, parser: SSEParser | None = None
) -> AsyncIterator[tuple[list[SSEEvent], bool]]:
    """The events of each read, and whether the read ended an HTTP chunk (one server write)."""
    parser = parser or SSEParser()
    async for chunk, is_chunk_end in response.content.iter_chunks():
        yield parser.feed(chunk), is_chunk_end


def resume_point(seen: Sequence[str], lines: Sequence[str]) -> int | None:
    """How many of `lines` were seen already: the largest j such that lines[:j] ends with as
    much of `seen` as fits; None if they do not overlap at all."""
    if not seen:
        return 0
    for j in range(len(lines), 0, -1):
        if lines[j - 1] != seen[-1]:
            continue
        k = min(j, len(seen))
        if list(lines[j - k : j]) == list(seen)[-k:]:
            return j
    return None


Key = tuple[str, str]  # (source, file)


class TailPrinter:
    """What `tail` prints: the last --lines of the first backlog, then live lines, none twice."""

    def __init__(
        self,
        out: TextIO,
        *,
        sources: tuple[str, ...],
        pattern: re.Pattern[str] | None,
        lines: int,
        as_json: bool,
        note: Callable[[str], None],
    ) -> None:
        self.out = out
        self.sources = sources
        self.pattern = pattern
        self.as_json = as_json
        self.note = note
        self.budget = lines  # backlog lines still to show; the first run of the server only
        self.is_first_run = True
        self.has_prefix: bool | None = len(set(sources)) > 1 if sources else None
        self.last_id = ""
        self._snapshot: list[tuple[str, dict[str, Any]]] | None = None
        self._seen: dict[Key, deque[str]] = {}
        self._pending: set[Key] = set()  # files to resync with what a restarted server resends

    def on_event(self, event: SSEEvent) -> None:
        """Handle one event; log lines of a snapshot wait for end_snapshot()."""
        payload = _payload(event)
        if event.type in (HELLO, RESET):
            if self.has_prefix is None:
                self.has_prefix = len(payload.get("sources") or []) != 1
            if event.type == RESET:
                self._on_reset(str(payload.get("reason", "")))
            self._snapshot = []
        elif event.type == GAP:
            missed = payload.get("missed", "some")
            self.note(f"{missed} events missed (this client fell behind the server's buffer)")
        elif event.type == LOG and isinstance(payload.get("lines"), list):
            if self._snapshot is not None:
                self._snapshot.append((event.id, payload))
            else:
                self._on_live(event.id, payload)
        if event.id:
            self.last_id = event.id

    def end_snapshot(self) -> None:
        """The history after a hello or reset is complete: print what is due of it."""
        items, self._snapshot = self._snapshot, None
        if not items:
            return
        if self.is_first_run:
            rows = [row for event_id, p in items for row in self._rows(event_id, p, p["lines"])]
            rows = rows[len(rows) - self.budget :] if self.budget else []
            self.budget -= len(rows)
        else:
            by_key: dict[Key, list[str]] = {}
            for _, p in items:
                by_key.setdefault(_key(p), []).extend(p["lines"])
            skips = {key: self._resync(key, lines) for key, lines in by_key.items()}
            rows = []
            for event_id, p in items:
                n = min(skips[_key(p)], len(p["lines"]))
                skips[_key(p)] -= n
                rows += self._rows(event_id, p, p["lines"][n:])
        for _, p in items:
            self._remember(_key(p), p["lines"])
        self._write(rows)

    def _on_reset(self, reason: str) -> None:
        if reason == "id from another run of the server":
            self.note("server restarted; continuing from its current state")
        else:
            self.note(f"server could not resume ({reason}); continuing from its current state")
        self.is_first_run = False
        self._pending = {key for key, seen in self._seen.items() if seen}

    def _on_live(self, event_id: str, payload: dict[str, Any]) -> None:
        key, lines, is_backlog = _key(payload), payload["lines"], bool(payload.get("backlog"))
        if key in self._pending:
            # A restarted server sends each file's backlog first; a non-backlog line is new.
            lines = lines[self._resync(key, lines) :] if is_backlog else lines
            self._pending.discard(key)
        rows = self._rows(event_id, payload, lines)
        if is_backlog and self.is_first_run:
            rows = rows[len(rows) - self.budget :] if self.budget else []
            self.budget -= len(rows)
        self._remember(key, payload["lines"])
        self._write(rows)

    def _resync(self, key: Key, lines: list[str]) -> int:
        """How many of a pending file's resent `lines` were printed (or skipped) before."""
        if key not in self._pending:
            return 0
        self._pending.discard(key)
        skip = resume_point(self._seen[key], lines)
        if skip is None:
            self.note(f"{key[0]}: lines of {key[1]} written while disconnected may be missing")
            return 0
        return skip

    def _remember(self, key: Key, lines: list[str]) -> None:
        self._seen.setdefault(key, deque(maxlen=SEEN_LINES)).extend(lines)

    def _rows(self, event_id: str, payload: dict[str, Any], lines: list[str]) -> list[str]:
        source, file = _key(payload)
        rows = []
        for line in map(str, lines):
            if self.pattern is not None and not self.pattern.search(line):
                continue
            if self.as_json:
                row = {"source": source, "file": file, "line": line, "id": event_id}
                rows.append(json.dumps(row, ensure_ascii=False))
            elif self.has_prefix is not False:
                rows.append(f"{source}: {line}")
            else:
                rows.append(line)
        return rows

    def _write(self, rows: list[str]) -> None:
        if rows:
            self.out.write("\n".join(rows) + "\n")
            self.out.flush()  # whole lines only, and at once: pipes see each event promptly


def _payload(event: SSEEvent) -> dict[str, Any]:
    try:
        payload = event.json()
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}


def _key(payload: dict[str, Any]) -> Key:
    return str(payload.get("source", "")), str(payload.get("file", ""))
