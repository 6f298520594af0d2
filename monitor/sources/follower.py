"""FileFollower: one open log file read like `tail`: backlog, new bytes, whole lines out.

It knows nothing of names, globs or rotation (the tailer does): it holds one file descriptor,
so a file renamed or deleted under it is still read to its end. What may be opened is checked
here too: never a kernel pseudo-file, never a glob's symlink out of its directory, never more
descriptors than half the limit.
"""

from __future__ import annotations

import errno
import functools
import os
import resource
import stat
import time
from dataclasses import dataclass

READ_CHUNK_BYTES = 256 * 1024  # bytes read per turn, so a burst never holds the loop long
BACKLOG_BLOCK_BYTES = 64 * 1024
BACKLOG_SCAN_BYTES = 16 * 1024 * 1024  # backlog looks this far back at most, whatever the file
TRUNCATED = " […line truncated]"
TAIL_CHECK_BYTES = 32
# Kernel pseudo-files: never logs, some secret (/proc/self/environ), some read destructively
# (/proc/kmsg). Refused however they are named.
PSEUDO_FS_ROOTS = ("/proc", "/sys")
# Followed files may use the lower half of the descriptor table; the rest is kept for the
# listening socket, clients, inotify and the journal's pipes (#13.16: 3,000 files under a
# 1,024 limit left the server unable to listen).
FILES_FD_SHARE = 0.5


class NotRegularFile(OSError):
    """The path is a directory, FIFO, socket or device: nothing a log tailer may read."""


def kind_of(mode: int) -> str:
    """A file type in words, for error messages."""
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return name
    return "not a regular file"


@dataclass(frozen=True, slots=True)
class Position:
    """Where a follower was in a file: offset, the bytes just before it, the held partial."""

    pos: int
    seen_tail: bytes
    pending: bytes
    is_discarding: bool


@dataclass(slots=True)
class Chunk:
    """Lines read in one go from one file."""

    lines: list[str]
    nbytes: int = 0  # bytes read from the file for them (a flushed partial line: already counted)
    is_backlog: bool = False
    is_partial: bool = False  # the last line was flushed without its newline


def decode_lines(blob: bytes, max_line_bytes: int) -> list[str]:
    """Newline-separated bytes to text lines: bad UTF-8 and NUL become U+FFFD, long lines cut."""
    text = blob.decode("utf-8", "replace")
    if "\0" in text:
        text = text.replace("\0", "\ufffd")
    lines = text.split("\n")
    if "\r" in text:  # CRLF line ends (Windows-born logs): the \r is not part of the line
        lines = [ln[:-1] if ln.endswith("\r") else ln for ln in lines]
    if len(blob) > max_line_bytes:
        lines = [
            ln[:max_line_bytes] + TRUNCATED if len(ln) > max_line_bytes else ln for ln in lines
        ]
    return lines


@functools.cache
def pseudo_fs_devices() -> frozenset[int]:
    """The st_dev of procfs and sysfs where they are mounted (not the root's, if they are not)."""
    devices = set()
    for root in PSEUDO_FS_ROOTS:
        try:
            devices.add(os.stat(root).st_dev)
        except OSError:
            continue
    try:
        devices.discard(os.stat("/").st_dev)
    except OSError:
        pass
    return frozenset(devices)


def resolved(path: str, fixed: str, real_fixed: str) -> str:
    """`path` (a match of a glob whose fixed directory is `fixed`) with symlinks resolved:
    one lstat per component below `fixed` unless one is a link (a full pass stats them all)."""
    rel = path[len(fixed) :].lstrip("/")
    parts = rel.split("/")
    if not path.startswith(fixed) or "." in parts or ".." in parts:
        return os.path.realpath(path)
    at = fixed
    for part in parts:
        at = os.path.join(at, part)
        if os.path.islink(at):
            return os.path.realpath(path)
    return os.path.join(real_fixed, rel)


def refusal(path: str, st_dev: int, glob_root: tuple[str, str] | None) -> str | None:
    """Why `path` must not be followed, or None: it resolves into /proc or /sys, or (a glob's
    match: `glob_root` is its fixed directory and that resolved) it is a symlink out of it."""
    real = resolved(path, *glob_root) if glob_root else os.path.realpath(path)
    is_under_root = any(real == root or real.startswith(root + "/") for root in PSEUDO_FS_ROOTS)
    if is_under_root or st_dev in pseudo_fs_devices():
        return f"{path} resolves to {real}, a kernel pseudo-file (procfs, sysfs); not followed"
    if glob_root:
        fixed, real_fixed = glob_root
        if os.path.commonpath([real, real_fixed]) != real_fixed:
            return f"{path} is a symlink out of {fixed or '.'}; not followed"
    return None


def check_fd_budget(fd: int) -> None:
    """Raise EMFILE (closing `fd`) once followed files would crowd out everything else."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and fd >= soft * FILES_FD_SHARE:
        os.close(fd)
        raise OSError(errno.EMFILE, f"half of the {soft} file descriptors allowed are in use")


def open_regular(path: str) -> tuple[int, os.stat_result]:
    """Open a regular file for reading without blocking (a FIFO would block on open)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    check_fd_budget(fd)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise NotRegularFile(f"{path} is {kind_of(st.st_mode)}")
    return fd, st


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
        self.pos += len(data)
        self._seen_tail = (self._seen_tail + data[-TAIL_CHECK_BYTES:])[-TAIL_CHECK_BYTES:]
        self.last_data_at = time.monotonic()
        return Chunk(self._split(data), len(data), is_backlog=is_backlog)

    def _split(self, data: bytes) -> list[str]:
        if self._is_discarding:
            newline = data.find(b"\n")
            if newline < 0:
                return []
            data, self._is_discarding = data[newline + 1 :], False
        if self._pending:
            data = self._pending + data
        end = data.rfind(b"\n")
        lines = decode_lines(data[:end], self.max_line_bytes) if end >= 0 else []
        self._pending = data[end + 1 :]
        if len(self._pending) > self.max_line_bytes:
            # Memory stays bounded even for a huge file with no newline at all.
            cut = self._pending[: self.max_line_bytes].decode("utf-8", "replace")
            lines.append(cut.replace("\0", "\ufffd") + TRUNCATED)
            self._pending, self._is_discarding = b"", True
        if self._pending and not self._pending_since:
            self._pending_since = time.monotonic()
        elif not self._pending:
            self._pending_since = 0.0
        return lines

    def flush_due_at(self, flush_s: float) -> float | None:
        """When the held partial line is due to be flushed (monotonic), if one is held."""
        return self._pending_since + flush_s if self._pending else None

    def flush(self) -> Chunk | None:
        """The held partial line, as a line flushed without its newline."""
        if not self._pending:
            return None
        lines = decode_lines(self._pending, self.max_line_bytes)
        self._pending, self._pending_since = b"", 0.0
        return Chunk(lines, is_partial=True)
