"""HostDownAlerts: a `host down` alert per host that stops sending, announced once for the
whole fleet, however many dashboards watch it.

A host's own rules run on its agent, which notifies once; but a dead agent cannot say it is
dead. The dashboards elect one of themselves with a lease in Redis (SET NX PX, renewed under
WATCH): the holder compares each host's state with what `smon-fleet:alerts` last announced
for it, appends each change there (every dashboard reads that stream, so every fleet page
shows it) and hands it to its own notifier (so each person is told once). A new holder picks
up from the stream: nothing announced twice, nothing dropped by the change of hands.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as redis

from monitor.alerts.rules import HOST_DOWN
from monitor.fleet.connect import ERRORS, describe
from monitor.fleet.keys import FLEET_ALERTS, FLEET_LEASE

log = logging.getLogger(__name__)

LEASE_MS = 6000  # a holder that stops renewing is replaced this long after
RENEW_S = 1.0
MAX_ALERTS = 10_000  # entries kept in smon-fleet:alerts


def down_alert(host: str, state: str, age_s: float, since: float) -> dict[str, Any]:
    """The alert payload for one host's change (a rule's alert, with the host's name)."""
    message = (
        f"no data from {host} for {age_s:.0f}s: its agent, its network or Redis is down"
        if state == "firing"
        else f"{host} sends again"
    )
    return {
        "rule": HOST_DOWN,
        "host": host,
        "severity": "critical",
        "state": state,
        "message": message,
        "value": round(age_s, 1),
        "since": since,
        "kind": "host",
    }


class HostDownAlerts:
    """Holds (or waits for) the lease; while held, announces hosts going down and back."""

    def __init__(
        self,
        client: redis.Redis,
        down_hosts: Callable[[], dict[str, float]],
        announced: Callable[[], dict[str, str]],
        notify: Callable[[dict[str, Any]], None],
    ) -> None:
        self.client = client
        self.down_hosts = down_hosts  # every host by name -> its age in s if down, else -1
        self.announced = announced  # host -> "firing" or "resolved", as the stream says
        self.notify = notify  # this dashboard's notifier (only the holder calls it)
        self.me = f"{socket.gethostname()}:{os.getpid()}:{time.time_ns()}"
        self.is_leader = False
        self.announcements = 0

    async def run(self, is_ready: Callable[[], bool]) -> None:
        """Until cancelled; `is_ready` says the announced states have been read."""
        while True:
            try:
                held = await self._hold()
                if held != self.is_leader:
                    log.info("fleet alerts: %s", "announcing" if held else "another announces")
                self.is_leader = held
                if held and is_ready():
                    await self._announce()
            except ERRORS as exc:
                if self.is_leader:
                    log.warning("fleet alerts: %s; no longer announcing", describe(exc))
                self.is_leader = False
            await asyncio.sleep(RENEW_S)

    async def _hold(self) -> bool:
        if await self.client.set(FLEET_LEASE, self.me, nx=True, px=LEASE_MS):
            return True
        async with self.client.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(FLEET_LEASE)
                holder: Any = await pipe.get(FLEET_LEASE)
                if holder is None or holder.decode() != self.me:
                    return False
                pipe.multi()  # type: ignore[no-untyped-call]
                pipe.set(FLEET_LEASE, self.me, px=LEASE_MS)
                await pipe.execute()
                return True
            except redis.WatchError:
                return False

    async def _announce(self) -> None:
        announced = self.announced()
        for host, age_s in self.down_hosts().items():
            is_down = age_s >= 0
            was_firing = announced.get(host) == "firing"
            if is_down == was_firing:
                continue
            since = time.time() - max(age_s, 0)
            alert = down_alert(host, "firing" if is_down else "resolved", max(age_s, 0), since)
            fields: Any = {"t": "alert", "h": host, "d": json.dumps(alert)}
            await self.client.xadd(FLEET_ALERTS, fields, maxlen=MAX_ALERTS, approximate=True)
            announced[host] = alert["state"]  # read back by the follower too
            self.announcements += 1
            self.notify(alert)
