"""FileTailer: follows a named path or glob like `tail -F` and publishes `log` events.

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
import struct
import time
from dataclasses import dataclass
from typing import Any

from monitor.events import LOG
from monitor.follow import FileFollower, Position
from monitor.hub import EventHub
from monitor.sources import report

log = logging.getLogger(__name__)

SAFETY_POLL_S = 1.0  # even with inotify, look again this often (new directories, missed events)
ROTATED_GRACE_S = 5.0  # keep reading a rotated-away file until it has been quiet this long
MAX_LINES_PER_EVENT = 2000
INOTIFY_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then len bytes of name
IN_MODIFY = 0x2
COPY_CANDIDATES = 3  # after copytruncate, the newest files named like the log may be its copy


@dataclass(frozen=True, slots=True)
class TailOptions:
    """How every log source is followed."""

    backlog_lines: int = 100
    max_line_bytes: int = 64 * 1024
    partial_flush_s: float = 0.5
    poll_interval_s: float = 0.25
    use_inotify: bool = True


class FileTailer:
    """One log source: a path or glob, followed by name across rotations."""

    kind = "log"

    def __init__(self, name: str, pattern: str, options: TailOptions | None = None) -> None:
        self.name = name
        self.pattern = pattern
        self.options = options or TailOptions()
        self.is_glob = glob.has_magic(pattern)
        self.mode = "polling"
        self.lines_read = 0
        self.bytes_read = 0
        self.rotations = 0
        self.truncations = 0
        self._live: dict[str, FileFollower] = {}  # by path: the files the pattern names now
        self._rotated: list[FileFollower] = []  # renamed or deleted, still being drained
        self._errors: dict[str, str] = {}
        self._wake = asyncio.Event()
        self._needs_match = False  # a name may have changed: glob and stat again
        self._watched: set[str] = set()
        self._inotify: Any = None
        self._hub: EventHub | None = None
        self._is_scanning = False  # the scan task is mid-pass: ordering is its business
        self._truncated: dict[str, Position] = {}  # noticed by _read_now, handled by the scan
        self._last_status: tuple[Any, ...] = ()

    async def run(self, hub: EventHub) -> None:
        """Follow the files until cancelled."""
        self._hub = hub
        self._start_inotify()
        try:
            await self._scan(hub, is_first=True, is_full=True)
            while True:
                try:
                    async with asyncio.timeout(self._next_timeout()):
                        await self._wake.wait()
                    # Only writes happened: read, but skip globbing and stat-ing names.
                    is_full = self._needs_match or self._inotify is None
                except TimeoutError:
                    is_full = True
                self._wake.clear()
                self._needs_match = False
                await self._scan(hub, is_first=False, is_full=is_full)
        finally:
            self._stop_inotify()
            for follower in [*self._live.values(), *self._rotated]:
                follower.close()
            self._live.clear()
            self._rotated.clear()

    def _start_inotify(self) -> None:
        if not self.options.use_inotify:
            self.mode = "polling (inotify turned off)"
            return
        try:
            from asyncinotify import Inotify

            self._inotify = Inotify()
        except (ImportError, OSError) as exc:
            self.mode = f"polling (inotify unavailable: {exc})"
            return
        self.mode = "inotify"
        os.set_blocking(self._inotify.fd, False)  # read it only until empty, never wait
        asyncio.get_running_loop().add_reader(self._inotify.fd, self._on_inotify)

    def _stop_inotify(self) -> None:
        if self._inotify is not None:
            asyncio.get_running_loop().remove_reader(self._inotify.fd)
            self._inotify.close()
            self._inotify = None

    def _on_inotify(self) -> None:
        """The loop's callback when inotify has events: note whether names changed and, for
        plain writes, read at once like tail -F; a task switch later, copytruncate may
        already have erased the lines."""
        try:
            data = os.read(self._inotify.fd, 64 * 1024)
        except BlockingIOError:
            data = b""
        offset = 0
        while offset + INOTIFY_EVENT.size <= len(data):
            _, mask, _, name_len = INOTIFY_EVENT.unpack_from(data, offset)
            offset += INOTIFY_EVENT.size + name_len
            if mask & ~IN_MODIFY:
                self._needs_match = True
        if not self._needs_match and not self._is_scanning and not self._rotated:
            for follower in self._live.values():
                self._read_now(follower)
        self._wake.set()

    def _read_now(self, follower: FileFollower) -> None:
        """One bounded read, synchronously; truncation is left to the scan (it reads copies)."""
        if follower.path in self._truncated:
            return
        if was := follower.truncated():
            self._truncated[follower.path] = was
        elif chunk := follower.read():
            assert self._hub is not None
            self._publish(self._hub, follower, chunk.lines, is_backlog=chunk.is_backlog)

    def _watch_dirs(self) -> None:
        """Watch the pattern's fixed directory and every followed file's directory."""
        if self._inotify is None:
            return
        from asyncinotify import Mask

        fixed = self.pattern
        while glob.has_magic(fixed):
            fixed = os.path.dirname(fixed)
        dirs = {os.path.dirname(fixed) if not self.is_glob else fixed}
        dirs |= {os.path.dirname(f.path) for f in self._live.values()}
        mask = Mask.MODIFY | Mask.CREATE | Mask.DELETE | Mask.MOVE | Mask.ATTRIB | Mask.ONLYDIR
        for directory in dirs - self._watched:
            try:
                self._inotify.add_watch(directory or ".", mask)
                self._watched.add(directory)
            except FileNotFoundError:
                pass  # the directory may appear later; the safety poll tries again
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    # Out of watches: polling still works, only slower to notice.
                    self.mode = "polling (inotify watch limit reached)"
                    self._stop_inotify()
                    return
                self._errors[directory] = f"cannot watch {directory}: {exc.strerror}"

    def _next_timeout(self) -> float:
        base = SAFETY_POLL_S if self._inotify is not None else self.options.poll_interval_s
        flushes = [
            f.flush_due_at(self.options.partial_flush_s)
            for f in [*self._rotated, *self._live.values()]
        ]
        due = [t - time.monotonic() for t in flushes if t is not None]
        return max(0.0, min([base, *due]))

    async def _scan(self, hub: EventHub, *, is_first: bool, is_full: bool) -> None:
        """One pass: see what the pattern names now (if full); drain rotated files, then read
        live ones."""
        self._is_scanning = True
        try:
            await self._scan_once(hub, is_first=is_first, is_full=is_full)
        finally:
            self._is_scanning = False

    async def _scan_once(self, hub: EventHub, *, is_first: bool, is_full: bool) -> None:
        if is_full:
            for change in self._match(is_first):
                self._publish_status(hub, change=change)
            self._watch_dirs()
        # Rotated files first: their lines were written before their successors'.
        for follower in list(self._rotated):
            await self._drain(hub, follower)
            if time.monotonic() - follower.last_data_at > ROTATED_GRACE_S:
                self._flush(hub, follower, force=True)
                follower.close()
                self._rotated.remove(follower)
        for follower in list(self._live.values()):
            if was := self._truncated.pop(follower.path, None) or follower.truncated():
                self.truncations += 1
                copy = await self._read_copy(hub, follower, was)
                change = f"truncated: {follower.path} was truncated; reading it from its start"
                if copy:
                    change += f" (lines written before the copy read from {copy})"
                self._publish_status(hub, change=change)
            await self._drain(hub, follower)
            self._flush(hub, follower, force=False)
        self._publish_status(hub)

    async def _read_copy(self, hub: EventHub, follower: FileFollower, was: Position) -> str | None:
        """After copytruncate, lines written between our last read and the copy are only in
        the copy (app.log.1): find it by its bytes at our old offset and read them there."""
        directory, base = os.path.split(follower.path)
        pattern = os.path.join(glob.escape(directory), glob.escape(base) + "?*")
        candidates = []
        for path in glob.glob(pattern):
            with contextlib.suppress(OSError):
                candidates.append((os.stat(path).st_mtime, path))
        for _, path in sorted(candidates, reverse=True)[:COPY_CANDIDATES]:
            try:
                copy = FileFollower(
                    path, max_line_bytes=self.options.max_line_bytes, backlog_lines=None
                )
            except OSError:
                continue
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
        paths = sorted(glob.glob(self.pattern)) if self.is_glob else [self.pattern]
        keys: dict[str, tuple[int, int]] = {}
        for path in paths:
            try:
                st = os.stat(path)
                keys[path] = (st.st_dev, st.st_ino)
            except FileNotFoundError:
                self._errors.pop(path, None)
            except OSError as exc:
                self._errors[path] = f"{path}: {exc.strerror}"
        changes = []
        for path, follower in list(self._live.items()):
            if keys.get(path) != follower.key:
                del self._live[path]
                self._rotated.append(follower)
                self.rotations += 1
                if path in keys:
                    changes.append(f"rotated: {path} is a new file; the old one is read to its end")
                else:
                    changes.append(f"gone: {path} was moved or deleted; waiting for it")
        for path, key in keys.items():
            if path in self._live:
                continue
            moved = next((f for f in self._rotated if f.key == key), None)
            if moved is not None:  # a glob that also names the file's new name
                self._rotated.remove(moved)
                moved.path, self._live[path] = path, moved
            else:
                self._open(path, is_first)
        return changes

    def _open(self, path: str, is_first: bool) -> None:
        backlog = self.options.backlog_lines if is_first else None
        try:
            self._live[path] = FileFollower(
                path, max_line_bytes=self.options.max_line_bytes, backlog_lines=backlog
            )
            self._errors.pop(path, None)
        except FileNotFoundError:
            pass  # gone between stat and open: the next pass sees
        except OSError as exc:
            # Permission denied, a directory, a FIFO: say so, keep trying, serve the rest.
            self._errors[path] = str(exc) if not exc.strerror else f"{path}: {exc.strerror}"

    async def _drain(self, hub: EventHub, follower: FileFollower) -> None:
        while (chunk := follower.read()) is not None:
            self._publish(hub, follower, chunk.lines, is_backlog=chunk.is_backlog)
            await asyncio.sleep(0)  # let metrics, heartbeats and clients run between chunks

    def _flush(self, hub: EventHub, follower: FileFollower, *, force: bool) -> None:
        due = follower.flush_due_at(self.options.partial_flush_s)
        if due is not None and (force or time.monotonic() >= due):
            chunk = follower.flush()
            if chunk:
                self._publish(hub, follower, chunk.lines, is_partial=True)

    def _publish(
        self,
        hub: EventHub,
        follower: FileFollower,
        lines: list[str],
        *,
        is_backlog: bool = False,
        is_partial: bool = False,
    ) -> None:
        self.lines_read += len(lines)
        for start in range(0, len(lines), MAX_LINES_PER_EVENT):
            batch = lines[start : start + MAX_LINES_PER_EVENT]
            payload: dict[str, Any] = {"source": self.name, "file": follower.path, "lines": batch}
            if is_backlog:
                payload["backlog"] = True
            if is_partial:
                payload["partial"] = True  # the last line was flushed without a newline
            self.bytes_read += sum(len(line) + 1 for line in batch)
            hub.publish(LOG, payload, source=self.name)

    def _publish_status(self, hub: EventHub, change: str | None = None) -> None:
        files = sorted(self._live)
        if files:
            state, detail = "following", ", ".join(files)
        elif self._errors:
            state, detail = "error", "; ".join(self._errors.values())
        else:
            state, detail = "waiting", f"waiting for {self.pattern} to appear"
        errors = sorted(self._errors.values())
        current = (state, detail, self.mode, tuple(errors))
        if current == self._last_status and change is None:
            return
        self._last_status = current
        extra: dict[str, Any] = {"mode": self.mode, "files": files, "errors": errors}
        if change:
            extra["change"] = change
        report(hub, self, state, detail, **extra)
