"""Lines from before the hub's records, for scrolling back: read backwards from a line's start
in one of a source's files, then on through the files it was rotated into (`app.log.1`,
`app.log.2.gz`, `app.log-20261201.gz`), as far back as they go.

A client continues from a position this module gave it, `file-<dev>-<inode>-<offset>`: it is
honoured only if that file is the source's own (its live file, or one named like it in its
directory, found by identity) and the offset is the start of a line in it; else BadEventId.
So no position reaches a file of someone else, or the middle of a line.

The functions here hold no state: FileSource runs them in a thread (a compressed file is
read from its start to find a position in it: gzip cannot seek backwards).
"""

from __future__ import annotations

import bz2
import concurrent.futures
import contextlib
import functools
import gzip
import io
import lzma
import os
import re
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import IO

from monitor.hub.interface import BadEventId, LogEvent, Older, Origin
from monitor.sources.admission import open_regular, refusal
from monitor.sources.follower import decode_lines
from monitor.sources.rereading import bytes_at

Key = tuple[int, int]  # (st_dev, st_ino)
BLOCK_BYTES = 64 * 1024
SCAN_BYTES = 16 * 1024 * 1024  # at most this far back for one page's lines (a huge line ends it)
DECOMPRESSED_BLOCK = 1024 * 1024
OPENERS: dict[str, Callable[[IO[bytes]], io.BufferedIOBase]] = {
    ".gz": lambda f: gzip.GzipFile(fileobj=f, mode="rb"),
    ".bz2": lambda f: bz2.BZ2File(f, "rb"),
    ".xz": lambda f: lzma.LZMAFile(f, "rb"),
}
POSITION = re.compile(r"file-([0-9]{1,20})-([0-9]{1,20})-([0-9]{1,20})")
NUMBERED = re.compile(r"[.\-_]([0-9]{1,6})")  # app.log.1, app.log-2: smaller is newer


@functools.cache
def older_reader() -> concurrent.futures.ThreadPoolExecutor:
    """The one thread that reads back through files (made when first needed)."""
    return concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="older")


def position(key: Key, offset: int) -> str:
    """The position a client continues from: a line's start in the file with this identity."""
    return f"file-{key[0]}-{key[1]}-{offset}"


def parse_position(text: str) -> tuple[Key, int]:
    if not (m := POSITION.fullmatch(text)):
        raise BadEventId("not an event id (RUN-SEQ) or a position (file-DEV-INODE-OFFSET)")
    return (int(m[1]), int(m[2])), int(m[3])


@dataclass(frozen=True, slots=True)
class Start:
    """Where to read back from: `offset` in the file `key` (None: its end). From an event,
    its `origin` says which bytes must follow there (after copytruncate, the copy holds them
    at the same offset); from a client's position, `is_client` asks for the checks a
    position from outside needs."""

    key: Key
    offset: int | None
    origin: Origin | None = None
    is_client: bool = False

    @staticmethod
    def of(before: Origin | str) -> Start:
        if isinstance(before, Origin):
            return Start(before.key, before.start, before)
        key, offset = parse_position(before)
        return Start(key, offset, is_client=True)


Chain = list[tuple[str, Key]]  # paths, newest first, with the identity each had when listed


