"""GET /api/logs: scrolling back page by page past the replay buffer and across a rotation,
the lines around a moment, and hostile parameters (never a path; 400 with JSON)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from helpers import Server, StreamReader
from pytest_aiohttp import AiohttpClient

from monitor.config import Config
from monitor.http.app import create_app

Client = TestClient[web.Request, web.Application]


def write(log: Path, first: int, count: int) -> None:
    with log.open("a") as f:
        f.write("".join(f"app {i}\n" for i in range(first, first + count)))


async def follow_through(reader: StreamReader, last: str) -> None:
    while (await reader.next(timeout_s=10)).json()["lines"][-1] != last:
        pass


async def get(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with session.get(url) as resp:
        assert resp.status == 200, await resp.text()
        body: dict[str, Any] = await resp.json()
        return body


async def test_scrolling_back_pages_through_every_line_across_a_rotation(
    tmp_path: Path, start_server: Callable[..., Server]
) -> None:
    log = tmp_path / "app.log"
    log.touch()
    config = tmp_path / "c.toml"
    config.write_text("[stream]\nbuffer_bytes = 65536\nbuffer_events = 64\n")
    server = start_server("--config", str(config), "--log", f"app={log}")
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{server.url}/events?types=log&sources=app") as resp:
            reader = StreamReader(resp)
            await reader.until("hello")
            for start in range(0, 20_000, 1000):
                write(log, start, 1000)
                if start == 10_000:
                    log.rename(tmp_path / "app.log.1")  # rotated by rename, midway
                await follow_through(reader, f"app {start + 999}")
        pages: list[list[str]] = []
        before = ""
        while True:
            page = await get(session, f"{server.url}/api/logs?source=app&limit=1000{before}")
            pages.insert(0, [line for e in page["events"] for line in e["lines"]])
            assert sum(map(len, pages[:1])) <= 1000 + 2000  # a page ends at an event's end
            if page["before"] is None:
                break
            before = f"&before={page['before']}"
    lines = [line for page in pages for line in page]
    assert lines == [f"app {i}" for i in range(20_000)]  # every line once, in order
    assert len(pages) >= 20


async def test_the_lines_around_a_moment(
    tmp_path: Path, start_server: Callable[..., Server]
) -> None:
    log = tmp_path / "app.log"
    log.touch()
    server = start_server("--log", f"app={log}")
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{server.url}/events?types=log&sources=app") as resp:
            reader = StreamReader(resp)
            await reader.until("hello")
            for i in range(20):  # one event a line
                write(log, i, 1)
                await follow_through(reader, f"app {i}")
            moment = time.time()  # after line 19 was read, before line 20 was written
            for i in range(20, 40):
                write(log, i, 1)
                await follow_through(reader, f"app {i}")
        page = await get(
            session, f"{server.url}/api/logs?source=app&at={moment:.6f}&before=3&after=2"
        )
    assert [e["lines"][0] for e in page["events"]] == [f"app {i}" for i in (17, 18, 19, 20, 21)]
    assert page["at"] == page["events"][3]["id"]  # the first event from that moment on
    assert page["before"] == page["events"][0]["id"] and page["after"] == page["events"][-1]["id"]


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, config: Config) -> Client:
    return await aiohttp_client(create_app(config, sources=[]))


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("", "source: expected a log source"),
        ("source=../../etc/passwd", "source: expected a log source"),
        ("source=/var/log/syslog", "source: expected a log source"),
        ("source=app&before=garbage", "before: not an event id"),
        ("source=app&before=1-%C2%B2", "before: not an event id"),
        ("source=app&before=123-4", "before: an id from another run"),
        ("source=app&before={run}-99999999", "before: an id not issued yet"),
        ("source=app&limit=-1", "limit: expected a whole number"),
        ("source=app&limit=999999", "limit: expected a whole number"),
        ("source=app&at=nan", "at: expected a Unix time"),
        ("source=app&at=1e999", "at: expected a Unix time"),
        ("source=app&at=10&limit=5", "limit: not with at="),
        ("source=app&after=5", "after: only with at="),
        ("source=app&source=db", "source: given more than once"),
        ("source=app&path=/etc/shadow", "unknown query parameter 'path'"),
    ],
)
async def test_hostile_parameters_are_a_400_with_json(
    client: Client, query: str, error: str
) -> None:
    run_id = (await (await client.get("/healthz")).json())["run_id"]
    resp = await client.get("/api/logs?" + query.replace("{run}", run_id))
    assert resp.status == 400
    assert resp.content_type == "application/json"
    assert (await resp.json())["error"].startswith(error)
