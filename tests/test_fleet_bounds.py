"""A fleet dashboard's costs stay bounded whatever a host's stream holds or how many clients
arrive: catching up through large entries, a crowd of new clients, a page of a quiet
source's lines, hosts retired from Redis. Hosts here are written straight into a real
redis-server in the shape agents write (test_fleet.py runs real agents)."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from helpers import Server, StreamReader, wait_until
from redis_server import RedisServer
from test_fleet import get_json, hosts_of

from monitor.fleet.keys import events_key, metrics_key, sticky_key

Start = Callable[..., Server]


def add_host(admin: Any, name: str, sources: tuple[str, ...] = ("app",)) -> None:
    """A host as its agent announces itself: a hello and a sample."""
    hello = {
        "host": name,
        "interval_s": 1.0,
        "sources": [{"name": s, "kind": "log"} for s in sources],
    }
    admin.hset(sticky_key(name), "hello", json.dumps(hello))
    admin.xadd(metrics_key(name), {"t": "metrics", "d": json.dumps({"ts": time.time()})})


def add_lines(admin: Any, name: str, source: str, lines: list[str]) -> bytes:
    """One log event of `lines` in the host's events stream; its entry id."""
    payload = json.dumps({"lines": lines, "source": source})
    entry: bytes = admin.xadd(events_key(name), {"t": "log", "i": "1-1", "s": source, "d": payload})
    return entry


def peak_rss_mib(server: Server) -> float:
    """The server process's peak resident memory so far (VmHWM)."""
    status = Path(f"/proc/{server.proc.pid}/status").read_text()
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    assert match
    return int(match[1]) / 1024


def commands(admin: Any, name: str) -> int:
    """How many times Redis has run command `name` so far."""
    return int(admin.info("commandstats").get(f"cmdstat_{name}", {}).get("calls", 0))


async def test_a_catch_up_through_large_entries_reads_a_few_at_a_time(
    redis_server: RedisServer, start_server: Start
) -> None:
    """A client resuming from the start of 160 entries of 1 MiB gets every one, in order,
    while the dashboard's memory grows by a few of them, not by all it has to read."""
    admin = redis_server.client()
    add_host(admin, "big")
    first = add_lines(admin, "big", "app", ["start"])
    big = "x" * (1024 * 1024)
    ids = [add_lines(admin, "big", "app", [f"{i} {big}"]).decode() for i in range(160)]
    server = start_server("--redis", redis_server.url, "--no-publish")
    await wait_until(lambda: "big" in hosts_of(server.url), 10)
    before = peak_rss_mib(server)
    got: list[str] = []
    async with aiohttp.ClientSession() as session:
        params = {"host": "big", "types": "log"}
        headers = {"Last-Event-ID": first.decode()}
        async with session.get(f"{server.url}/events", params=params, headers=headers) as resp:
            reader = StreamReader(resp)
            while len(got) < len(ids):
                event = await reader.next(20)
                if event.type == "log":
                    assert event.json()["lines"][0].startswith(f"{len(got)} ")
                    got.append(event.id)
    assert got == ids
    grown = peak_rss_mib(server) - before
    print(f"peak RSS grew {grown:.0f} MiB catching up through 160 MiB of entries")
    assert grown < 64


async def test_a_crowd_of_new_clients_costs_redis_one_read(
    redis_server: RedisServer, start_server: Start
) -> None:
    """Forty clients open a host's stream at once: each gets the same recent history, and
    Redis is asked for it about once, not forty times (2,000 entries each)."""
    admin = redis_server.client()
    add_host(admin, "web1")
    for i in range(50):
        add_lines(admin, "web1", "app", [f"line {i}"])
    server = start_server("--redis", redis_server.url, "--no-publish")
    await wait_until(lambda: "web1" in hosts_of(server.url), 10)
    reads_before = commands(admin, "xrevrange")

    async def first_lines(session: aiohttp.ClientSession) -> list[str]:
        params = {"host": "web1", "types": "log"}
        async with session.get(f"{server.url}/events", params=params) as resp:
            reader = StreamReader(resp)
            lines: list[str] = []
            while len(lines) < 50:
                event = await reader.next(10)
                if event.type == "log":
                    lines += event.json()["lines"]
            return lines

    async with aiohttp.ClientSession() as session:
        histories = await asyncio.gather(*(first_lines(session) for _ in range(40)))
    assert all(h == [f"line {i}" for i in range(50)] for h in histories)
    reads = commands(admin, "xrevrange") - reads_before
    print(f"40 new clients: {reads} XREVRANGE calls")
    assert reads <= 8


