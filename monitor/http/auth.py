"""HTTP Basic authentication: the users file, cached bcrypt checks, failed-attempt limits."""

from __future__ import annotations

import argparse
import asyncio
import binascii
import getpass
import hashlib
import hmac
import logging
import os
import re
import secrets
import sys
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from monitor.values import ConfigError, read_text

log = logging.getLogger(__name__)

# $2y$ (htpasswd -B), $2b$ (the bcrypt library), $2a$: the same algorithm for our purposes.
BCRYPT_RE = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")
USER_RE = re.compile(r"[^\s:]{1,128}")
BCRYPT_MAX_BYTES = 72  # bcrypt ignores the rest; bcrypt>=5 refuses longer input
MIN_PASSWORD_CHARS = 8  # a shorter one falls to guessing, whatever the hash costs
HASH_COST = 12
CACHE_TTL_S = 300.0
CACHE_MAX_ENTRIES = 1024
MAX_FAILURES = 10
FAILURE_WINDOW_S = 60.0
MAX_TRACKED_ADDRESSES = 10_000
# Checked when the user is unknown and the file has no hash to borrow, so an unknown name
# costs about as much as a wrong password. Its password is random and thrown away.
FALLBACK_HASH = b"$2b$12$orrtmrL2ImXKVJNvhzBsT.goaV5TNh0cBVam4U36ftLBJ7MpLMf5a"


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
        users[user] = hashed.encode("ascii")
    return users


def read_users(path: str) -> dict[str, bytes]:
    """Read and check a users file; any failure is a one-line ConfigError."""
    users = parse_users(read_text(path, "users file"), path)
    if not users:
        raise ConfigError(
            f"users file {path}: no users; add lines from `sse-monitor hash-password`"
        )
    return users


class UsersFile:
    """The users file, read again whenever it changes on disk."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.generation = 0  # bumped on every reload: verifications from before are stale
        self._stamp = self._stat()
        self.users = read_users(path)  # at start a bad file stops the server

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def refresh(self, *, force: bool = False) -> bool:
        """Reload if the file changed (a stat, no read otherwise), or always with `force`;
        True if it was reloaded."""
        stamp = self._stat()
        if stamp == self._stamp and not force:
            return False
        self._stamp = stamp
        self.generation += 1
        try:
            self.users = read_users(self.path)
            log.info("users file %s reloaded: %d users", self.path, len(self.users))
        except ConfigError as exc:
            # Fail closed: a half-edited file must not keep a removed user working.
            self.users = {}
            log.error("%s; nobody can sign in until it is fixed", exc)
        return True


class FailureLimiter:
    """Failed sign-ins per client address within a sliding window."""

    def __init__(
        self,
        max_failures: int = MAX_FAILURES,
        window_s: float = FAILURE_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}

    def retry_after_s(self, address: str) -> float:
        """Seconds until `address` may try again; 0 if it may now."""
        times = self._failures.get(address)
        if times is None or len(times) < self.max_failures:
            return 0.0
        return max(0.0, times[0] + self.window_s - self.clock())

    def record(self, address: str) -> None:
        """Count one failure; the oldest addresses are forgotten beyond a bound."""
        times = self._failures.pop(address, None) or deque(maxlen=self.max_failures)
        times.append(self.clock())
        self._failures[address] = times  # re-inserted: dict order is least recently failed first
        while len(self._failures) > MAX_TRACKED_ADDRESSES:
            del self._failures[next(iter(self._failures))]
        if len(times) == self.max_failures and self.retry_after_s(address) > 0:
            log.warning("%d failed sign-ins from %s: refusing it for a while", len(times), address)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of one request's credentials."""

    ok: bool
    message: str = ""
    retry_after_s: float = 0.0  # > 0: too many failures, come back later


