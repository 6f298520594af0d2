"""FileTailer: follows a named path or glob like `tail -F` and publishes `log` events.

Files are tracked by inode, not by name: a rotated (renamed) file is read to its end while
its successor is read from its start; a shrunken file was truncated; a vanished name means
waiting for the file to come back. inotify on the directories wakes it within milliseconds;
where inotify is unavailable it polls.
"""

from __future__ import annotations

import asyncio
import errno
import glob
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

from monitor.events import LOG
from monitor.follow import FileFollower
from monitor.hub import EventHub
from monitor.sources import report

log = logging.getLogger(__name__)

SAFETY_POLL_S = 1.0  # even with inotify, look again this often (new directories, missed events)
ROTATED_GRACE_S = 5.0  # keep reading a rotated-away file until it has been quiet this long
MAX_LINES_PER_EVENT = 2000


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
        self._watched: set[str] = set()
        self._inotify: Any = None
        self._pump: asyncio.Task[None] | None = None
        self._last_status: tuple[Any, ...] = ()

    async def run(self, hub: EventHub) -> None:
        """Follow the files until cancelled."""
        self._pump = self._start_inotify()
        try:
            await self._scan(hub, is_first=True)
            while True:
                try:
                    async with asyncio.timeout(self._next_timeout()):
                        await self._wake.wait()
                except TimeoutError:
                    pass
                self._wake.clear()
                await self._scan(hub, is_first=False)
        finally:
            if self._pump:
                self._pump.cancel()
            if self._inotify:
                self._inotify.close()
            for follower in [*self._live.values(), *self._rotated]:
                follower.close()
            self._live.clear()
            self._rotated.clear()

    def _start_inotify(self) -> asyncio.Task[None] | None:
        if not self.options.use_inotify:
            self.mode = "polling (inotify turned off)"
            return None
        try:
            from asyncinotify import Inotify

            self._inotify = Inotify()
        except (ImportError, OSError) as exc:
            self.mode = f"polling (inotify unavailable: {exc})"
            return None
        self.mode = "inotify"
        return asyncio.create_task(self._pump_inotify(), name=f"inotify:{self.name}")

    async def _pump_inotify(self) -> None:
        inotify = self._inotify
        async for _ in inotify:
            self._wake.set()

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
        mask = Mask.MODIFY | Mask.CREATE | Mask.DELETE | Mask.MOVE | Mask.ATTRIB | Mask.CLOSE_WRITE
        for directory in dirs - self._watched:
            try:
                self._inotify.add_watch(directory or ".", mask | Mask.ONLYDIR)
                self._watched.add(directory)
            except FileNotFoundError:
                pass  # the directory may appear later; the safety poll tries again
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    # Out of watches: polling still works, only slower to notice.
                    self.mode = "polling (inotify watch limit reached)"
                    if self._pump:
                        self._pump.cancel()
                    self._inotify.close()
                    self._inotify = None
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

    async def _scan(self, hub: EventHub, *, is_first: bool) -> None:
        """One pass: see what the pattern names now; drain rotated files, then read live ones."""
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
            if follower.truncated():
                self.truncations += 1
                change = f"truncated: {follower.path} shrank; reading it from its start"
                self._publish_status(hub, change=change)
            await self._drain(hub, follower)
            self._flush(hub, follower, force=False)
        self._publish_status(hub)

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
                if path in keys:
                    self.rotations += 1
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
