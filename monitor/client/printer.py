"""What `sse-monitor tail` prints of a server's events: the backlog once, live lines, none twice
across reconnects and restarts; control characters shown, not acted on; its notes on stderr.
The connection loop is monitor.client.tail."""

from __future__ import annotations

import json
import re
import sys
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from monitor.hub.events import GAP, HELLO, LOG, RESET, parse_id
from monitor.hub.sse import SSEEvent

# Lines remembered per file, to find where we left off when a restarted server resends them.
SEEN_LINES = 256
# Characters a terminal acts on or reorders rather than shows: C0 controls but TAB (ESC starts
# every escape sequence: clear screen, cursor moves, OSC 52 writing the clipboard; CR
# overwrites a line), DEL, C1 controls (U+009B is CSI on its own), the line and paragraph
# separators, and the bidi embeddings, overrides and isolates ("Trojan Source", CVE-2021-42574).
UNSAFE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r"}
# The password of a URL's user info (scheme://user:password@host), wherever a message has one.
URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^\s/?#@:]*:)[^\s/?#@]*@", re.IGNORECASE)


def visible(text: str) -> str:
    """`text` with UNSAFE characters shown as Python string escapes: \\x1b, \\r, \\u2028."""
    return UNSAFE.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in NAMED_ESCAPES:
        return NAMED_ESCAPES[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def redact(text: str) -> str:
    """`text` with the password of any URL in it as ***: https://user:***@host."""
    return URL_PASSWORD.sub(r"\1***@", text)


def note(message: str) -> None:
    """One line on stderr: the server's words in it made visible, URL passwords redacted."""
    print(f"sse-monitor tail: {visible(redact(message))}", file=sys.stderr, flush=True)


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
    """What `tail` prints: the last --lines of the first backlog, then live lines, none twice;
    control characters as visible escapes unless `is_raw`, and --json in ASCII."""

    def __init__(
        self,
        out: TextIO,
        *,
        sources: tuple[str, ...],
        pattern: re.Pattern[str] | None,
        lines: int,
        as_json: bool,
        note: Callable[[str], None],
        is_raw: bool = False,
    ) -> None:
        self.out = out
        self.sources = sources
        self.pattern = pattern
        self.as_json = as_json
        self.is_raw = is_raw  # print lines as sent, escape sequences and all
        self.note = note
        self.budget = lines  # backlog lines still to show; the first run of the server only
        self.is_first_run = True
        self.has_prefix: bool | None = len(set(sources)) > 1 if sources else None
        self.last_id = ""
        self.log_sources: list[str] = []  # as the server's hello lists them
        self._snapshot: list[tuple[str, dict[str, Any]]] | None = None
        self._seen: dict[Key, deque[str]] = {}
        self._pending: set[Key] = set()  # files to resync with what a restarted server resends

    def on_event(self, event: SSEEvent) -> None:
        """Handle one event; log lines of a snapshot wait for end_snapshot()."""
        payload = _payload(event)
        if event.type in (HELLO, RESET):
            listed = payload.get("sources") or []
            self.log_sources = [str(s.get("name")) for s in listed if isinstance(s, dict)]
            if self.has_prefix is None:
                self.has_prefix = len(listed) != 1
            if event.type == RESET:
                self._on_reset(str(payload.get("reason", "")))
            self._snapshot = []
        elif event.type == GAP:
            lines = payload.get("lines")
            if lines != 0:  # only other events (metrics) were lost: no lines are missing
                missed = payload.get("missed")
                what = f"{lines} lines" if lines is not None else f"{missed} events"
                if lines is None and missed is None:
                    what = "an unknown number of events"
                self.note(f"{what} missed (no longer in the log files; this client fell behind)")
        elif event.type == LOG and isinstance(payload.get("lines"), list):
            if self._snapshot is not None:
                self._snapshot.append((event.id, payload))
            else:
                self._on_live(event.id, payload)
        if event.id:
            self.last_id = event.id

    def backfill_wanted(self) -> dict[str, tuple[str | None, int]]:
        """On the first run, for each source whose lines in the snapshot fall short of
        --lines: the id of its oldest event there (None: it has none) and how many more lines
        to ask for (the server's /api/logs reaches past its buffer into the files)."""
        if not self.is_first_run or self.budget <= 0 or self._snapshot is None:
            return {}
        have: dict[str, tuple[str | None, int]] = {}
        for event_id, p in self._snapshot:
            source = str(p.get("source", ""))
            oldest, count = have.get(source, (event_id, 0))
            have[source] = (oldest, count + len(p["lines"]))
        wanted = {}
        for source in self.sources or self.log_sources:
            oldest, count = have.get(source, (None, 0))
            if count < self.budget:
                wanted[source] = (oldest, self.budget - count)
        return wanted

    def add_to_snapshot(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        """Earlier log events (from /api/logs), merged into the snapshot in id order."""
        if self._snapshot is None:
            return
        merged = [*items, *self._snapshot]
        merged.sort(key=lambda item: (parse_id(item[0]) or ("", 0))[1])
        self._snapshot = merged

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
        shown = str if self.is_raw else visible
        rows = []
        for line in map(str, lines):
            if self.pattern is not None and not self.pattern.search(line):
                continue
            if self.as_json:
                row = {"source": source, "file": file, "line": line, "id": event_id}
                rows.append(json.dumps(row))  # ASCII: C1 and U+2028/9 escaped, not only C0
            elif self.has_prefix is not False:
                rows.append(f"{shown(source)}: {shown(line)}")
            else:
                rows.append(shown(line))
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