def rotation_chain(live: str) -> Chain:
    """`live`, then the files it was rotated into, newest first: those in its directory
    named like it with a suffix (`.1`, `-20261201`, each maybe `.gz`, `.bz2` or `.xz`; not
    an archive such as `.tar.gz`). Each file once (a hard link or a symlink to one listed
    is left out), none that is a symlink out of the directory (someone's, named like the
    log: never read its target); each with its identity, which the file opened must have."""
    directory, base = os.path.split(live)
    root = (directory, os.path.realpath(directory or "."))
    try:
        st = os.stat(live)
    except OSError:
        return []
    chain: Chain = [(live, (st.st_dev, st.st_ino))]
    rotated = []
    with contextlib.suppress(OSError), os.scandir(directory or ".") as entries:
        for entry in entries:
            name, suffix = entry.name, entry.name[len(base) :]
            if not (name.startswith(base) and suffix[:1] in (".", "-", "_")) or ".tar" in suffix:
                continue
            with contextlib.suppress(OSError):
                st = os.stat(entry.path)
                if not refusal(entry.path, st.st_dev, root):
                    key = (st.st_dev, st.st_ino)
                    rotated.append((_age(suffix, st.st_mtime), entry.path, key))
    seen = {chain[0][1]}
    for _, path, key in sorted(rotated):
        if key not in seen:
            seen.add(key)
            chain.append((path, key))
    return chain


def _age(suffix: str, mtime: float) -> tuple[int, float]:
    """Sorts rotated names newest first: by number (.1 before .2), by date (later first),
    else by modification time (a compressed file's is when it was compressed)."""
    stem = suffix
    for ext in OPENERS:
        stem = stem.removesuffix(ext)
    if m := NUMBERED.fullmatch(stem):
        return (0, int(m[1]))
    if len(digits := re.sub(r"[^0-9]", "", stem)) >= 8:  # dateext: -20261201, -2026-12-01-13
        return (1, -int(digits))
    return (2, -mtime)


class _TooLong(Exception):
    """One line longer than the scan: nothing before it can be reached."""


class _Moved(Exception):
    """A name now leads to another file than it did when the chain was listed."""


def read_older(start: Start | None, bases: Iterable[str], limit: int, max_line_bytes: int) -> Older:
    """Up to `limit` lines before `start`, oldest first, from the chain of rotated files the
    start's file belongs to (`bases`: the source's live files); the position to go on from.
    Runs in a thread: it opens its own descriptors and shares nothing."""
    if start is None:
        return Older([], None)
    found = _find(start, [rotation_chain(b) for b in bases])
    if found is None:
        if start.is_client:
            raise BadEventId("a position in a file this source no longer holds")
        return Older([], None)  # the event's file is gone: so is what came before it
    chain, index = found
    events: list[LogEvent] = []
    remaining, offset = limit, start.offset
    checks: Start | None = start
    while True:
        path, key = chain[index]
        try:
            first, lines = _lines_before(path, key, offset, remaining, max_line_bytes, checks)
        except (_TooLong, _Moved, OSError, EOFError, zlib.error, lzma.LZMAError):
            return Older(events, None)  # unreadable (damaged, gone meanwhile): it ends here
        checks = None  # only the first file's offset comes from outside
        if lines:
            events.insert(0, LogEvent(position(key, first), None, lines))
            remaining -= len(lines)
        if first > 0:
            return Older(events, position(key, first))
        index, offset = index + 1, None
        if index >= len(chain):
            return Older(events, None)
        if remaining <= 0:  # the next page starts with the next older file
            return Older(events, position(key, 0))


def _find(start: Start, chains: list[Chain]) -> tuple[Chain, int] | None:
    """The chain and place of the start's file (or, for an event whose file was truncated
    under it, of the copy that holds its bytes at the same offset)."""
    for chain in chains:
        for index, (path, key) in enumerate(chain):
            if key != start.key:
                continue
            if start.origin is None or _holds(path, start.origin):
                return chain, index
            for later in range(index + 1, min(index + 4, len(chain))):  # copytruncate
                if _holds(chain[later][0], start.origin):
                    return chain, later
            return None
    return None


def _holds(path: str, origin: Origin) -> bool:
    """True if the plain file at `path` has the origin's bytes at its offset."""
    if path.endswith(tuple(OPENERS)):
        return False
    try:
        fd, _ = open_regular(path)
    except OSError:
        return False
    try:
        return bytes_at(fd, origin) is not None
    finally:
        os.close(fd)


