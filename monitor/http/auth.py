"""HTTP Basic authentication: cached bcrypt checks in their own threads, failed-attempt limits
(the users file itself is users.py's)."""

from __future__ import annotations

import argparse
import asyncio
import binascii
import getpass
import hashlib
import hmac
import logging
import secrets
import sys
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from monitor.http.users import USER_RE, SignedIn, UsersFile
from monitor.tasks import cancel_and_wait

log = logging.getLogger(__name__)

BCRYPT_MAX_BYTES = 72  # bcrypt ignores the rest; bcrypt>=5 refuses longer input
MIN_PASSWORD_CHARS = 8  # a shorter one falls to guessing, whatever the hash costs
HASH_COST = 12
CACHE_TTL_S = 300.0
CACHE_MAX_ENTRIES = 1024
MAX_FAILURES = 10
FAILURE_WINDOW_S = 60.0
MAX_TRACKED_ADDRESSES = 10_000
MAX_CHECKS_PER_ADDRESS = 2  # bcrypt checks in flight for one address
BCRYPT_WORKERS = 2
WATCH_INTERVAL_S = 2.0  # how soon a removed user's open streams end
MAX_PENDING_CHECKS = 8  # running and queued; beyond this a sign-in is 503, not a long wait


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

    def refund(self, address: str) -> None:
        """Take back the latest failure of `address`: it was reserved, and the check passed."""
        times = self._failures.get(address)
        if times:
            times.pop()


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of one request's credentials."""

    ok: bool
    message: str = ""
    status: int = 401  # when not ok: 401, 429 (too many failures or checks), 503 (busy)
    retry_after_s: float = 0.0  # > 0 with 429 and 503: come back later
    user: str = ""  # when ok


TOO_MANY_FAILURES = "too many failed sign-ins; try again later"


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
    """Checks Basic credentials against a UsersFile, computing as few bcrypt hashes as it can,
    in threads of its own: guessing cannot starve the default executor (the sampler's)."""

    def __init__(self, users: UsersFile, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.users = users
        self.failures = FailureLimiter(clock=clock)
        self.clock = clock
        self.verifications = 0  # bcrypt checks run (on /metrics: the cache's effect)
        self._key = secrets.token_bytes(32)  # per process: cache digests mean nothing elsewhere
        self._cache: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._pending: dict[bytes, asyncio.Future[bool]] = {}
        self._in_flight: Counter[str] = Counter()  # checks running or queued, by address
        self._executor: ThreadPoolExecutor | None = None  # made at the first check
        self._reloading: asyncio.Task[None] | None = None
        self.signed_in = SignedIn()
        self._watcher: asyncio.Task[None] | None = None

    def reload(self) -> None:
        """Read the users file again now (SIGHUP), forgetting every cached check."""
        self.users.force()  # requests meanwhile wait for the new file
        self._cache.clear()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not serving: the next check reads it
            return
        self._reloading = loop.create_task(self._refresh(), name="reload users")

    async def _refresh(self) -> None:
        """Reload the users file if it changed; close what removed users have open."""
        if await self.users.refresh():
            self._cache.clear()
            self.signed_in.close_stale(self.users.users)

    def open_request(self, user: str, close: Callable[[], None]) -> Callable[[], None]:
        """Note a signed-in request (a stream may last days): `close` ends it if `user` is
        removed or given a new password meanwhile. Call the result when it ends."""
        done = self.signed_in.add(user, self.users.users.get(user, b""), close)
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.get_running_loop().create_task(self._watch(), name="users")
        return done

    async def _watch(self) -> None:
        # Streams make no requests: while any is open, look at the file now and then.
        while self.signed_in:
            await asyncio.sleep(WATCH_INTERVAL_S)
            await self._refresh()

    async def close(self) -> None:
        """Stop the file watch and the bcrypt threads (app cleanup); queued checks are dropped."""
        await cancel_and_wait(t for t in (self._watcher, self._reloading) if t is not None)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def authenticate(self, header: str | None, address: str) -> Verdict:
        """The verdict for one request's Authorization header from `address`."""
        # Before anything else, cache included: a cache hit must not let guessing go on.
        wait_s = self.failures.retry_after_s(address)
        if wait_s > 0:
            return Verdict(False, TOO_MANY_FAILURES, 429, wait_s)
        credentials = parse_basic(header)
        if credentials is None:
            return Verdict(False, "authentication required")
        return await self.check_from(address, *credentials)

    async def check_from(self, address: str, user: str, password: str) -> Verdict:
        """Check a password sent from `address`. A new bcrypt check counts as a failure before
        it runs, so concurrent guesses cannot outrun the limit; a right password refunds it."""
        await self._refresh()
        generation = self.users.generation
        stored = self.users.users.get(user)
        # Keyed by user, password and the stored hash: a hit proves this very password.
        digest = hmac.new(
            self._key, b"\0".join((user.encode(), password.encode(), stored or b"")), hashlib.sha256
        ).digest()
        if stored is not None and self._cached(user, digest):
            return Verdict(True, user=user)
        future = self._pending.get(digest)
        if future is None:
            if refusal := self._refusal(address):
                return refusal
            self.failures.record(address)  # reserved now, refunded below if right
            # An unknown user costs a bcrypt check too, against the file's costliest hash, so
            # timing does not tell names apart.
            future = self._start_check(address, digest, password, stored or self.users.fallback)
            is_mine = True
        else:
            is_mine = False  # the same credentials are being checked: share that check
        if not (await asyncio.shield(future) and stored is not None):
            return Verdict(False, "wrong user or password")
        if is_mine:
            self.failures.refund(address)
        if generation == self.users.generation:
            self._remember(user, digest)
        return Verdict(True, user=user)

    def _refusal(self, address: str) -> Verdict | None:
        """Why a new check for `address` may not start now, if it may not."""
        if (wait_s := self.failures.retry_after_s(address)) > 0:  # filled while we waited
            return Verdict(False, TOO_MANY_FAILURES, 429, wait_s)
        busy = "too many sign-ins in progress; try again shortly"
        if self._in_flight[address] >= MAX_CHECKS_PER_ADDRESS:
            return Verdict(False, busy, 429, 1.0)
        if sum(self._in_flight.values()) >= MAX_PENDING_CHECKS:
            return Verdict(False, busy, 503, 1.0)
        return None

    def _start_check(
        self, address: str, digest: bytes, password: str, hashed: bytes
    ) -> asyncio.Future[bool]:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(BCRYPT_WORKERS, thread_name_prefix="bcrypt")
        future = asyncio.get_running_loop().run_in_executor(
            self._executor, self._verify, password, hashed
        )
        self.verifications += 1  # here, on the loop: two threads would race on `+=`
        self._pending[digest] = future  # concurrent requests with these credentials share it
        self._in_flight[address] += 1

        def done(_: object) -> None:  # when the thread is done, not when a request gives up
            self._pending.pop(digest, None)
            self._in_flight[address] -= 1
            if self._in_flight[address] <= 0:
                del self._in_flight[address]

        future.add_done_callback(done)
        return future

    def _verify(self, password: str, hashed: bytes) -> bool:
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
