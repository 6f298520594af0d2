"""FileFollower: one open log file read like `tail`: backlog, new bytes, whole lines out.

It knows nothing of names, globs or rotation (the tailer does): it holds one file descriptor,
so a file renamed or deleted under it is still read to its end. What it may open is
admission.py's to say.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

from monitor.hub.lines import LogLines
from monitor.sources.admission import open_regular

READ_CHUNK_BYTES = 64 * 1024  # bytes read per turn, so a burst never holds the loop long
BACKLOG_BLOCK_BYTES = 64 * 1024
BACKLOG_SCAN_BYTES = 16 * 1024 * 1024  # backlog looks this far back at most, whatever the file
TRUNCATED = " […line truncated]"
TAIL_CHECK_BYTES = 32


@dataclass(frozen=True, slots=True)
class Position:
    """Where a follower was in a file: offset, the bytes just before it, the held partial."""

    pos: int
    seen_tail: bytes
    pending: bytes
    is_discarding: bool


@dataclass(slots=True)
class Chunk:
    """Lines read in one go from one file, and where in it they are."""

    lines: Sequence[str]  # LogLines, mostly (lines_of)
    nbytes: int = 0  # bytes read from the file for them (a flushed partial line: already counted)
    is_backlog: bool = False
    is_partial: bool = False  # the last line was flushed without its newline
    # The lines are raw[raw_at:raw_end] (each with its newline but a flushed partial one),
    # found at file offset `start`; start is None if they cannot be read again.
    start: int | None = None
    raw: bytes = b""
    raw_at: int = 0
    raw_end: int = 0
    # A line over max_line_bytes cut after the lines: its first bytes, `cut_raw`, at file
    # offset `cut_start` (the rest runs on past this read and is skipped).
    cut: str | None = None
    cut_raw: bytes = b""
    cut_start: int = 0


def decode_lines(blob: bytes, max_line_bytes: int) -> list[str]:
    """Newline-separated bytes to text lines: bad UTF-8 and NUL become U+FFFD, long lines cut."""
    return _split_text(_decode(blob), len(blob) > max_line_bytes, max_line_bytes)


def lines_of(blob: bytes, max_line_bytes: int) -> Sequence[str]:
    """decode_lines' lines, as LogLines (their JSON, hub/lines.py) where no line can be over
    the maximum and none ends in CR: the lines of a log as the server reads and publishes them."""
    text = _decode(blob)
    if "\r" not in text and _has_no_long_line(text, max_line_bytes):
        lines = LogLines.of_text(text)
        if lines is not None:
            return lines
    return _split_text(text, len(blob) > max_line_bytes, max_line_bytes)


def _has_no_long_line(text: str, most: int) -> bool:
    """True if no line of `text` is over `most` characters, by one search, not a split: such
    a line would cover every index from len - most - 1 to most, so a newline among them rules
    it out. (A read is 64 KiB after a held partial line: just over the default maximum.)"""
    n = len(text)
    return n <= most or text.find("\n", max(0, n - most - 1), most + 1) >= 0


def _decode(blob: bytes) -> str:
    text = blob.decode("utf-8", "replace")
    return text.replace("\0", "\ufffd") if "\0" in text else text


def _split_text(text: str, may_be_long: bool, max_line_bytes: int) -> list[str]:
    lines = text.split("\n")
    if "\r" in text:  # CRLF line ends (Windows-born logs): the \r is not part of the line
        lines = [ln[:-1] if ln.endswith("\r") else ln for ln in lines]
    if may_be_long:
        lines = [
            ln[:max_line_bytes] + TRUNCATED if len(ln) > max_line_bytes else ln for ln in lines
        ]
    return lines


def cut_line(blob: bytes) -> str:
    """The first bytes of a line over the maximum, as the line shown in its place."""
    return blob.decode("utf-8", "replace").replace("\0", "\ufffd") + TRUNCATED


class FileFollower:
    """Reads one file from a start offset on, in bounded chunks, splitting whole lines."""

    def __init__(self, path: str, *, max_line_bytes: int, backlog_lines: int | None) -> None:
        """Open `path`; start `backlog_lines` lines before its end, or at 0 if None."""
        self.path = path
        self.max_line_bytes = max_line_bytes
        self.fd, st = open_regular(path)
        self.key = (st.st_dev, st.st_ino)
        self.pos = 0
        self.backlog_end = 0
        self.last_data_at = time.monotonic()
        self._pending = b""
        self._pending_since = 0.0
        self._is_discarding = False  # inside a line already cut at the maximum
        self._seen_tail = b""  # the last bytes read, to notice a truncate-and-refill
        if backlog_lines is not None:
            self.pos = self._backlog_start(st.st_size, backlog_lines)
            self.backlog_end = st.st_size
            seen = min(TAIL_CHECK_BYTES, self.pos)
            self._seen_tail = os.pread(self.fd, seen, self.pos - seen)

    def close(self) -> None:
        """Release the file descriptor."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def size(self) -> int:
        """The file's current size (of the open file, wherever its name now points)."""
        return os.fstat(self.fd).st_size

    def _backlog_start(self, size: int, lines: int) -> int:
        if lines <= 0 or size == 0:
            return size
        # A file ending in a newline has an empty "line" after it: look for one more.
        wanted = lines + 1 if os.pread(self.fd, 1, size - 1) == b"\n" else lines
        pos = size
        while pos > 0 and size - pos < BACKLOG_SCAN_BYTES:
            step = min(BACKLOG_BLOCK_BYTES, pos)
            pos -= step
            block = os.pread(self.fd, step, pos)
            count = block.count(b"\n")
            if count >= wanted:
                end = len(block)
                for _ in range(wanted):
                    end = block.rfind(b"\n", 0, end)
                return pos + end + 1
            wanted -= count
        if pos > 0:
            self._is_discarding = True  # started mid-line: skip to the next whole line
        return pos

    @property
    def line_start(self) -> int:
        """Where the next line starts: what is read and not yet sent out is a partial line."""
        return self.pos - len(self._pending)

    def truncated(self) -> Position | None:
        """If the file was truncated under us (copytruncate, `: >`), restart at 0 and return
        where we were, so the rest can be sought in a copy; else None.

        A file truncated and then refilled past our offset before we looked does not shrink;
        the bytes just before our offset changing gives it away.
        """
        if not self.looks_truncated():
            return None
        was = Position(self.pos, self._seen_tail, self._pending, self._is_discarding)
        self.pos = self.backlog_end = 0
        self._pending, self._is_discarding, self._seen_tail = b"", False, b""
        return was

    def looks_truncated(self) -> bool:
        """True if the file shrank below our offset, or the bytes before it changed."""
        if self.size() < self.pos:
            return True
        tail = self._seen_tail
        return bool(tail) and os.pread(self.fd, len(tail), self.pos - len(tail)) != tail

    def continue_from(self, pos: int, seen_tail: bytes, *, is_in_cut_line: bool = False) -> None:
        """Read on from `pos` (where a previous run left off), whose preceding bytes are
        `seen_tail`: nothing there is backlog. In a line already cut at the maximum length,
        its rest is skipped."""
        self.pos, self.backlog_end = pos, 0
        self._seen_tail = seen_tail[-TAIL_CHECK_BYTES:]
        self._pending, self._is_discarding = b"", is_in_cut_line

    def resume(self, was: Position) -> bool:
        """Continue from another file's position if this file holds the same bytes there."""
        tail = was.seen_tail
        if (
            not tail
            or self.size() < was.pos
            or os.pread(self.fd, len(tail), was.pos - len(tail)) != tail
        ):
            return False
        self.pos, self._seen_tail = was.pos, tail
        self._pending, self._is_discarding = was.pending, was.is_discarding
        return True

    def read(self, limit: int = READ_CHUNK_BYTES) -> Chunk | None:
        """Lines from at most `limit` bytes of new data; None at end of file."""
        data = os.pread(self.fd, min(limit, READ_CHUNK_BYTES), self.pos)
        if not data:
            return None
        is_backlog = self.pos < self.backlog_end
        chunk = self._split(data, self.pos)
        chunk.nbytes, chunk.is_backlog = len(data), is_backlog
        self.pos += len(data)
        self._seen_tail = (self._seen_tail + data[-TAIL_CHECK_BYTES:])[-TAIL_CHECK_BYTES:]
        self.last_data_at = time.monotonic()
        return chunk

    def _split(self, data: bytes, at: int) -> Chunk:
        """Whole lines of the held partial line and `data` (read at offset `at`)."""
        start = 0
        if self._is_discarding:
            start = data.find(b"\n") + 1
            if start == 0:
                return Chunk([])
            self._is_discarding = False
        if self._pending:
            data, at = self._pending + data[start:], at + start - len(self._pending)
            start = 0
        end = data.rfind(b"\n")
        lines = lines_of(data[start:end], self.max_line_bytes) if end >= start else []
        chunk = Chunk(lines, start=at + start, raw=data, raw_at=start, raw_end=end + 1)
        if end < start:
            chunk.raw_end = start
        self._pending = data[max(end + 1, start) :]
        if len(self._pending) > self.max_line_bytes:
            # Memory stays bounded even for a huge file with no newline at all.
            chunk.cut_raw = self._pending[: self.max_line_bytes]
            chunk.cut_start = at + max(end + 1, start)
            chunk.cut = cut_line(chunk.cut_raw)
            self._pending, self._is_discarding = b"", True
        if self._pending and not self._pending_since:
            self._pending_since = time.monotonic()
        elif not self._pending:
            self._pending_since = 0.0
        return chunk

    @property
    def holds_partial_line(self) -> bool:
        """Bytes after the last newline read are held, to be flushed if no newline comes."""
        return bool(self._pending)

    def flush_due_at(self, flush_s: float) -> float | None:
        """When the held partial line is due to be flushed (monotonic), if one is held."""
        return self._pending_since + flush_s if self.holds_partial_line else None

    def flush(self) -> Chunk | None:
        """The held partial line, as a line flushed without its newline."""
        if not self._pending:
            return None
        raw = self._pending
        lines = decode_lines(raw, self.max_line_bytes)
        self._pending, self._pending_since = b"", 0.0
        start = self.pos - len(raw)
        return Chunk(lines, is_partial=True, start=start, raw=raw, raw_end=len(raw))
