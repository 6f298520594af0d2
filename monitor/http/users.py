"""The users file: `user:bcrypt-hash` lines, read safely (a regular file of bounded size, never
a FIFO or a device), checked, and read again off the event loop when it changes."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import re
import stat
from collections.abc import Callable

from monitor.values import ConfigError, read_file_text

log = logging.getLogger(__name__)

# $2y$ (htpasswd -B), $2b$ (the bcrypt library), $2a$: the same algorithm for our purposes.
BCRYPT_RE = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")
USER_RE = re.compile(r"[^\s:]{1,128}")
MAX_COST = 14  # ~1 s per check on one core; each step doubles it ($2b$31$: days)
WEAK_COST = 10  # below this, guessing is cheap (htpasswd -B's default is 5)
# Checked when the user is unknown and the file has no hash to borrow, so an unknown name
# costs about as much as a wrong password. Its password is random and thrown away.
FALLBACK_HASH = b"$2b$12$orrtmrL2ImXKVJNvhzBsT.goaV5TNh0cBVam4U36ftLBJ7MpLMf5a"


def cost_of(hashed: bytes) -> int:
    """The cost (log2 of the rounds) of a hash that matched BCRYPT_RE."""
    return int(hashed[4:6])


def costliest_hash(users: dict[str, bytes]) -> bytes:
    """The hash an unknown user name is checked against: the file's slowest, so its timing
    is never shorter than a real user's check; FALLBACK_HASH for an empty file."""
    return max(users.values(), key=cost_of, default=FALLBACK_HASH)


def parse_users(text: str, path: str) -> dict[str, bytes]:
    """`user:bcrypt-hash` lines; a bad line is a ConfigError naming the file and line."""
    users: dict[str, bytes] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"users file {path}, line {number}"
        user, sep, hashed = line.partition(":")
        if not sep or not USER_RE.fullmatch(user) or not hashed:
            raise ConfigError(
                f"{where}: expected USER:HASH (from `sse-monitor hash-password USER`)"
            )
        if not BCRYPT_RE.fullmatch(hashed):
            raise ConfigError(
                f"{where}: user {user!r} has an unsupported hash; only bcrypt ($2y$/$2b$/$2a$, "
                "as written by `htpasswd -B` or `sse-monitor hash-password`) is accepted"
            )
        if user in users:
            raise ConfigError(f"{where}: user {user!r} is listed twice")
        cost = cost_of(hashed.encode("ascii"))
        if cost > MAX_COST:  # every check of it would hold a worker for minutes
            raise ConfigError(
                f"{where}: user {user!r} has bcrypt cost {cost}; at most {MAX_COST} is accepted "
                "(make a new line with `sse-monitor hash-password USER`)"
            )
        users[user] = hashed.encode("ascii")
    return users


def read_users(path: str) -> dict[str, bytes]:
    """Read and check a users file; any failure is a one-line ConfigError."""
    return load_users(path)[0]


def load_users(path: str) -> tuple[dict[str, bytes], bool]:
    """The users of a file, and whether others may read it (for warn_about)."""
    text, st = read_file_text(path, "users file")
    users = parse_users(text, path)
    if not users:
        raise ConfigError(
            f"users file {path}: no users; add lines from `sse-monitor hash-password`"
        )
    return users, bool(st.st_mode & stat.S_IROTH)


def warn_about(path: str, users: dict[str, bytes], is_world_readable: bool) -> None:
    """One WARNING line per weak hash, and one if others may read the file."""
    for user, hashed in users.items():
        if (cost := cost_of(hashed)) < WEAK_COST:
            log.warning(
                "users file %s: user %r has bcrypt cost %d, cheap to guess; make a new line "
                "with `sse-monitor hash-password` (cost 12) or `htpasswd -B -C 12`",
                path,
                user,
                cost,
            )
    if is_world_readable:
        log.warning("users file %s is readable by every local user; chmod o-r it", path)


class UsersFile:
    """The users file, read again (in a thread) whenever it changes on disk."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.generation = 0  # bumped on every reload: verifications from before are stale
        self._stamp = self._stat()
        self._is_forced = False
        self._lock = asyncio.Lock()
        users, is_world_readable = load_users(path)  # at start a bad file stops the server
        warn_about(path, users, is_world_readable)
        self._set(users)

    def _set(self, users: dict[str, bytes]) -> None:
        self.users = users
        self.fallback = costliest_hash(users)

    def _stat(self) -> tuple[int, int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_mode)

    def force(self) -> None:
        """Make the next refresh() read the file whatever its stat says (SIGHUP)."""
        self._is_forced = True
        self.generation += 1  # checks under way now must not be cached

    async def refresh(self) -> bool:
        """Reload if the file changed (a stat on the loop; the read in a thread), or if
        forced; True if it was reloaded. Requests meanwhile wait for the new users."""
        if self._stat() == self._stamp and not self._is_forced:
            return False
        async with self._lock:
            stamp = self._stat()
            if stamp == self._stamp and not self._is_forced:
                return False  # another request reloaded it while this one waited
            self._stamp, self._is_forced = stamp, False
            self.generation += 1
            try:
                users, is_world_readable = await asyncio.to_thread(load_users, self.path)
            except ConfigError as exc:
                # Fail closed: a half-edited file must not keep a removed user working.
                self._set({})
                log.error("%s; nobody can sign in until it is fixed", exc)
                return True
            self._set(users)
            log.info("users file %s reloaded: %d users", self.path, len(users))
            warn_about(self.path, users, is_world_readable)
            return True


class SignedIn:
    """Requests under way (streams, mostly) by user, with the hash each signed in against:
    a user removed from the file, or given a new password, has them closed."""

    def __init__(self) -> None:
        self._open: dict[int, tuple[str, bytes, Callable[[], None]]] = {}
        self._ids = itertools.count()

    def __len__(self) -> int:
        return len(self._open)

    def add(self, user: str, hashed: bytes, close: Callable[[], None]) -> Callable[[], None]:
        """Note a request of `user`; call the result when it ends."""
        key = next(self._ids)
        self._open[key] = (user, hashed, close)

        def done() -> None:
            self._open.pop(key, None)

        return done

    def close_stale(self, users: dict[str, bytes]) -> int:
        """Close the requests whose user is gone or has another hash; how many."""
        stale = [key for key, (user, hashed, _) in self._open.items() if users.get(user) != hashed]
        for key in stale:
            user, _, close = self._open.pop(key)
            close()
        if stale:
            log.info("users file changed: closed %d open requests of removed users", len(stale))
        return len(stale)