def _lines_before(
    path: str, key: Key, end: int | None, limit: int, max_line_bytes: int, checks: Start | None
) -> tuple[int, list[str]]:
    """Up to `limit` whole lines ending at `end` (a line's start; None: the file's end) of
    the file `path` names, which must be the one with identity `key`; and the offset of the
    first. A client's `end` is checked: at a line's start."""
    opener = next((o for ext, o in OPENERS.items() if path.endswith(ext)), None)
    fd, st = open_regular(path)
    try:
        if (st.st_dev, st.st_ino) != key:  # renamed or replaced since it was listed
            if checks is not None and checks.is_client:
                raise BadEventId("a position in a file this source no longer holds")
            raise _Moved
        if opener is None:
            data, at, size = _tail_of_plain(fd, st.st_size, end, limit)
        else:
            with os.fdopen(os.dup(fd), "rb") as raw:
                data, at, size = _tail_of_stream(opener(raw), end, limit)
    finally:
        os.close(fd)
    if end is not None and (end > size or (end > 0 and data[end - at - 1 : end - at] != b"\n")):
        if checks is not None and checks.is_client:
            raise BadEventId("not the start of a line in this source's files")
        if end > size:
            raise _Moved  # shrunk since the event was read: nothing before it is sure
        # Our own start inside a line (the rest of a line flushed in part, whose first part's
        # record is gone): the lines before that line.
        newline = data.rfind(b"\n", 0, end - at)
        if newline < 0 and at > 0:
            raise _TooLong
        end = at + newline + 1
    stop = size if end is None else end
    if stop == 0:
        return 0, []
    blob = data[: stop - at]
    if blob.endswith(b"\n"):  # else a rotated file's last line, without its newline
        blob = blob[:-1]
    if at > 0:  # the first line is whole only after a newline
        newline = blob.find(b"\n")
        if newline < 0:
            raise _TooLong
        blob, at = blob[newline + 1 :], at + newline + 1
    lines = decode_lines(blob, max_line_bytes)
    if len(lines) > limit:
        cut = 0
        for _ in range(len(lines) - limit):
            cut = blob.index(b"\n", cut) + 1
        lines, at = lines[len(lines) - limit :], at + cut
    return at, lines


def _tail_of_plain(fd: int, size: int, end: int | None, limit: int) -> tuple[bytes, int, int]:
    """The bytes before `end` (the file's end if None) that hold `limit` lines and the
    newline before them, or as many as the scan reaches; their offset; the file's size."""
    stop = size if end is None else min(end, size)
    pos, newlines = stop, 0
    blocks: list[bytes] = []
    while pos > 0 and stop - pos < SCAN_BYTES and newlines <= limit:
        step = min(BLOCK_BYTES, pos)
        pos -= step
        block = os.pread(fd, step, pos)
        blocks.insert(0, block)
        newlines += block.count(b"\n")
    return b"".join(blocks), pos, size


def _tail_of_stream(
    stream: io.BufferedIOBase, end: int | None, limit: int
) -> tuple[bytes, int, int]:
    """As _tail_of_plain, for a compressed file: decompressed from its start, keeping a window
    of the last lines; the size is the decompressed length read (up to `end`)."""
    window, at, offset = bytearray(), 0, 0
    with stream:
        while end is None or offset < end:
            want = DECOMPRESSED_BLOCK if end is None else min(DECOMPRESSED_BLOCK, end - offset)
            block = stream.read(want)
            if not block:
                break
            window += block
            offset += len(block)
            if len(window) > 4 * DECOMPRESSED_BLOCK:  # keep the last lines (and the newline
                cut = len(window)  # before them), and never more than a scan's worth
                for _ in range(limit + 2):
                    if (cut := window.rfind(b"\n", 0, cut)) < 0:
                        break
                cut = max(cut, len(window) - SCAN_BYTES)
                if cut > 0:
                    del window[:cut]
                    at += cut
    return bytes(window), at, offset
