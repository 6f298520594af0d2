"""RedisPublisher: this host's hub copied into Redis, every event once, in order.

It reads the local hub like any client (a subscription resumed by event id), so what the
hub guarantees a client holds here too: while Redis is away it keeps nothing of its own;
when Redis is back it resumes from the last event Redis holds (each entry carries the local
event id it came from), log lines the hub's buffer no longer holds are read again from the
files (files as history), and what cannot be read again arrives as a `gap`. A batch is one
script call (APPEND), so Redis holds a prefix of the events and a retry never repeats one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import redis.asyncio as redis

from monitor.config import RedisConfig
from monitor.fleet.connect import ERRORS, connect, describe
from monitor.fleet.keys import EVENT_TYPES, STOPPED, events_key, metrics_key, sticky_key
from monitor.hub.events import GAP, METRICS, RESET, STICKY_KEYS, Frame
from monitor.hub.interface import Selector, Subscriptions

log = logging.getLogger(__name__)

MAX_RETRY_S = 10.0
ENTRY_OVERHEAD = 48  # bytes Redis spends on an entry beyond its fields' values (measured ~40)
MIN_EVENTS = 1000  # an events stream holds at least this many, whatever their size
BATCH_EVENTS = 1000  # events per script call: Redis serves others between calls

# One call appends a batch: all of it or none (a script runs whole), so Redis holds a prefix
# of the host's events, and the call costs one command instead of one per event (with
# MULTI/EXEC, packing and reading a reply per XADD was most of an agent's CPU per event).
# KEYS: events, metrics, sticky. ARGV: the events stream's MAXLEN, the metrics stream's
# MINID ("": none yet), then per event: type, local id, source, data, the metrics sample
# for the charts (""), the sticky field ("": else set to "<entry id> <data>"). Returns the
# last entry's id.
APPEND = """
local last
for i = 3, #ARGV, 6 do
  local kind, id, source, data = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  if source == "" then
    last = redis.call("XADD", KEYS[1], "MAXLEN", "~", ARGV[1], "*", "t", kind, "i", id, "d", data)
  else
    last = redis.call("XADD", KEYS[1], "MAXLEN", "~", ARGV[1], "*", "t", kind, "i", id,
                      "s", source, "d", data)
  end
  if ARGV[i + 4] ~= "" then
    if ARGV[2] == "" then
      redis.call("XADD", KEYS[2], "*", "t", "metrics", "d", ARGV[i + 4])
    else
      redis.call("XADD", KEYS[2], "MINID", "~", ARGV[2], "*", "t", "metrics", "d", ARGV[i + 4])
    end
  end
  if ARGV[i + 5] ~= "" then
    redis.call("HSET", KEYS[3], ARGV[i + 5], last .. " " .. data)
  end
end
return last
"""


def sticky_field(frame: Frame) -> str:
    """The field of a status or alert in the host's sticky hash: "status:app", "alert:cpu"."""
    return f"{frame.type}:{json.loads(frame.json).get(STICKY_KEYS[frame.type])}"


