"""DirWatcher: inotify on directories, reported from the event loop's reader callback.

Watching directories (not files) sees writes, creations, renames and deletions of every file
in them with one watch each, including a log's successor that does not exist yet.
"""

from __future__ import annotations

import asyncio
import errno
import os
import struct
from collections.abc import Callable, Iterable
from typing import Any

INOTIFY_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then len bytes of name
IN_MODIFY = 0x2


class DirWatcher:
    """Calls `on_change(names_changed, written)` when anything in the watched directories
    changes.

    `names_changed` is False when only file contents were written; `written` holds the paths
    (watched directory joined with the event's name) of the files written to. `mode` says
    "inotify", or why the owner must poll instead (`is_active` False).
    """

    def __init__(
        self, on_change: Callable[[bool, set[str]], None], *, enabled: bool = True
    ) -> None:
        self.on_change = on_change
        self.is_enabled = enabled
        self.mode = "polling (inotify turned off)" if not enabled else "starting"
        self._inotify: Any = None
        self._watched: set[str] = set()
        # One kernel watch per directory, however many names we asked for it by.
        self._dirs_by_wd: dict[int, set[str]] = {}

    @property
    def is_active(self) -> bool:
        """True while inotify is in use."""
        return self._inotify is not None

    def start(self) -> None:
        """Open inotify, on the running loop; on failure `mode` says why it polls."""
        if not self.is_enabled:
            return
        try:
            from asyncinotify import Inotify

            self._inotify = Inotify()
        except (ImportError, OSError) as exc:
            self.mode = f"polling (inotify unavailable: {exc})"
            return
        self.mode = "inotify"
        os.set_blocking(self._inotify.fd, False)  # read only what is there, never wait
        asyncio.get_running_loop().add_reader(self._inotify.fd, self._on_readable)

    def close(self) -> None:
        """Stop watching; the owner polls from now on."""
        if self._inotify is not None:
            asyncio.get_running_loop().remove_reader(self._inotify.fd)
            self._inotify.close()
            self._inotify = None
            self._watched.clear()
            self._dirs_by_wd.clear()

    def watch(self, directories: Iterable[str]) -> dict[str, str]:
        """Watch these directories too; returns errors by directory. Missing ones are skipped
        (the owner asks again later)."""
        if self._inotify is None:
            return {}
        from asyncinotify import Mask

        mask = Mask.MODIFY | Mask.CREATE | Mask.DELETE | Mask.MOVE | Mask.ATTRIB | Mask.ONLYDIR
        errors: dict[str, str] = {}
        for directory in set(directories) - self._watched:
            try:
                watch = self._inotify.add_watch(directory or ".", mask)
                self._watched.add(directory)
                self._dirs_by_wd.setdefault(watch.wd, set()).add(directory)
            except FileNotFoundError:
                pass
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    # Out of watches: polling still works, only slower to notice.
                    self.mode = "polling (inotify watch limit reached)"
                    self.close()
                    return errors
                errors[directory] = f"cannot watch {directory}: {exc.strerror}"
        return errors

    def _on_readable(self) -> None:
        try:
            data = os.read(self._inotify.fd, 64 * 1024)
        except BlockingIOError:
            return
        names_changed = False
        written: set[str] = set()
        offset = 0
        while offset + INOTIFY_EVENT.size <= len(data):
            wd, mask, _, name_len = INOTIFY_EVENT.unpack_from(data, offset)
            start = offset + INOTIFY_EVENT.size
            offset = start + name_len
            if mask & ~IN_MODIFY:
                names_changed = True
                continue
            name = os.fsdecode(data[start:offset].rstrip(b"\0"))
            written |= {os.path.join(d, name) for d in self._dirs_by_wd.get(wd, ())}
        self.on_change(names_changed, written)
