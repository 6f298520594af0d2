"""GET /api/logs: scrolling back page by page past the replay buffer and across a rotation,
the lines around a moment, and hostile parameters (never a path; 400 with JSON)."""

from __future__ import annotations

import os
import shutil
import subprocess
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


async def scroll_back(session: aiohttp.ClientSession, url: str, limit: int) -> list[list[str]]:
    """Every page from the newest line back until `before` is null, oldest page first."""
    pages: list[list[str]] = []
    before = ""
    while True:
        page = await get(session, f"{url}/api/logs?source=app&limit={limit}{before}")
        pages.insert(0, [line for e in page["events"] for line in e["lines"]])
        if page["before"] is None:
            return pages
        before = f"&before={page['before']}"


@pytest.mark.skipif(not shutil.which("logrotate"), reason="needs logrotate")
async def test_scrolling_back_goes_on_into_the_rotated_and_compressed_files(
    tmp_path: Path, start_server: Callable[..., Server]
) -> None:
    """Past the hub's records: the lines before the first start's backlog, then app.log.1,
    then the gzip-compressed app.log.2.gz and app.log.3.gz (the real logrotate), as far back
    as they go; a file merely named like the log is not one of them."""
    log = tmp_path / "app.log"
    conf = tmp_path / "logrotate.conf"
    conf.write_text(f"{log} {{\n  rotate 5\n  compress\n  delaycompress\n}}\n")
    for generation in range(3):
        write(log, generation * 1000, 1000)
        subprocess.run(
            ["logrotate", "-f", "-s", str(tmp_path / "logrotate.state"), str(conf)], check=True
        )
    write(log, 3000, 1000)
    (tmp_path / "app.logger").write_text("not app's\n")
    assert sorted(p.name for p in tmp_path.glob("app.log.*")) == [
        "app.log.1",
        "app.log.2.gz",
        "app.log.3.gz",
    ]
    server = start_server("--log", f"app={log}")  # a backlog of the last 100 lines
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{server.url}/events?types=log&sources=app") as resp:
            reader = StreamReader(resp)
            await reader.until("hello")
            write(log, 4000, 100)
            await follow_through(reader, "app 4099")
        pages = await scroll_back(session, server.url, 700)
    assert [line for page in pages for line in page] == [f"app {i}" for i in range(4100)]
    assert all(len(page) <= 700 for page in pages) and len(pages) >= 4100 // 700


async def test_a_forged_position_reads_nothing_but_the_sources_own_lines(
    tmp_path: Path, start_server: Callable[..., Server]
) -> None:
    """Positions past the records name a file by identity and an offset: one of another
    source's files, a file elsewhere, the middle of a line or past the end is a 400."""
    log, other = tmp_path / "app.log", tmp_path / "db.log"
    write(log, 0, 100)
    other.write_text("db secret\n")
    server = start_server("--log", f"app={log}", "--log", f"db={other}")
    dev, ino, size = log.stat().st_dev, log.stat().st_ino, log.stat().st_size
    line_50 = len("".join(f"app {i}\n" for i in range(50)))
    passwd = os.stat("/etc/passwd")
    refused = {
        f"file-{dev}-{other.stat().st_ino}-0": "before: a position in a file this source no",
        f"file-{passwd.st_dev}-{passwd.st_ino}-0": "before: a position in a file this source no",
        "file-1-2-0": "before: a position in a file this source no longer holds",
        f"file-{dev}-{ino}-{line_50 + 2}": "before: not the start of a line",
        f"file-{dev}-{ino}-{size + 7}": "before: not the start of a line",
        f"file-{dev}-{ino}-{'9' * 20}": "before: not the start of a line",
        f"file-{dev}-{ino}-{'9' * 21}": "before: not an event id",
        f"file--{ino}-0": "before: not an event id",
        f"file-{dev}-{ino}-0x10": "before: not an event id",
    }
    async with aiohttp.ClientSession() as session:
        for position, error in refused.items():
            async with session.get(f"{server.url}/api/logs?source=app&before={position}") as resp:
                assert resp.status == 400, position
                assert resp.content_type == "application/json"
                assert (await resp.json())["error"].startswith(error), position
        page = await get(
            session, f"{server.url}/api/logs?source=app&before=file-{dev}-{ino}-{line_50}"
        )
    assert [line for e in page["events"] for line in e["lines"]] == [f"app {i}" for i in range(50)]
    assert page["before"] is None


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


async def test_scrolling_back_reads_only_the_logs_own_rotated_files(
    tmp_path: Path, start_server: Callable[..., Server]
) -> None:
    """Past the records, the files named like the log in its directory are read, each once:
    a symlink named like it leading out of the directory is not (someone who can write the
    directory could otherwise show any file), nor a hard link to a file already read (else
    it would be read again, page after page), nor an archive."""
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "app.log"
    write(logs / "app.log.2", 0, 10)
    write(logs / "app.log.1", 10, 10)
    write(log, 20, 10)
    outside = tmp_path / "secret.txt"
    outside.write_text("SECRET 1\nSECRET 2\n")
    (logs / "app.log.3").symlink_to(outside)
    os.link(logs / "app.log.1", logs / "app.log-20261201")  # the same file, another name
    (logs / "app.log.4.tar.gz").write_bytes(b"not a log")
    server = start_server("--log", f"app={log}", "--config", str(no_backlog(tmp_path)))
    async with aiohttp.ClientSession() as session:
        pages = await scroll_back(session, server.url, 4)
    assert [line for page in pages for line in page] == [f"app {i}" for i in range(30)]


def no_backlog(tmp_path: Path) -> Path:
    config = tmp_path / "c.toml"
    config.write_text("[tail]\nbacklog_lines = 0\n")
    return config
