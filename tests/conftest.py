"""Shared fixtures: configs, the in-process server, stream readers, and polling with a deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from aiohttp import ClientResponse

from monitor.client import SSEEvent, SSEParser
from monitor.config import Config


async def wait_until(check: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Poll `check` until it is true; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout_s}s")
        await asyncio.sleep(0.02)


class StreamReader:
    """Reads typed events off an open SSE response, with a deadline per call."""

    def __init__(self, resp: ClientResponse) -> None:
        self.resp = resp
        self.parser = SSEParser()
        self._pending: list[SSEEvent] = []

    async def next(self, timeout_s: float = 5.0) -> SSEEvent:
        """The next event (heartbeat comments are counted, not returned)."""
        async with asyncio.timeout(timeout_s):
            while not self._pending:
                chunk = await self.resp.content.readany()
                if not chunk:
                    raise EOFError("stream ended")
                self._pending.extend(self.parser.feed(chunk))
        return self._pending.pop(0)

    async def take(self, n: int, timeout_s: float = 5.0) -> list[SSEEvent]:
        """The next `n` events."""
        return [await self.next(timeout_s) for _ in range(n)]

    async def until(self, event_type: str, timeout_s: float = 5.0) -> list[SSEEvent]:
        """Events up to and including the first of `event_type`."""
        seen = []
        while not seen or seen[-1].type != event_type:
            seen.append(await self.next(timeout_s))
        return seen


@pytest.fixture
def config() -> Config:
    """A config with two log sources and a short heartbeat, for in-process servers."""
    from monitor.config import LogSource

    return Config(
        port=0,
        logs=(LogSource("app", "/nonexistent/app.log"), LogSource("db", "/nonexistent/db.log")),
        heartbeat_s=0.2,
        buffer_events=1000,
        buffer_bytes=1024 * 1024,
        history_events=5,
    )
