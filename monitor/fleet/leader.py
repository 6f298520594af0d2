"""HostDownAlerts: a `host down` alert per host that stops sending, announced once for the
whole fleet, however many dashboards watch it.

A host's own rules run on its agent, which notifies once; but a dead agent cannot say it is
dead. The dashboards elect one of themselves with a lease in Redis, taken or renewed by the
same script call that appends its announcements: the holder compares each host's state with
what `smon-fleet:alerts` last announced for it, appends each change there (every dashboard
reads that stream, so every fleet page shows it) and hands it to its own notifier (so each
person is told once). A new holder picks up from the stream: nothing announced twice,
nothing dropped by the change of hands.
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


def down_alert(
    host: str, state: str, age_s: float, since: float, *, is_dropped: bool = False
) -> dict[str, Any]:
    """The alert payload for one host's change (a rule's alert, with the host's name)."""
    if state == "firing":
        message = f"no data from {host} for {age_s:.0f}s: its agent, its network or Redis is down"
    elif is_dropped:
        message = f"{host} is no longer in Redis (retired): no longer watched"
    else:
        message = f"{host} sends again"
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


# One call holds the lease and appends the holder's announcements: the check and the
# writes are one step (a script runs whole), so a dashboard whose lease lapsed while its
# call was on the way (a long pause, a slow link) can never announce beside the new holder.
# KEYS: the lease, the alerts stream. ARGV: this dashboard, the lease's ms, the stream's
# MAXLEN, then per announcement: host, alert. Returns 1 if held (and appended), 0 if not.
HOLD = """
local holder = redis.call("GET", KEYS[1])
if holder and holder ~= ARGV[1] then
  return 0
end
redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
for i = 4, #ARGV, 2 do
  redis.call("XADD", KEYS[2], "MAXLEN", "~", ARGV[3], "*", "t", "alert", "h", ARGV[i],
             "d", ARGV[i + 1])
end
return 1
"""


class HostDownAlerts:
    """Holds (or waits for) the lease; while held, announces hosts going down and back.

    It has a connection of its own: behind the requests' shared pool, a renewal could wait
    past the lease and hand it to another dashboard for no reason."""

    def __init__(
        self,
        client: redis.Redis,
        down_hosts: Callable[[], dict[str, float | None]],
        announced: Callable[[], dict[str, str]],
        notify: Callable[[dict[str, Any]], None],
    ) -> None:
        self.client = client
        # Every host by name -> its age in s if down, else -1; None: dropped (retired).
        self.down_hosts = down_hosts
        self.announced = announced  # host -> "firing" or "resolved", as the stream says
        self.notify = notify  # this dashboard's notifier (only the holder calls it)
        self.me = f"{socket.gethostname()}:{os.getpid()}:{time.time_ns()}"
        self.is_leader = False
        self.announcements = 0
        self.failures = 0
        self._hold = client.register_script(HOLD)

    async def run(self, is_ready: Callable[[], bool]) -> None:
        """Until cancelled; `is_ready` says this dashboard knows the hosts' states as Redis
        has them (what was announced, and every host's newest sample): until then, a host
        would look down for having been read late, so it only holds the lease."""
        while True:
            try:
                alerts = self._changes() if is_ready() else []
                held = await self._hold_and_append(alerts)
                if held != self.is_leader:
                    log.info("fleet alerts: %s", "announcing" if held else "another announces")
                self.is_leader = held
                if held:
                    announced = self.announced()
                    for alert in alerts:
                        announced[alert["host"]] = alert["state"]  # the follower reads it too
                        self.announcements += 1
                        self.notify(alert)
            except ERRORS as exc:
                self.failures += 1
                if self.is_leader or self.failures == 1:  # a refusal is said once, not each second
                    log.warning("fleet alerts: %s; not announcing", describe(exc))
                self.is_leader = False
            await asyncio.sleep(RENEW_S)

    def _changes(self) -> list[dict[str, Any]]:
        """An alert for each host whose state differs from what was last announced."""
        announced = self.announced()
        alerts = []
        for host, age in self.down_hosts().items():
            age_s = -1.0 if age is None else age
            is_down = age_s >= 0
            if is_down == (announced.get(host) == "firing"):
                continue
            since = time.time() - max(age_s, 0)
            state = "firing" if is_down else "resolved"
            alerts.append(down_alert(host, state, max(age_s, 0), since, is_dropped=age is None))
        return alerts

    async def _hold_and_append(self, alerts: list[dict[str, Any]]) -> bool:
        args: list[Any] = [self.me, LEASE_MS, MAX_ALERTS]
        for alert in alerts:
            args += [alert["host"], json.dumps(alert)]
        held: Any = await self._hold(keys=[FLEET_LEASE, FLEET_ALERTS], args=args)
        return bool(held)
