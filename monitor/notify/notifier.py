"""The notifier: a hub consumer of `alert` events that delivers each transition to every
target that wants it, at most once per target, retried with backoff, never on the path of
a stream.

Each target has its own bounded queue and one task that delivers in order, one at a time:
a receiver that hangs costs its own task's time (bounded by the target's timeout), never the
event loop's. A 5xx, a 408, a timeout or a refused connection is retried (1 s doubling to
5 min, with jitter; a 429's Retry-After is honoured) until `retry_for` after the first try;
another 4xx or a redirect is not retried. What had to be dropped is counted and logged.
A rule that changes state more than twice within a minute is held and summed up at the end
of that minute; a firing rule is said again every `repeat`, if set. Pending deliveries and
the ids of delivered ones are kept in the state directory (outbox.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import email.utils
import json
import logging
import math
import os
import random
import signal
import tempfile
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from monitor.hub.events import ALERT, STATUS, Event
from monitor.hub.interface import Consumable, Publisher
from monitor.notify.formats import alert_body, environment, headline, request_of
from monitor.notify.outbox import Delivery, Outbox
from monitor.notify.targets import Target
from monitor.tasks import cancel_and_wait, consume

log = logging.getLogger(__name__)

MAX_PENDING = 100  # per target; past it the oldest waiting one is dropped (and counted)
FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 300.0
MAX_RETRY_AFTER_S = 600.0
FLAP_WINDOW_S = 60.0
FLAP_CHANGES = 2  # more changes than this within the window: held, then summed up
OUTPUT_BYTES = 4096  # of a command's output, kept for its error message
STATUS_SOURCE = "notify"  # the name the notifier's status events carry


@dataclass(frozen=True, slots=True)
class Outcome:
    """One try: delivered, or why not and whether trying again may help."""

    ok: bool
    detail: str
    retry: bool = False
    retry_after_s: float | None = None


@dataclass(slots=True)
class TargetState:
    """A target's queue and figures (for /api/notify, /metrics and the dashboard)."""

    target: Target
    queue: deque[Delivery] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    in_flight: Delivery | None = None
    sent: int = 0
    failed: int = 0  # not retried (a 4xx), or retried until retry_for ran out
    dropped: int = 0  # never tried: the queue was full
    retries: int = 0
    last_success: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    # Flapping, by rule: times of the changes offered within the window; held changes.
    changes: dict[str, deque[float]] = field(default_factory=dict)
    held: dict[str, tuple[dict[str, Any], int]] = field(default_factory=dict)

    @property
    def pending(self) -> int:
        return len(self.queue) + (self.in_flight is not None)

    def view(self) -> dict[str, Any]:
        t = self.target
        return {
            "name": t.name,
            "kind": t.kind,
            "where": t.where(),
            "pending": self.pending,
            "sent": self.sent,
            "failed": self.failed,
            "dropped": self.dropped,
            "retries": self.retries,
            "last_success": self.last_success,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
        }