def parse_basic(header: str | None) -> tuple[str, str] | None:
    """(user, password) from an `Authorization: Basic ...` header; None if absent or malformed."""
    if not header:
        return None
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = binascii.a2b_base64(encoded.strip(), strict_mode=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


class Authenticator:
    """Checks Basic credentials against a UsersFile, computing as few bcrypt hashes as it can."""

    def __init__(self, users: UsersFile, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.users = users
        self.failures = FailureLimiter(clock=clock)
        self.clock = clock
        self.verifications = 0  # bcrypt checks run (on /metrics: the cache's effect)
        self._key = secrets.token_bytes(32)  # per process: cache digests mean nothing elsewhere
        self._cache: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._pending: dict[bytes, asyncio.Task[bool]] = {}

    def reload(self) -> None:
        """Read the users file again now (SIGHUP), forgetting every cached check."""
        self.users.refresh(force=True)
        self._cache.clear()

    async def authenticate(self, header: str | None, address: str) -> Verdict:
        """The verdict for one request's Authorization header from `address`."""
        # Before anything else, cache included: a cache hit must not let guessing go on.
        wait_s = self.failures.retry_after_s(address)
        if wait_s > 0:
            return Verdict(False, "too many failed sign-ins; try again later", wait_s)
        credentials = parse_basic(header)
        if credentials is None:
            return Verdict(False, "authentication required")
        if await self.check(*credentials):
            return Verdict(True)
        self.failures.record(address)
        return Verdict(False, "wrong user or password")

    async def check(self, user: str, password: str) -> bool:
        """True if `password` is `user`'s; bcrypt runs at most once per TTL per user."""
        if self.users.refresh():
            self._cache.clear()
        generation = self.users.generation
        stored = self.users.users.get(user)
        # Keyed by user, password and the stored hash: a hit proves this very password.
        digest = hmac.new(
            self._key, b"\0".join((user.encode(), password.encode(), stored or b"")), hashlib.sha256
        ).digest()
        if stored is not None and self._cached(user, digest):
            return True
        task = self._pending.get(digest)
        if task is None:
            # An unknown user costs a bcrypt check too, so timing does not tell names apart.
            against = stored or next(iter(self.users.users.values()), FALLBACK_HASH)
            task = asyncio.create_task(asyncio.to_thread(self._verify, password, against))
            self._pending[digest] = task  # concurrent requests with these credentials share it
            task.add_done_callback(lambda _: self._pending.pop(digest, None))
        ok = await asyncio.shield(task) and stored is not None
        if ok and generation == self.users.generation:
            self._remember(user, digest)
        return ok

    def _verify(self, password: str, hashed: bytes) -> bool:
        self.verifications += 1
        try:
            import bcrypt  # here, not at start: a server without a users file does without it

            return bcrypt.checkpw(password.encode()[:BCRYPT_MAX_BYTES], hashed)
        except ValueError:  # a hash bcrypt cannot read: no match
            return False

    def _cached(self, user: str, digest: bytes) -> bool:
        entry = self._cache.get(user)
        if entry is None or entry[1] <= self.clock():
            return False
        return hmac.compare_digest(entry[0], digest)

    def _remember(self, user: str, digest: bytes) -> None:
        self._cache[user] = (digest, self.clock() + CACHE_TTL_S)
        self._cache.move_to_end(user)
        while len(self._cache) > CACHE_MAX_ENTRIES:
            self._cache.popitem(last=False)


def read_new_password() -> str:
    """The password from the terminal (asked twice) or one line of stdin; ValueError if unusable."""
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise ValueError("the passwords do not match")
    else:
        password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    if len(password) < MIN_PASSWORD_CHARS:
        raise ValueError(f"password shorter than {MIN_PASSWORD_CHARS} characters")
    if len(password.encode()) > BCRYPT_MAX_BYTES:
        raise ValueError(f"password longer than {BCRYPT_MAX_BYTES} bytes (bcrypt ignores the rest)")
    return password


def run_hash_password(args: argparse.Namespace) -> int:
    """`sse-monitor hash-password USER`: print a users-file line; exit status."""
    user: str = args.user
    if not USER_RE.fullmatch(user):
        print(f"sse-monitor: user {user!r}: 1-128 characters, no ':' or spaces", file=sys.stderr)
        return 2
    try:
        password = read_new_password()
    except (ValueError, EOFError) as exc:
        print(f"sse-monitor: {str(exc) or 'no password given'}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("", file=sys.stderr)
        return 130
    import bcrypt

    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(HASH_COST)).decode("ascii")
    print(f"{user}:{hashed}")
    return 0