class RedisPublisher:
    """Copies one host's events into its Redis keys (fleet/keys.py), trimmed as configured."""

    def __init__(self, config: RedisConfig, host: str, hello: dict[str, Any], metrics_s: float):
        self.config = config
        self.host = host
        self.hello = hello
        self.metrics_window_ms = int(metrics_s * 1000)
        self._events, self._metrics = events_key(host), metrics_key(host)
        self._sticky = sticky_key(host)
        self._bytes = self._count = 0  # of the entries written, for the average size
        self._newest_ms = 0  # the newest entry's time, in Redis's clock
        self._last_local: str | None = None  # the local id of the newest event published
        self.published = 0
        self.failures = 0
        self.is_connected = False
        self._append: Any = None  # the APPEND script, registered with the client

    async def run(self, hub: Subscriptions) -> None:
        """Publish until cancelled; Redis away or refusing is retried, never fatal."""
        delay = 1.0
        client = connect(self.config, f"sse-monitor-agent:{self.host}")
        self._append = client.register_script(APPEND)
        try:
            while True:
                try:
                    await self._session(client, hub)
                except ERRORS as exc:
                    self.failures += 1
                    if self.is_connected or self.failures == 1:  # once per outage
                        log.warning(
                            "redis: %s; events are kept in the hub and the files, retrying",
                            describe(exc),
                        )
                    # After a session that ran, retry soon; while refused, back off.
                    delay = 1.0 if self.is_connected else min(delay * 2, MAX_RETRY_S)
                    self.is_connected = False
                    await client.connection_pool.disconnect()
                await asyncio.sleep(delay)
        finally:
            await self._say_stopped(client)
            await client.aclose()

    async def _session(self, client: redis.Redis, hub: Subscriptions) -> None:
        resume = await self._last_published(client)
        # Redis holds nothing of this host and this process published nothing (a first
        # start, or Redis lost its data before we wrote): everything the hub holds is new to
        # Redis. Resuming from before the hub's first event (seq 0) has the hub replay it all,
        # with a `gap` for what it dropped, where a plain subscription would give only the
        # recent history and lose the rest without a word.
        fresh = resume is None
        if fresh:
            resume = f"{hub.run_id}-0"
        await client.hset(self._sticky, "hello", json.dumps(self.hello))
        log.info(
            "redis: publishing host %s%s",
            self.host,
            " from the hub's first event" if fresh else f" from after event {resume}",
        )
        self.is_connected = True
        async with hub.subscribe(Selector(), last_event_id=resume) as batches:
            async for frames in batches:
                if frames[0].type == RESET:
                    # The hub no longer knows the last event Redis holds (its records were
                    # lost): say so, and carry on from now rather than repeat its history;
                    # unless Redis holds nothing of ours, which the history then starts.
                    reason = json.loads(frames[0].json).get("reason", "")
                    gap = {"missed": None, "reason": reason}
                    if fresh:
                        await self._write(client, frames[1:], gap=gap, gap_at=frames[0].id)
                    else:
                        # Not the history again, but the host's states as they are now: any
                        # other status or alert Redis keeps is of a run that is gone (a rule
                        # firing then would stay firing on every dashboard). The gap goes
                        # last: its local id is the newest, where the next session resumes.
                        states = [f for f in frames[1:] if f.type in STICKY_KEYS]
                        await self._forget_states(client, states)
                        await self._write(client, states)
                        await self._write(client, [], gap=gap, gap_at=frames[-1].id)
                    continue
                await self._write(client, frames)

    async def _forget_states(self, client: redis.Redis, kept: list[Frame]) -> None:
        """Drop from the host's sticky hash every status and alert not among `kept`."""
        names = {sticky_field(f) for f in kept}
        held: Any = await client.hkeys(self._sticky)
        gone = [
            name
            for name in (k.decode("utf-8", "replace") for k in held)
            if name.partition(":")[0] in STICKY_KEYS and name not in names
        ]
        if gone:
            await client.hdel(self._sticky, *gone)

    async def _last_published(self, client: redis.Redis) -> str | None:
        """The local id of the newest event Redis holds of this host; if it holds none (it
        lost its data), of the newest this process published: the hub gives the rest."""
        newest: Any = await client.xrevrange(self._events, count=1)
        if not newest:
            return self._last_local
        entry_id, fields = newest[0]
        self._newest_ms = int(entry_id.split(b"-")[0])
        local = fields.get(b"i")
        return local.decode() if local else None

    async def _write(
        self,
        client: redis.Redis,
        frames: list[Frame],
        gap: dict[str, Any] | None = None,
        gap_at: str = "",
    ) -> None:
        # Redis trims by count: the budget in bytes over the entries' mean size.
        mean = self._bytes / self._count if self._count else 1024.0
        maxlen = max(MIN_EVENTS, int(self.config.events_bytes / mean))
        minid = f"{self._newest_ms - self.metrics_window_ms}-0" if self._newest_ms else ""
        args: list[Any] = [maxlen, minid]
        if gap is not None:  # at the newest local event it stands for: resumed after that
            args += [GAP, gap_at, "", json.dumps(gap), "", ""]
        for frame in frames:
            if frame.type not in EVENT_TYPES:
                continue  # the hello of the subscription: this host's hello is in the hash
            body = frame.json
            chart = sticky = ""
            if frame.type == METRICS:
                # The charts and the fleet page need no process table: 40 % of a sample.
                sample = json.loads(body)
                sample.pop("processes", None)
                chart = json.dumps(sample, separators=(",", ":"))
            elif frame.type in STICKY_KEYS:  # a status or an alert: a few a minute
                sticky = sticky_field(frame)
            args += [frame.type, frame.id, frame.source or "", body, chart, sticky]
            self._bytes += len(body) + ENTRY_OVERHEAD
            self._count += 1
        newest: Any = None
        keys = [self._events, self._metrics, self._sticky]
        for at in range(2, len(args), BATCH_EVENTS * 6):
            part = [*args[:2], *args[at : at + BATCH_EVENTS * 6]]
            newest = await self._append(keys=keys, args=part, client=client)
        if gap is not None:
            self._last_local = gap_at
        if frames:
            self._last_local = frames[-1].id
        if newest:
            self._newest_ms = max(self._newest_ms, int(newest.split(b"-")[0]))
        self.published += len(frames)

    async def _say_stopped(self, client: redis.Redis) -> None:
        """A clean stop: the dashboards show `stopped` at once, not `down` later."""
        if not self.is_connected:
            return
        try:
            async with asyncio.timeout(2.0):
                payload = json.dumps({"ts": time.time()})
                await client.xadd(self._metrics, {"t": STOPPED, "d": payload})
        except (*ERRORS, TimeoutError) as exc:
            log.warning("redis: could not say this host stopped: %s", describe(exc))