class Notifier:
    """Delivers alert transitions to the configured targets."""

    def __init__(
        self,
        targets: Sequence[Target],
        *,
        hub: Publisher | None = None,
        host: str,
        public_url: str | None = None,
        outbox: Outbox | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.hub = hub  # where the targets' health goes, as a `status` of source "notify"
        self.host = host
        self.public_url = public_url
        self.outbox = outbox or Outbox()
        self.clock = clock
        self.states = {t.name: TargetState(t) for t in targets}
        self._firing: dict[str, dict[str, Any]] = {}  # rule -> its firing body (for repeats)
        self._timers: list[asyncio.TimerHandle] = []
        self._session: aiohttp.ClientSession | None = None

    def view(self) -> list[dict[str, Any]]:
        """Every target's state, for /api/notify."""
        return [s.view() for s in self.states.values()]

    async def run(self, hub: Consumable) -> None:
        """Deliver what the last run left pending, then every alert transition from now on,
        until cancelled."""
        if not self.states:
            return
        for delivery in self.outbox.load(self.states):
            self.states[delivery.target].queue.append(delivery)
        self._report()
        workers = [asyncio.create_task(self._worker(s)) for s in self.states.values()]
        try:
            await consume(hub, frozenset({ALERT}), self.handle, "notify")
        finally:
            for timer in self._timers:
                timer.cancel()
            for state in self.states.values():  # held changes go out as their summaries
                for rule in list(state.held):
                    self._summarize(state, rule)
            try:
                await cancel_and_wait(workers)
            finally:
                self._save()
                if self._session is not None:
                    await self._session.close()

    def handle(self, event: Event) -> None:
        """One alert transition: a delivery for each target that wants it."""
        alert = event.payload
        # A fleet's `host down` names its host: one rule, a firing per host.
        host = str(alert.get("host") or self.host)
        rule = str(alert.get("rule")) if host == self.host else f"{alert.get('rule')}@{host}"
        is_firing = alert.get("state") == "firing"
        # A firing began at its `since`; a resolve ends the firing this notifier saw begin.
        began = None if is_firing else self._firing.pop(rule, {}).get("started")
        body = alert_body(alert, event.id, host=host, public_url=self.public_url, started=began)
        if is_firing:
            self._firing[rule] = body
        for state in self.states.values():
            if not state.target.wants(alert):
                continue
            if not alert.get("restored"):
                self._offer_damped(state, rule, body)
            elif self.outbox.last_state(state.target.name, rule) != "firing":
                # Firing since before a restart, but this target was not told (the server
                # stopped between the rule's change and its notification): tell it now.
                self._offer_damped(state, rule, body)
            else:  # told then: no transition, but its repeats go on
                self._start_repeats(state, rule, body)

    def _offer_damped(self, state: TargetState, rule: str, body: dict[str, Any]) -> None:
        """Offer a change unless the rule is flapping: then hold it for the summary."""
        now = time.monotonic()
        changes = state.changes.setdefault(rule, deque())
        while changes and now - changes[0] > FLAP_WINDOW_S:
            changes.popleft()
        changes.append(now)
        if rule in state.held or len(changes) > FLAP_CHANGES:
            held = state.held.get(rule)
            if held is None:  # the first one held: sum up when the window has passed
                delay = FLAP_WINDOW_S - (now - changes[0])
                self._later(delay, self._summarize, state, rule)
            state.held[rule] = (body, len(changes))
            return
        self._offer(state, body)
        self._start_repeats(state, rule, body)

    def _start_repeats(self, state: TargetState, rule: str, body: dict[str, Any]) -> None:
        """For a target with `repeat`: say a firing rule again until its next change."""
        if body["state"] == "firing" and state.target.repeat_s:
            self._later(state.target.repeat_s, self._repeat, state, rule, body["id"], 1)

    def _summarize(self, state: TargetState, rule: str) -> None:
        body, changes = state.held.pop(rule)
        summary = {
            **body,
            "id": f"{body['id']}:flapping",
            "message": f"changed state {changes} times within {FLAP_WINDOW_S:.0f}s "
            f"(flapping); now {body['state']}: {body['message']}",
            "flapping": {"changes": changes, "window_s": FLAP_WINDOW_S},
        }
        state.changes.pop(rule, None)
        self._offer(state, summary)
        self._start_repeats(state, rule, body)

    def _repeat(self, state: TargetState, rule: str, first_id: str, n: int) -> None:
        body = self._firing.get(rule)
        if body is None or body["id"] != first_id or rule in state.held:
            return  # changed meanwhile: resolved, or firing anew (which repeats on its own)
        self._offer(state, {**body, "id": f"{first_id}:repeat-{n}", "repeat": n})
        assert state.target.repeat_s is not None
        self._later(state.target.repeat_s, self._repeat, state, rule, first_id, n + 1)

    def _later(self, delay: float, callback: Callable[..., None], *args: Any) -> None:
        loop = asyncio.get_running_loop()
        self._timers = [t for t in self._timers if not t.cancelled() and t.when() > loop.time()]
        self._timers.append(loop.call_later(max(0.0, delay), callback, *args))

    def _offer(self, state: TargetState, body: dict[str, Any]) -> None:
        delivery = Delivery(state.target.name, body)
        if self.outbox.was_delivered(delivery):
            return
        self.outbox.told(delivery)
        lost = None
        if len(state.queue) >= MAX_PENDING:
            lost = state.queue.popleft()
            state.dropped += 1
            log.error(
                "notify %s: %d notifications waiting; dropped the oldest (%s)",
                state.target.name,
                MAX_PENDING,
                headline(lost.body),
            )
        state.queue.append(delivery)
        state.wake.set()
        self._save()
        if lost is not None:
            self._report()

    def _report(self) -> None:
        """The targets' health as a `status` event (sticky: every new dashboard gets it)."""
        if self.hub is None or not self.states:
            return
        views = self.view()
        failing = [v["name"] for v in views if _is_failing(v)]
        detail = f"failing: {', '.join(failing)}" if failing else f"{len(views)} targets"
        status = {"source": STATUS_SOURCE, "kind": "notify", "detail": detail, "targets": views}
        state = "error" if failing else "running"
        self.hub.publish(STATUS, status | {"state": state, "ts": self.clock()})

    def _save(self) -> None:
        pending = [
            d
            for s in self.states.values()
            for d in ([s.in_flight] if s.in_flight else []) + list(s.queue)
        ]
        self.outbox.save(pending)

    async def _worker(self, state: TargetState) -> None:
        """Deliver the target's queue in order, one at a time."""
        while True:
            if not state.queue:
                state.wake.clear()
                await state.wake.wait()
                continue
            state.in_flight = state.queue.popleft()
            try:
                await self._deliver(state, state.in_flight)
            except Exception:  # noqa: BLE001 - a bug must not end the target's deliveries
                state.failed += 1
                log.exception("notify %s: could not deliver; dropped", state.target.name)
            finally:
                if not asyncio.current_task().cancelling():  # type: ignore[union-attr]
                    state.in_flight = None
                    self._save()
                    self._report()

    async def _deliver(self, state: TargetState, delivery: Delivery) -> None:
        """Try until delivered, refused for good, or out of retry time."""
        target = state.target
        delivery.first_try = delivery.first_try or self.clock()
        backoff = FIRST_BACKOFF_S
        while True:
            delivery.attempts += 1
            outcome = await self.send(target, delivery.body)
            if outcome.ok:
                state.sent += 1
                state.last_success = self.clock()
                self.outbox.mark_delivered(delivery)
                if delivery.attempts > 1:
                    log.info("notify %s: delivered after %d tries", target.name, delivery.attempts)
                return
            state.last_error, state.last_error_at = outcome.detail, self.clock()
            left = delivery.first_try + target.retry_for_s - self.clock()
            if not outcome.retry or left <= 0:
                state.failed += 1
                why = (
                    "not retried"
                    if not outcome.retry
                    else f"gave up after {delivery.attempts} tries"
                )
                log.error(
                    "notify %s: %s (%s): %s",
                    target.name,
                    outcome.detail,
                    why,
                    headline(delivery.body),
                )
                return
            if delivery.attempts == 1:
                log.warning(
                    "notify %s: %s; retrying for up to %.0fs", target.name, outcome.detail, left
                )
                self._report()
            state.retries += 1
            wait = outcome.retry_after_s or backoff * random.uniform(0.9, 1.1)
            backoff = min(backoff * 2, MAX_BACKOFF_S)
            self._save()  # its tries so far, should the server stop meanwhile
            await asyncio.sleep(min(wait, left))

    async def send(self, target: Target, body: dict[str, Any]) -> Outcome:
        """One try at delivering `body` to `target`."""
        if target.kind == "command":
            return await self._run(target, body)
        return await self._post(target, body)

    async def _post(self, target: Target, body: dict[str, Any]) -> Outcome:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit_per_host=4),
                headers={"User-Agent": "sse-monitor"},
            )
        data, headers = request_of(target, body)
        started = time.monotonic()
        text = ""
        try:
            async with self._session.post(
                target.url,
                data=data,
                headers={**headers, **target.headers},
                timeout=aiohttp.ClientTimeout(total=target.timeout_s),
                allow_redirects=False,
            ) as resp:
                status = resp.status
                retry_after = resp.headers.get("Retry-After")
                if not 200 <= status < 300:  # the answer is decided by its status alone
                    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                        text = (await resp.content.read(512)).decode("utf-8", "replace")
        except TimeoutError:
            return Outcome(False, f"no answer within {target.timeout_s:g}s", retry=True)
        except aiohttp.ClientError as exc:
            # Its text may quote the URL, token and all: the class (and a status) only.
            code = getattr(exc, "status", None)
            detail = f"{target.where()}: {exc.__class__.__name__}" + (f" {code}" if code else "")
            return Outcome(False, detail, retry=True)
        took = (time.monotonic() - started) * 1000
        if 200 <= status < 300:
            return Outcome(True, f"HTTP {status} in {took:.0f} ms")
        text = " ".join(redacted(text, target).split())
        detail = f"HTTP {status}" + (f": {text[:200]}" if text else "")
        if status == 429:
            return Outcome(False, detail, retry=True, retry_after_s=_retry_after(retry_after))
        if status >= 500 or status == 408:
            return Outcome(False, detail, retry=True, retry_after_s=_retry_after(retry_after))
        return Outcome(False, detail)  # another 4xx, a redirect: trying again will not help

    async def _run(self, target: Target, body: dict[str, Any]) -> Outcome:
        started = time.monotonic()
        # Its output goes to a file, not a pipe: a child it left running in the background
        # would hold a pipe open, and asyncio's wait() waits for the pipes too.
        with tempfile.TemporaryFile() as output:
            try:
                process = await asyncio.create_subprocess_exec(
                    *target.command,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=output,
                    stderr=output,
                    env=environment(body),
                    start_new_session=True,  # its own process group: killed as one
                )
            except OSError as exc:
                return Outcome(False, f"{target.command[0]}: {exc.strerror or exc}", retry=True)
            assert process.stdin is not None
            try:
                async with asyncio.timeout(target.timeout_s):
                    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                        process.stdin.write(json.dumps(body, ensure_ascii=False).encode() + b"\n")
                        await process.stdin.drain()
                    process.stdin.close()
                    code = await process.wait()
            except TimeoutError:
                return Outcome(False, f"killed after {target.timeout_s:g}s", retry=True)
            finally:
                if process.returncode is None:  # timed out, or the server stops
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(process.pid, signal.SIGKILL)
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(5):
                            await asyncio.shield(process.wait())
            output.seek(max(0, os.fstat(output.fileno()).st_size - OUTPUT_BYTES))
            last = output.read(OUTPUT_BYTES).decode("utf-8", "replace").strip().splitlines()
        took = (time.monotonic() - started) * 1000
        if code == 0:
            return Outcome(True, f"exit status 0 in {took:.0f} ms")
        said = f": {last[-1][:200]}" if last else ""
        return Outcome(False, f"exit status {code}{said}", retry=True)

    async def test(self, target: Target) -> Outcome:
        """A test message to `target`, once (for `sse-monitor notify-test`)."""
        now = self.clock()
        body = alert_body(
            {
                "rule": "notify-test",
                "severity": "info",
                "state": "firing",
                "message": f"a test message from sse-monitor to {target.name}",
                "value": 0,
                "since": now,
            },
            f"test-{now:.0f}",
            host=self.host,
            public_url=self.public_url,
            started=now,
        )
        try:
            return await self.send(target, {**body, "test": True})
        finally:
            if self._session is not None:
                await self._session.close()
                self._session = None


def _is_failing(view: dict[str, Any]) -> bool:
    """Its last try failed (no success since its last error)."""
    error_at, success = view["last_error_at"], view["last_success"]
    return error_at is not None and (success is None or success < error_at)


def redacted(text: str, target: Target) -> str:
    """`text` without the target's secrets: its URL's path, query and credentials, and its
    header values (a receiver's error page may quote the path it was posted to)."""
    parts = urlsplit(target.url)
    secrets = [target.url, parts.path, parts.query, parts.username or "", parts.password or ""]
    secrets += list(target.headers.values())
    for secret in sorted((s for s in secrets if len(s) > 1), key=len, reverse=True):
        text = text.replace(secret, "…")
    return text


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (a number or an HTTP date), bounded; None if absent or bad."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:  # "-0000": UTC, as HTTP dates are
            when = when.replace(tzinfo=datetime.UTC)
        seconds = when.timestamp() - time.time()
    if not math.isfinite(seconds):  # "nan", "inf"
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)
