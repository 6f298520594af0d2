"""Fleet: every host in Redis as a dashboard sees it: found by their keys, followed by their
metrics streams, each with a state (`up`, `stale`, `down`, `stopped`) and a summary for
the fleet page, published as `host` events on a small in-memory hub of its own.

A host's age is measured in Redis's clock (its stream ids are Redis's milliseconds), so a
dashboard whose clock is off still says the same as the others.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from contextlib import suppress
from typing import Any

from monitor.config import Config
from monitor.fleet.connect import ERRORS, connect, describe
from monitor.fleet.follower import Entries, StreamFollower
from monitor.fleet.hoststate import SPARK_POINTS, HostState, number, read_hello, summarize
from monitor.fleet.keys import (
    FLEET_ALERTS,
    PREFIX,
    STOPPED,
    host_of,
    metrics_key,
    parse_stream_id,
    sticky_key,
)
from monitor.fleet.leader import HostDownAlerts
from monitor.fleet.taps import Taps
from monitor.fleet.view import HostView
from monitor.hub.events import ALERT
from monitor.hub.interface import Hub
from monitor.metrics.history import MetricsHistory
from monitor.notify.notifier import Notifier
from monitor.tasks import cancel_and_wait

log = logging.getLogger(__name__)

HOST = "host"  # the fleet stream's event type: one host's state and summary
SCAN_INTERVAL_S = 2.0  # new hosts, the sticky hashes, Redis's clock
TICK_S = 0.25  # states are reckoned this often
HISTORY_IDLE_S = 600.0


class Fleet:
    """The hosts in Redis; `view(name)` is one of them as endpoints read a hub."""

    def __init__(self, config: Config, hub: Hub) -> None:
        self.config = config
        self.redis = config.redis
        self.hub = hub  # where `host` events go, for the fleet page
        # Requests (catch-ups, pages, histories) share a few connections; the two followers
        # and the lease have one each. Ten in all, whatever the number of clients.
        self.client = connect(self.redis, "sse-monitor-dashboard", max_connections=7)
        self._metrics_client = connect(self.redis, "sse-monitor-dashboard:metrics")
        self._events_client = connect(self.redis, "sse-monitor-dashboard:events")
        self._lease_client = connect(self.redis, "sse-monitor-dashboard:lease")
        self.taps = Taps(self.client, self._events_client)
        self.metrics = StreamFollower(self._metrics_client, self._on_metrics, pause_s=0.05)
        self.hosts: dict[str, HostState] = {}
        self._views: dict[str, HostView] = {}
        # The chart columns of hosts whose charts were asked for, and when they last were:
        # dropped after HISTORY_IDLE_S unasked (a host's are ~0.3 MB).
        self._histories: dict[str, MetricsHistory] = {}
        self._history_asked: dict[str, float] = {}
        self._gone_since: dict[str, float] = {}  # hosts whose keys were not found, since
        self._dropped: set[str] = set()  # hosts dropped while announced down: to resolve
        self._offset_ms = 0.0  # Redis's clock minus ours
        self.is_connected = False
        self.announced: dict[str, str] = {}  # host -> its last `host down` state announced
        self._has_announced = False  # smon-fleet:alerts read up to now (before announcing)
        # `host down` goes to the same [[notify]] targets as this server's own alerts, from
        # the dashboard that announces it alone (no outbox: smon-fleet:alerts is the record).
        self.notifier = Notifier(
            config.notify, hub=hub, host=config.redis.name or "fleet", public_url=config.public_url
        )
        self.down_alerts = HostDownAlerts(
            self._lease_client, self._down_ages, lambda: self.announced, self._notify
        )

    def close(self) -> None:
        """End every stream of the fleet (shutdown)."""
        for view in self._views.values():
            view.is_closed = True
        self.taps.close()
        self.hub.close()

    def now_ms(self) -> float:
        """Now, in Redis's clock."""
        return time.time() * 1000 + self._offset_ms

    def names(self) -> list[str]:
        return sorted(self.hosts)

    def listing(self) -> list[dict[str, Any]]:
        """Every host, by name."""
        return [self.hosts[name].view() for name in self.names()]

    def view(self, name: str) -> HostView | None:
        """The host as endpoints read it; None for a host not in Redis."""
        if name not in self.hosts:
            return None
        view = self._views.get(name)
        if view is None:
            state = self.hosts[name]
            view = self._views[name] = HostView(
                name,
                self.client,
                self.taps,
                lambda: state.sticky,
                self.config.stream.history_events,
            )
        return view

    async def history(self, name: str) -> MetricsHistory:
        """The host's chart columns: read from its metrics stream when first asked for,
        then kept up to date by the follower."""
        self._history_asked[name] = time.monotonic()
        history = self._histories.get(name)
        if history is None:
            window_s = self.redis.metrics_s or self.config.history.full_s
            interval_s = self.hosts[name].hello.get("interval_s", 1.0)
            history = MetricsHistory(
                full_s=window_s,
                interval_s=interval_s,
                bucket_s=self.config.history.bucket_s,
                downsampled_s=max(window_s, self.config.history.bucket_s),
            )
            entries: Any = await self.client.xrange(metrics_key(name))
            for _id, fields in entries:
                if fields.get(b"t") != STOPPED:
                    with suppress(ValueError):
                        history.add(json.loads(fields[b"d"]))
            if name in self.hosts:  # not dropped meanwhile: kept, and let go when idle
                self._histories[name] = history
        return history

    async def run(self) -> None:
        """Follow the fleet until cancelled."""
        tasks = [
            asyncio.create_task(self.notifier.run(self.hub), name="fleet-notify"),
            asyncio.create_task(self.metrics.run(), name="fleet-metrics"),
            asyncio.create_task(self.taps.follower.run(), name="fleet-events"),
            asyncio.create_task(self._reckon(), name="fleet-states"),
            asyncio.create_task(self.down_alerts.run(self._knows_states), name="fleet-alerts"),
        ]
        try:
            while True:
                try:
                    await self._scan()
                    if not self.is_connected:
                        log.info("redis: following %d hosts", len(self.hosts))
                    self.is_connected = True
                except ERRORS as exc:
                    if self.is_connected or not self.hosts:
                        log.warning("redis: %s; trying again", describe(exc))
                    self.is_connected = False
                await asyncio.sleep(SCAN_INTERVAL_S)
        finally:
            for view in self._views.values():
                view.is_closed = True
            await cancel_and_wait(tasks)
            clients = (self.client, self._metrics_client, self._events_client, self._lease_client)
            for client in clients:
                await client.aclose()

    async def _scan(self) -> None:
        """Find new hosts; read every host's sticky hash; take Redis's clock."""
        client = self.client
        seconds, micros = await client.time()
        self._offset_ms = seconds * 1000 + micros / 1000 - time.time() * 1000
        if not self._has_announced:
            await self._read_announced()
        now = time.monotonic()
        for unasked in [n for n, at in self._history_asked.items() if now - at > HISTORY_IDLE_S]:
            self._histories.pop(unasked, None)
            self._history_asked.pop(unasked, None)
        found: set[str] = set()
        async for key in client.scan_iter(match=f"{PREFIX}*:metrics", count=1000, _type="stream"):
            if (name := host_of(key)) is not None:
                found.add(name)
        for name in sorted(found - set(self.hosts)):
            await self._add(name)
        self._retire(found, now)
        async with client.pipeline(transaction=False) as pipe:
            names = self.names()
            for name in names:
                pipe.hgetall(sticky_key(name))
            # A key an agent turned into another type fails alone, not every host's.
            replies = await pipe.execute(raise_on_error=False)
        for name, sticky in zip(names, replies, strict=True):
            state = self.hosts[name]
            if not isinstance(sticky, dict):
                continue  # not a hash (an error reply): its last good values stay
            state.sticky = {k.decode("utf-8", "replace"): v for k, v in sticky.items()}
            if hello := state.sticky.get("hello"):
                state.hello = read_hello(hello)

    def _retire(self, found: set[str], now: float) -> None:
        """Forget hosts whose keys are gone (an operator deleted a retired host's keys):
        once gone as long as it takes a host to be called down, and nobody streams them.
        Redis losing its data looks the same; its agents' hosts come back as they publish."""
        for name in found:
            self._gone_since.pop(name, None)
        for name in [n for n in self.hosts if n not in found]:
            since = self._gone_since.setdefault(name, now)
            if now - since < self.redis.down_s or self.taps.is_watched(name):
                continue
            log.info("host %s: its keys are gone; no longer listed", name)
            del self.hosts[name], self._gone_since[name]
            if self.announced.get(name) == "firing":
                self._dropped.add(name)
            self._views.pop(name, None)
            self._histories.pop(name, None)
            self._history_asked.pop(name, None)
            self.metrics.drop(metrics_key(name))
            self.hub.publish(HOST, {"name": name, "removed": True}, source=name)

    async def _add(self, name: str) -> None:
        newest: Any = await self.client.xrevrange(metrics_key(name), count=SPARK_POINTS)
        state = self.hosts[name] = HostState(name)
        state.is_down_announced = self.announced.get(name) == "firing"
        entries = list(reversed(newest))
        self._take(state, entries)
        after = entries[-1][0].decode() if entries else "0-0"
        self.metrics.follow(metrics_key(name), after)

    async def _read_announced(self) -> None:
        """What the dashboards announced so far; then followed with the metrics streams."""
        entries: Any = await self.client.xrange(FLEET_ALERTS)
        self._take_alerts(entries)
        self.metrics.follow(FLEET_ALERTS, entries[-1][0].decode() if entries else "0-0")
        self._has_announced = True

    def _take_alerts(self, entries: Entries) -> None:
        for _id, fields in entries:
            try:
                host, alert = fields[b"h"].decode(), json.loads(fields[b"d"])
            except (KeyError, ValueError):
                continue
            if not isinstance(alert, dict):
                continue
            self.announced[host] = alert.get("state", "")
            state = self.hosts.get(host)
            if state is not None:
                state.is_down_announced = alert.get("state") == "firing"
                self._publish(state)

    def _knows_states(self) -> bool:
        """The hosts' states are Redis's: what was announced is read, and every host's
        metrics stream is read to its end (after an outage, a host's backlog would otherwise
        look like silence, and every host be announced down)."""
        return self._has_announced and self.metrics.is_caught_up

    def _down_ages(self) -> dict[str, float | None]:
        """Every host: how long since it sent, in seconds, if down; -1 if not down; None
        for a host dropped while announced down (its `host down` is resolved, not left
        firing for good)."""
        self._dropped = {n for n in self._dropped if self.announced.get(n) == "firing"}
        ages: dict[str, float | None] = dict.fromkeys(self._dropped)
        for name, state in self.hosts.items():
            down = state.state == "down"
            ages[name] = (self.now_ms() - state.last_ms) / 1000 if down else -1.0
        return ages

    def _notify(self, alert: dict[str, Any]) -> None:
        """An announcement of ours, to this dashboard's notifier (on the fleet hub)."""
        self.hub.publish(ALERT, alert, source=alert["host"])

    def _on_metrics(self, key: str, entries: Entries) -> None:
        if key == FLEET_ALERTS:
            self._take_alerts(entries)
            return
        name = host_of(key)
        state = self.hosts.get(name) if name else None
        if state is not None:
            self._take(state, entries)
            self._publish(state)

    def _take(self, state: HostState, entries: Entries) -> None:
        for entry_id, fields in entries:
            sid = parse_stream_id(entry_id)
            if sid is None:
                continue
            state.last_ms = max(state.last_ms, sid[0])
            state.is_stopped = fields.get(b"t") == STOPPED
            if state.is_stopped:
                continue
            try:
                sample = json.loads(fields.get(b"d", b"{}"))
                summary = summarize(sample)
            except (ValueError, TypeError, AttributeError, KeyError):
                continue  # not a sample of ours: its time still counts
            history = self._histories.get(state.name)
            ts = number(sample.get("ts"))
            if history is not None and ts is not None and ts > (history.newest_ts or 0):
                history.add(sample)
            state.summary = summary
            if isinstance(summary["cpu"], int | float):
                state.spark.append(summary["cpu"])
        state.state = self._state_of(state)

    def _state_of(self, state: HostState) -> str:
        if state.is_stopped:
            return "stopped"
        interval_s = state.hello.get("interval_s", 1.0)
        age_s = (self.now_ms() - state.last_ms) / 1000
        if not state.last_ms or age_s > max(self.redis.down_s, 5 * interval_s):
            return "down"
        if age_s > max(self.redis.stale_s, 2 * interval_s):
            return "stale"
        return "up"

    def _publish(self, state: HostState) -> None:
        self.hub.publish(HOST, state.view(), source=state.name)

    async def _reckon(self) -> None:
        """Ages go on without events: a host that stops sending turns stale, then down."""
        while True:
            for state in self.hosts.values():
                now = self._state_of(state)
                if now != state.state:
                    log.info("host %s: %s -> %s", state.name, state.state, now)
                    state.state = now
                    self._publish(state)
            await asyncio.sleep(TICK_S)
