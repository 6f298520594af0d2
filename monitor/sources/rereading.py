"""FileHistory: a log source's files found again by identity, to read an event's bytes again.

The hub keeps, for every log event, the (st_dev, st_ino) of its file, the byte range of its
lines and their CRC. A client that fell behind gets the lines from here: from a followed
file's own descriptor, or the file found again in its directory after a rename (rotation),
or after copytruncate the copy, which holds the same bytes at the same offsets. The CRC
decides: bytes that changed are never served as the old lines.
"""

from __future__ import annotations

import contextlib
import glob
import os
from collections import OrderedDict
from collections.abc import Callable, Iterable

from monitor.hub.interface import Origin
from monitor.sources.admission import open_regular, refusal
from monitor.sources.crc import crc32
from monitor.sources.follower import FileFollower

Key = tuple[int, int]  # (st_dev, st_ino)
KNOWN_FILES = 1024  # files once followed, by identity: where to look for them to read again
REREAD_FDS = 4  # files no longer followed kept open for reading again (a catch-up reads many)
COPY_CANDIDATES = 3  # after copytruncate, the newest files named like the log may be its copy


class FileHistory:
    """The files one source has followed, found again by identity; `followed()` gives the
    followers open now (their descriptors are used first)."""

    def __init__(self, followed: Callable[[], Iterable[FileFollower]]) -> None:
        self._followed = followed
        self._known: OrderedDict[Key, str] = OrderedDict()  # identity -> last known path
        self._fds: OrderedDict[Key, tuple[int, str]] = OrderedDict()
        self._copies: dict[Key, Key] = {}  # a file truncated by copytruncate -> its copy
        # A replay asks for many events of one file: what was not found is not sought again
        # until the next pass (a second), neither the file nor a copy of it.
        self._missing: set[Key] = set()
        self._no_copy: set[Key] = set()

    def remember(self, follower: FileFollower) -> None:
        """A file now followed: where to look for it later."""
        self._known[follower.key] = follower.path
        self._known.move_to_end(follower.key)
        while len(self._known) > KNOWN_FILES:
            self._known.popitem(last=False)

    def new_pass(self) -> None:
        """Look again for what was not found; let go of deleted files held open (their disk
        space is freed only once nobody holds them)."""
        self._missing.clear()
        self._no_copy.clear()
        for key, (fd, _) in list(self._fds.items()):
            with contextlib.suppress(OSError):
                if os.fstat(fd).st_nlink == 0:
                    os.close(self._fds.pop(key)[0])

    def close(self) -> None:
        for fd, _ in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def read(self, origin: Origin) -> tuple[bytes, str] | None:
        """The origin's bytes and the path they were found at, if a file still holds them
        exactly; None if none does."""
        key = origin.key
        found = None if key in self._missing else self._read_exact(key, origin)
        if found is None and (copy := self._copies.get(key)) is not None:
            found = self._read_exact(copy, origin)
        if found is None and key not in self._no_copy:
            found = self._read_from_copy(origin)
            if found is None:
                self._no_copy.add(key)
        if found is None and key not in self._missing and self._open(key) is None:
            self._missing.add(key)
        return found

    def _read_exact(self, key: Key, origin: Origin) -> tuple[bytes, str] | None:
        found = self._open(key)
        if found is None:
            return None
        fd, path = found
        blob = bytes_at(fd, origin)
        return None if blob is None else (blob, path)

    def _read_from_copy(self, origin: Origin) -> tuple[bytes, str] | None:
        """Truncated under us (copytruncate): the newest few files named like the original
        (app.log.1, app.log-20261202) may hold its bytes; the CRC says which does."""
        original = self._known.get(origin.key)
        if original is None:
            return None
        directory, base = os.path.split(original)
        glob_root = (directory, os.path.realpath(directory))
        candidates = []
        for path in glob.glob(os.path.join(glob.escape(directory), glob.escape(base) + "?*")):
            with contextlib.suppress(OSError):
                st = os.stat(path)
                if not refusal(path, st.st_dev, glob_root) and st.st_size >= origin.end:
                    candidates.append((st.st_mtime, path, (st.st_dev, st.st_ino)))
        for _, path, key in sorted(candidates, reverse=True)[:COPY_CANDIDATES]:
            self._known.setdefault(key, path)
            if (found := self._read_exact(key, origin)) is not None:
                self._copies[origin.key] = key  # the next lines of it are there too
                while len(self._copies) > KNOWN_FILES:
                    del self._copies[next(iter(self._copies))]
                return found
        return None

    def _open(self, key: Key) -> tuple[int, str] | None:
        """A descriptor of the file with this identity: a followed one's, or one opened for
        reading again (kept among the last few); None if it is nowhere to be found."""
        for follower in self._followed():
            if follower.key == key:
                return follower.fd, follower.path
        if (held := self._fds.get(key)) is not None:
            self._fds.move_to_end(key)
            return held
        last = self._known.get(key)
        if last is None:
            return None
        for path in [last, *siblings(last, key[1])]:
            try:
                fd, st = open_regular(path)
            except OSError:
                continue
            if (st.st_dev, st.st_ino) != key:
                os.close(fd)
                continue
            self._known[key] = path
            self._fds[key] = (fd, path)
            while len(self._fds) > REREAD_FDS:
                os.close(self._fds.popitem(last=False)[1][0])
            return fd, path
        return None


def siblings(path: str, inode: int) -> list[str]:
    """Names in `path`'s directory with this inode (the file, renamed by a rotation)."""
    directory = os.path.dirname(path) or "."
    try:
        with os.scandir(directory) as entries:
            return [e.path for e in entries if e.inode() == inode]
    except OSError:
        return []


def bytes_at(fd: int, origin: Origin) -> bytes | None:
    """The origin's bytes in the file open as `fd`, if it holds them exactly (the same
    length and CRC); None if it does not."""
    try:
        blob = os.pread(fd, origin.end - origin.start, origin.start)
    except (OSError, ValueError):  # ValueError: a damaged record's negative length
        return None
    if len(blob) != origin.end - origin.start or crc32(blob) != origin.crc:
        return None
    return blob