async def test_a_page_of_a_quiet_sources_lines_is_a_bounded_walk(
    redis_server: RedisServer, start_server: Start
) -> None:
    """A quiet source's only line lies behind 50,000 entries of a busy one: one /api/logs
    page walks a bounded part of the stream and says where to go on; paging on finds it."""
    admin = redis_server.client()
    add_host(admin, "web1", ("app", "quiet"))
    add_lines(admin, "web1", "quiet", ["the quiet line"])
    with admin.pipeline(transaction=False) as pipe:
        payload = json.dumps({"lines": ["busy"], "source": "app"})
        for _ in range(50_000):
            pipe.xadd(events_key("web1"), {"t": "log", "i": "1-1", "s": "app", "d": payload})
        pipe.execute()
    server = start_server("--redis", redis_server.url, "--no-publish")
    await wait_until(lambda: "web1" in hosts_of(server.url), 10)
    found: list[str] = []
    before = ""
    pages = 0
    while not found:
        reads_before = commands(admin, "xrevrange")
        query = f"host=web1&source=quiet{'&before=' + before if before else ''}"
        status, page = get_json(f"{server.url}/api/logs?{query}")
        assert status == 200
        pages += 1
        # About 20,000 entries at most, in reads of up to 500 (the whole stream: 101).
        assert commands(admin, "xrevrange") - reads_before <= 50
        found = [line for e in page["events"] for line in e["lines"]]
        if not found:
            assert page["before"] is not None
            before = page["before"]
    assert found == ["the quiet line"] and pages > 1


def announced(admin: Any, host: str) -> list[tuple[str, str]]:
    """The `host down` announcements of `host`: (state, message) each, in order."""
    alerts = [json.loads(fields[b"d"]) for _id, fields in admin.xrange("smon-fleet:alerts")]
    return [(a["state"], a["message"]) for a in alerts if a["host"] == host]


async def test_a_host_whose_keys_are_deleted_leaves_the_fleet(
    redis_server: RedisServer, start_server: Start, tmp_path: Path
) -> None:
    """An operator retires a host by deleting its keys: the dashboard stops listing it, an
    open fleet page is told to drop its row, and its `host down` is resolved, not left
    firing for good."""
    admin = redis_server.client()
    add_host(admin, "old")
    add_host(admin, "kept")
    config = tmp_path / "dashboard.toml"
    config.write_text("[redis]\nstale_s = 0.5\ndown_s = 1\n")
    server = start_server("--redis", redis_server.url, "--no-publish", "--config", str(config))
    await wait_until(lambda: {"old", "kept"} <= set(hosts_of(server.url)), 10)
    await wait_until(lambda: [s for s, _m in announced(admin, "old")] == ["firing"], 15)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{server.url}/fleet/events") as resp:
            reader = StreamReader(resp)
            hello = await reader.next(5)
            assert {h["name"] for h in hello.json()["hosts"]} >= {"old", "kept"}
            admin.delete(metrics_key("old"), sticky_key("old"))
            removed = {"name": "old", "removed": True}
            while (await reader.next(15)).json() != removed:
                pass
    assert set(hosts_of(server.url)) == {"kept"}
    status, body = get_json(f"{server.url}/api/state?host=old")
    assert status == 404 and body["hosts"] == ["kept"]
    await wait_until(lambda: len(announced(admin, "old")) == 2, 10)
    assert announced(admin, "old")[1][0] == "resolved"
    assert "retired" in announced(admin, "old")[1][1]
