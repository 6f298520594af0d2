"""FileSource: follows a named path or glob like `tail -F` and publishes `log` events.

Files are tracked by inode, not by name: a rotated (renamed) file is read to its end while
its successor is read from its start; a shrunken file was truncated; a vanished name means
waiting for the file to come back. inotify on the directories wakes it within milliseconds;
where inotify is unavailable it polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import glob
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

from monitor.config import TailConfig
from monitor.hub.events import LOG, MAX_LINES_PER_EVENT
from monitor.hub.interface import Older, Origin, Publisher
from monitor.sources.admission import MAX_FILES_PER_SOURCE, refusal, warn_if_root
from monitor.sources.crc import crc32
from monitor.sources.follower import (
    READ_CHUNK_BYTES,
    Chunk,
    FileFollower,
    Position,
    cut_line,
    lines_of,
)
from monitor.sources.inotify import DirWatcher
from monitor.sources.older import Start, older_reader, read_older
from monitor.sources.rereading import COPY_CANDIDATES, FileHistory, bytes_at
from monitor.sources.supervisor import SourceStats, report

log = logging.getLogger(__name__)

SAFETY_POLL_S = 1.0  # even with inotify, look again this often (new directories, missed events)
ROTATED_GRACE_S = 5.0  # keep reading a rotated-away file until it has been quiet this long


class FileSource:
    """One log source: a path or glob, followed by name across rotations."""

    kind = "log"

    def __init__(self, name: str, pattern: str, options: TailConfig | None = None) -> None:
        self.name = name
        self.pattern = pattern
        self.options = options or TailConfig()
        self.is_glob = glob.has_magic(pattern)
        fixed = pattern
        while glob.has_magic(fixed):
            fixed = os.path.dirname(fixed)
        self._fixed = fixed  # a glob's directory without wildcards; the path itself if none
        self.stats = SourceStats()
        self._live: dict[str, FileFollower] = {}  # by path: the files the pattern names now
        self._rotated: list[FileFollower] = []  # renamed or deleted, still being drained
        self._errors: dict[str, str] = {}  # by path: files that could not be opened
        self._refused: dict[str, str] = {}  # by path: symlinks out, kernel pseudo-files
        self._notes: dict[str, str] = {}  # "cap", "fds": why matched files are not followed
        self._capped: set[str] = set()  # matched, not followed: opened at their end if ever
        self._by_name: dict[str, FileFollower] = {}  # live followers by path and real path
        self._written: set[str] = set()  # paths inotify named as written since the last scan
        self._wake = asyncio.Event()
        self._needs_match = False  # a name may have changed: glob and stat again
        self._watcher = DirWatcher(self._on_change, enabled=self.options.use_inotify)
        self._hub: Publisher | None = None
        self._is_recovering = False  # reading a copy: the live file's lines must wait
        self._last_status: tuple[Any, ...] = ()
        # Every file followed, found again by identity: lines a client missed are read
        # again from it after it was renamed (rotated), closed, or copied and truncated.
        self._history = FileHistory(lambda: [*self._live.values(), *self._rotated])
        # Where the previous run left each file (a state directory's position log): read on
        # from there at start, not from a backlog, so nothing is lost or sent twice; and the
        # time of its last record: a file without one, written since, is new (read it all).
        self._resume: dict[tuple[int, int], Origin] = {}
        self._resumed_until: float | None = None

    async def run(self, hub: Publisher) -> None:
        """Follow the files until cancelled."""
        self._hub = hub
        resumed = hub.keep_history(self.name, self)
        self._resume = dict(resumed.files) if resumed else {}
        self._resumed_until = resumed.until if resumed else None
        warn_if_root()
        self._watcher.start()
        try:
            await self._scan(hub, is_first=True, is_full=True)
            while True:
                try:
                    async with asyncio.timeout(self._next_timeout()):
                        await self._wake.wait()
                    # Only writes happened: read, but skip globbing and stat-ing names.
                    is_full = self._needs_match or not self._watcher.is_active
                except TimeoutError:
                    is_full = True
                self._wake.clear()
                self._needs_match = False
                written, self._written = self._written, set()
                only = None if is_full else self._named(written)
                await self._scan(hub, is_first=False, is_full=is_full, only=only)
        finally:
            self._watcher.close()
            for follower in [*self._live.values(), *self._rotated]:
                follower.close()
            self._live.clear()
            self._rotated.clear()
            self._history.close()

    def _on_change(self, names_changed: bool, written: set[str]) -> None:
        """From the loop's inotify callback: for plain writes read at once, like tail -F;
        a task switch later, copytruncate may already have erased the lines. Only the files
        inotify named are read: with many files, reading all on every write cost a core."""
        self._needs_match = self._needs_match or names_changed
        self._written |= written
        # Reading a live file's descriptor is right even if its name now points elsewhere
        # (its data comes before any successor's). Only a rotated file or a copy being read
        # must go first; then the scan task keeps the order.
        if self._rotated or self._is_recovering:
            self._wake.set()
            return
        is_done = not names_changed
        for follower in self._named(written):
            is_done = self._read_now(follower) and is_done
        # Writes read to their end here leave the scan task nothing to do: waking it only
        # read every file again (a third of the CPU per line at 10,000 lines/s, #17).
        if not is_done:
            self._wake.set()

    def _named(self, paths: set[str]) -> set[FileFollower]:
        """The live followers these paths name (by the matched path or its resolved one)."""
        return {f for p in paths if (f := self._by_name.get(p))}

    def _read_now(self, follower: FileFollower) -> bool:
        """One bounded read, synchronously; a truncated file is left to the scan task, which
        first looks for the lines it missed in the copy. True if that read everything, with
        no partial line held (the scan task flushes one when due)."""
        assert self._hub is not None
        if follower.looks_truncated():
            return False
        chunk = follower.read()
        if chunk is None:
            return True
        self._publish(self._hub, follower, chunk)
        return chunk.nbytes < READ_CHUNK_BYTES and not follower.holds_partial_line

    def _watch_dirs(self) -> None:
        """Watch the pattern's fixed directory and every followed file's directory (and its
        target's, for a symlink: that is where the kernel reports its writes)."""
        dirs = {os.path.dirname(self._fixed) if not self.is_glob else self._fixed}
        dirs |= {os.path.dirname(path) for path in self._by_name}
        self._errors.update(self._watcher.watch(dirs))

    def _next_timeout(self) -> float:
        base = SAFETY_POLL_S if self._watcher.is_active else self.options.poll_interval_s
        flushes = [
            f.flush_due_at(self.options.partial_flush_s)
            for f in [*self._rotated, *self._live.values()]
        ]
        due = [t - time.monotonic() for t in flushes if t is not None]
        return max(0.0, min([base, *due]))

    async def _scan(
        self,
        hub: Publisher,
        *,
        is_first: bool,
        is_full: bool,
        only: set[FileFollower] | None = None,
    ) -> None:
        """One pass: see what the pattern names now (if full); drain rotated files, then read
        live ones (`only` these, if given: the files inotify named)."""
        if is_full:
            self._history.new_pass()
            for change in self._match(is_first):
                self._publish_status(hub, change=change)
            if is_first:
                self._find_rotated_while_down()
            self._watch_dirs()
        # Rotated files first: their lines were written before their successors'.
        for follower in list(self._rotated):
            await self._drain(hub, follower)
            if time.monotonic() - follower.last_data_at > ROTATED_GRACE_S:
                self._flush(hub, follower, force=True)
                follower.close()
                self._rotated.remove(follower)
        for follower in list(self._live.values()):
            if only is not None and follower not in only:
                self._flush(hub, follower, force=False)
                continue
            if was := follower.truncated():
                self.stats.truncations += 1
                self._is_recovering = True
                try:
                    copy = await self._read_copy(hub, follower, was)
                finally:
                    self._is_recovering = False
                change = f"truncated: {follower.path} was truncated; reading it from its start"
                if copy:
                    change += f" (lines written before the copy read from {copy})"
                self._publish_status(hub, change=change)
            await self._drain(hub, follower)
            self._flush(hub, follower, force=False)
        if is_full:  # what a status says changes only when names are matched again
            self._publish_status(hub)

    async def _read_copy(self, hub: Publisher, follower: FileFollower, was: Position) -> str | None:
        """After copytruncate, lines written between our last read and the copy are only in
        the copy (app.log.1): find it by its bytes at our old offset and read them there."""
        directory, base = os.path.split(follower.path)
        pattern = os.path.join(glob.escape(directory), glob.escape(base) + "?*")
        candidates = []
        for path in glob.glob(pattern):
            with contextlib.suppress(OSError):
                candidates.append((os.stat(path).st_mtime, path))
        for _, path in sorted(candidates, reverse=True)[:COPY_CANDIDATES]:
            with contextlib.suppress(OSError):
                if refusal(path, os.stat(path).st_dev, (directory, os.path.realpath(directory))):
                    continue  # someone's symlink named like the log: never read its target
            try:
                copy = self._follower(path, None)
            except OSError:
                continue
            self._history.remember(copy)
            try:
                if copy.resume(was):
                    await self._drain(hub, copy)
                    self._flush(hub, copy, force=True)
                    return path
            finally:
                copy.close()
        return None

    def _match(self, is_first: bool) -> list[str]:
        """Open what the pattern names now; followers whose name moved on go to _rotated."""
        was_capped = self._capped
        keys = self._allowed(sorted(glob.glob(self.pattern)) if self.is_glob else [self.pattern])
        changes = []
        for path, follower in list(self._live.items()):
            if keys.get(path) != follower.key:
                del self._live[path]
                self._rotated.append(follower)
                self.stats.rotations += 1
                if path in keys:
                    changes.append(f"rotated: {path} is a new file; the old one is read to its end")
                elif path in self._capped:
                    changes.append(f"capped: {path} is no longer among the newest; read to its end")
                elif path in self._refused:
                    changes.append(f"refused: {self._refused[path]}")
                else:
                    changes.append(f"gone: {path} was moved or deleted; waiting for it")
        self._notes.pop("fds", None)
        for path, key in keys.items():
            if path in self._live:
                continue
            moved = next((f for f in self._rotated if f.key == key), None)
            if moved is not None:  # a glob that also names the file's new name
                self._rotated.remove(moved)
                moved.path, self._live[path] = path, moved
            elif "fds" not in self._notes:
                # A file that was over the cap is old news: start at its end, not its start.
                backlog = self.options.backlog_lines if is_first else None
                self._open(path, key, 0 if path in was_capped else backlog)
        self._by_name = {}
        for path, follower in self._live.items():
            self._by_name[path] = self._by_name[os.path.realpath(path)] = follower
        return changes

    def _allowed(self, paths: list[str]) -> dict[str, tuple[int, int]]:
        """The (dev, inode) of each path that may be followed: not refused, within the cap."""
        found: dict[str, os.stat_result] = {}
        self._refused = {}
        glob_root = (self._fixed, os.path.realpath(self._fixed)) if self.is_glob else None
        for path in paths:
            try:
                st = os.stat(path)
            except FileNotFoundError:
                self._errors.pop(path, None)
                continue
            except OSError as exc:
                self._errors[path] = f"{path}: {exc.strerror}"
                continue
            # A configured path the operator named may be a symlink; a glob's match may not
            # lead out of the glob's directory (another user may write there).
            if why := refusal(path, st.st_dev, glob_root):
                self._refused[path] = why
            else:
                found[path] = st
        newest = sorted(found, key=lambda p: (-found[p].st_mtime, p))
        self._capped = set(newest[MAX_FILES_PER_SOURCE:])
        if self._capped:
            self._notes["cap"] = (
                f"{len(found)} files match; following the {MAX_FILES_PER_SOURCE} newest (cap)"
            )
        else:
            self._notes.pop("cap", None)
        return {p: (found[p].st_dev, found[p].st_ino) for p in newest[:MAX_FILES_PER_SOURCE]}

    def _open(self, path: str, key: tuple[int, int], backlog: int | None) -> None:
        if backlog is not None and self._resumed_until is not None and key not in self._resume:
            # The previous run followed this source, but not this file: new if written since
            # (all of it is news), else read to its end by then (none of it is).
            with contextlib.suppress(OSError):
                backlog = None if os.stat(path).st_mtime > self._resumed_until else 0
        try:
            follower = self._follower(path, backlog)
        except FileNotFoundError:
            return  # gone between stat and open: the next pass sees
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                # Serve the files already open; the next full pass tries again.
                self._notes["fds"] = (
                    f"too many open files: {path} and others not opened ({exc.strerror}); "
                    "raise LimitNOFILE or narrow the glob"
                )
                return
            # Permission denied, a directory, a FIFO: say so, keep trying, serve the rest.
            self._errors[path] = str(exc) if not exc.strerror else f"{path}: {exc.strerror}"
            return
        if follower.key != key:  # the name was pointed elsewhere after it was checked
            follower.close()
            return
        if (was := self._resume.pop(key, None)) is not None and not self._continue(follower, was):
            follower.close()  # what we read last run is not there any more: a fresh start
            self._open(path, key, backlog)
            return
        self._live[path] = follower
        self._errors.pop(path, None)
        self._history.remember(follower)

    def _follower(self, path: str, backlog: int | None) -> FileFollower:
        """`path` opened to read from `backlog` lines before its end (None: from its start)."""
        return FileFollower(path, max_line_bytes=self.options.max_line_bytes, backlog_lines=backlog)

    def _continue(self, follower: FileFollower, was: Origin) -> bool:
        """Go on where the last run left this file, if the bytes it last read are still
        there (same length and CRC); False if not (the file was rewritten)."""
        if (blob := bytes_at(follower.fd, was)) is None:
            return False
        follower.continue_from(was.end, blob, is_in_cut_line=was.is_cut)
        return True

    def _find_rotated_while_down(self) -> None:
        """Files the last run followed that were renamed while we were down (rotated): found
        in the pattern's directory by identity, read from where we left them, before their
        successors."""
        if not self._resume:
            return
        directory = self._fixed if self.is_glob else os.path.dirname(self._fixed) or "."
        glob_root = (directory, os.path.realpath(directory))
        found = []
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    with contextlib.suppress(OSError):  # one vanishing file stops no others
                        key = (entry.stat(follow_symlinks=False).st_dev, entry.inode())
                        if key in self._resume:
                            found.append(entry.path)
        except OSError:
            return
        for path in found:
            try:
                follower = self._follower(path, None)
            except OSError:
                continue
            was = self._resume.pop(follower.key, None)
            if (
                was is None
                or refusal(path, follower.key[0], glob_root)
                or not self._continue(follower, was)
            ):
                follower.close()
                continue
            self._history.remember(follower)
            self._rotated.append(follower)

    async def _drain(self, hub: Publisher, follower: FileFollower) -> None:
        while True:
            if (chunk := follower.read()) is None:
                return
            self._publish(hub, follower, chunk)
            await asyncio.sleep(0)  # let metrics, heartbeats and clients run between chunks

    def _flush(self, hub: Publisher, follower: FileFollower, *, force: bool) -> None:
        due = follower.flush_due_at(self.options.partial_flush_s)
        if due is not None and (force or time.monotonic() >= due):
            chunk = follower.flush()
            if chunk:
                self._publish(hub, follower, chunk)

    def _publish(self, hub: Publisher, follower: FileFollower, chunk: Chunk) -> None:
        lines = chunk.lines
        self.stats.lines_read += len(lines) + (chunk.cut is not None)
        self.stats.bytes_read += chunk.nbytes
        raw, at = chunk.raw, chunk.raw_at
        is_one_event = len(lines) <= MAX_LINES_PER_EVENT  # LogLines go whole, never sliced
        for first in range(0, len(lines), MAX_LINES_PER_EVENT):
            batch = lines if is_one_event else lines[first : first + MAX_LINES_PER_EVENT]
            # The batch's bytes: up to its last line's newline (the chunk's end, for the last).
            end = chunk.raw_end
            if first + MAX_LINES_PER_EVENT < len(lines):
                end = at - 1
                for _ in batch:
                    end = raw.find(b"\n", end + 1)
                end += 1
            origin = None
            if chunk.start is not None:
                origin = Origin(
                    follower.key,
                    chunk.start + at - chunk.raw_at,
                    chunk.start + end - chunk.raw_at,
                    crc32(memoryview(raw)[at:end]),
                    len(batch),
                    chunk.is_backlog,
                )
            at = end
            hub.publish(LOG, self._payload(follower.path, batch, chunk), self.name, origin)
        if chunk.cut is not None:  # after the whole lines it followed, on its own
            cut = Origin(
                follower.key,
                chunk.cut_start,
                chunk.cut_start + len(chunk.cut_raw),
                crc32(chunk.cut_raw),
                1,
                chunk.is_backlog,
                is_cut=True,
            )
            hub.publish(LOG, self._payload(follower.path, [chunk.cut], chunk), self.name, cut)

    def _payload(self, path: str, lines: Sequence[str], chunk: Chunk | None) -> dict[str, Any]:
        payload: dict[str, Any] = {"source": self.name, "file": path, "lines": lines}
        if chunk is not None and chunk.is_backlog:
            payload["backlog"] = True
        if chunk is not None and chunk.is_partial:
            payload["partial"] = True  # the last line was flushed without a newline
        return payload

    async def reread(self, origin: Origin) -> dict[str, Any] | None:
        """A log event again, from the bytes its origin names, if a file still holds them
        exactly (FileHistory finds it); None if none does."""
        found = self._history.read(origin)
        if found is None:
            return None
        blob, path = found
        is_partial = not blob.endswith(b"\n") and not origin.is_cut
        lines: Sequence[str]
        if origin.is_cut:
            lines = [cut_line(blob)]
        else:
            lines = lines_of(blob if is_partial else blob[:-1], self.options.max_line_bytes)
        payload = self._payload(path, lines, None)
        if origin.is_backlog:
            payload["backlog"] = True
        if is_partial:
            payload["partial"] = True
        return payload

    async def older(self, before: Origin | str | None, limit: int) -> Older:
        """Up to `limit` lines the files hold from before `before` (an event's origin, a
        position an earlier page gave, or None: before the newest line read), read back
        through the rotated files (sources/older.py) in a thread, one read at a time."""
        if before is None:
            newest = max(self._live.values(), key=lambda f: f.last_data_at, default=None)
            start = None if newest is None else Start(newest.key, newest.line_start)
        else:
            start = Start.of(before)
        bases = sorted(self._live) or ([] if self.is_glob else [self.pattern])
        # One thread of its own for all sources: one read back at a time, and a request
        # whose client left is dropped if it has not started (a started one runs out).
        return await asyncio.get_running_loop().run_in_executor(
            older_reader(), read_older, start, bases, limit, self.options.max_line_bytes
        )

    def _publish_status(self, hub: Publisher, change: str | None = None) -> None:
        files = sorted(self._live)
        problems = [*self._notes.values(), *self._errors.values(), *self._refused.values()]
        if files:
            state, detail = "following", ", ".join(files)
        elif problems:
            state, detail = "error", "; ".join(problems)
        else:
            state, detail = "waiting", f"waiting for {self.pattern} to appear"
        errors = sorted(problems)
        mode = self._watcher.mode
        current = (state, detail, mode, tuple(errors))
        if current == self._last_status and change is None:
            return
        self._last_status = current
        extra: dict[str, Any] = {"mode": mode, "files": files, "errors": errors}
        if change:
            extra["change"] = change
        report(hub, self, state, detail, **extra)
