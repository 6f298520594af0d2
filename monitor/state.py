"""The state directory: what outlives the process (the position log), owned by one server at a
time. A directory that is missing and cannot be made, is not writable, or is held by another
server is one warning and a start without state, never a failure to start."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # collections.abc.Buffer is Python 3.12's
    from typing_extensions import Buffer

log = logging.getLogger(__name__)

LOCK = "lock"


def default_state_dir() -> str:
    """systemd's StateDirectory= (first of its list), else none: without one, nothing is
    kept across restarts (`make run` passes a per-user one)."""
    return os.environ.get("STATE_DIRECTORY", "").split(":")[0]


class StateDir:
    """An open, locked state directory; `path(name)` names a file in it."""

    def __init__(self, root: str, lock_fd: int) -> None:
        self.root = root
        self._lock_fd = lock_fd

    @classmethod
    def open(cls, root: str) -> StateDir | None:
        """The directory, created (0700) if need be and locked for this process; None, with
        a warning saying why, if that cannot be."""
        try:
            os.makedirs(root, mode=0o700, exist_ok=True)
            fd = os.open(os.path.join(root, LOCK), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            log.warning("state directory %s: %s; starting without state", root, exc.strerror)
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            log.warning(
                "state directory %s is in use by another server; starting without state", root
            )
            return None
        return cls(root, fd)

    def path(self, name: str) -> str:
        return os.path.join(self.root, name)

    def read_json(self, name: str) -> dict[str, Any] | None:
        """A JSON object saved by write_json; None if absent, or (with a warning) unreadable."""
        path = self.path(name)
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("state file %s is unreadable (%s); starting it afresh", path, exc)
            return None
        if not isinstance(data, dict):
            log.warning("state file %s is not a JSON object; starting it afresh", path)
            return None
        return data

    def write_json(self, name: str, data: dict[str, Any]) -> None:
        """Replace the file whole with this JSON object."""
        self.write_bytes(name, json.dumps(data).encode())

    def read_bytes(self, name: str) -> bytes | None:
        """A file's bytes; None if absent, or (with a warning) unreadable."""
        try:
            with open(self.path(name), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("state file %s is unreadable (%s)", self.path(name), exc.strerror)
            return None

    def write_bytes(self, name: str, data: bytes | Iterable[Buffer]) -> None:
        """Replace the file whole (a crash leaves the old one or the new one, never half),
        with `data` or the parts it yields, written one after the other without joining."""
        path = self.path(name)
        temporary = f"{path}.tmp"
        try:
            with open(temporary, "wb") as f:
                for part in [data] if isinstance(data, bytes) else data:
                    f.write(part)
            os.replace(temporary, path)
        except OSError as exc:
            log.warning("state file %s not written: %s", path, exc.strerror)
            with contextlib.suppress(OSError):
                os.unlink(temporary)

    def close(self) -> None:
        os.close(self._lock_fd)  # releases the lock
