"""StreamFollower: one connection, one task, one blocking XREAD over a changing set of
streams; each stream's new entries go to its handler, in order.

A dashboard runs two: one over every host's metrics stream (the fleet page: it waits a
moment after each read so a read takes many hosts' samples, not one), one over the events
streams of the hosts someone is watching (no wait: a log line's hop through Redis must be
short). However many clients watch, that is two connections. A read blocks at most BLOCK_MS,
well inside the socket timeout (redis-py's timeout would break a longer block); a stream
added meanwhile is read from the next call on, from the id it was added with.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import redis.asyncio as redis

from monitor.fleet.connect import BLOCK_MS, ERRORS, describe

log = logging.getLogger(__name__)

Entries = list[tuple[bytes, dict[bytes, bytes]]]
Handler = Callable[[str, Entries], None]
MAX_COUNT = 1000  # entries per stream per read: a burst is taken in parts, others between


class StreamFollower:
    """Follows streams from given ids; `follow`/`drop` change the set at any time."""

    def __init__(self, client: redis.Redis, handler: Handler, *, pause_s: float = 0.0) -> None:
        self.client = client
        self.handler = handler
        self.pause_s = pause_s
        self._ids: dict[str, bytes] = {}  # stream key -> the last id handled
        self._changed = asyncio.Event()
        self.reads = 0
        self.failures = 0
        self.is_connected = False
        # Every stream read to its end since Redis was last reached: until then a stream's
        # newest entries may still be on their way (states reckoned from them would lag).
        self.is_caught_up = False

    def follow(self, key: str, after: str) -> None:
        """Read `key` from the entry after `after` on (kept if already followed)."""
        if key not in self._ids:
            self._ids[key] = after.encode()
            self._changed.set()

    def drop(self, key: str) -> None:
        """Stop reading `key`."""
        self._ids.pop(key, None)

    def position(self, key: str) -> bytes | None:
        """The last id handled of `key`; None if not followed."""
        return self._ids.get(key)

    async def run(self) -> None:
        """Read until cancelled; Redis away is retried every second, quietly after once."""
        while True:
            if not self._ids:
                self._changed.clear()
                await self._changed.wait()
            try:
                await self._read()
                self.is_connected = True
            except redis.ResponseError as exc:
                if "WRONGTYPE" not in str(exc):
                    await self._failed(exc)
                    continue
                # A key its writer turned into another type fails the whole read: drop it
                # alone (a host's agent may write its own keys, nobody else's).
                await self._drop_wrong_types()
            except ERRORS as exc:
                await self._failed(exc)
                continue
            if self.pause_s:
                await asyncio.sleep(self.pause_s)

    async def _failed(self, exc: BaseException) -> None:
        """Redis away or refusing: say so once per outage, retry in a second."""
        self.failures += 1
        if self.is_connected or self.failures == 1:
            log.warning("redis: %s; reading again every second", describe(exc))
        self.is_connected = self.is_caught_up = False
        await self.client.connection_pool.disconnect()
        await asyncio.sleep(1.0)

    async def _drop_wrong_types(self) -> None:
        keys = list(self._ids)
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.type(key)
                kinds = await pipe.execute()
        except ERRORS as exc:
            await self._failed(exc)
            return
        for key, kind in zip(keys, kinds, strict=True):
            if kind not in (b"stream", b"none"):
                log.warning("redis: %s is a %s, not a stream: no longer read", key, kind.decode())
                self.drop(key)

    async def _read(self) -> None:
        streams: dict[Any, Any] = dict(self._ids)
        replies: Any = await self.client.xread(streams, count=MAX_COUNT, block=BLOCK_MS)
        self.reads += 1
        # A read that took fewer than it could of every stream left nothing behind.
        self.is_caught_up = all(len(entries) < MAX_COUNT for _key, entries in replies or ())
        for key_bytes, entries in replies or ():
            key = key_bytes.decode()
            if key not in self._ids or not entries:
                continue  # dropped while the read was out
            self._ids[key] = entries[-1][0]
            self.handler(key, entries)
