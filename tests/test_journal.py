"""JournalSource against a real journal: entries written by systemd-journal-remote into a
directory, followed by the real journalctl --directory."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
from helpers import Published, has_journal_tools, wait_until, write_journal
from prometheus_client.parser import text_string_to_metric_families

from monitor.config import Config, ConfigError, JournalSpec, load_config
from monitor.http.app import create_app
from monitor.hub.interface import Selector
from monitor.hub.memory import MemoryHub
from monitor.hub.sse import SSEEvent, SSEParser
from monitor.sources.journal import JournalSource
from monitor.sources.journal_entries import entry_line
from monitor.sources.supervisor import supervise

pytestmark = pytest.mark.skipif(
    not has_journal_tools(), reason="needs journalctl and systemd-journal-remote (make system-deps)"
)


def past(seconds: float) -> str:
    return str(int((time.time() - seconds) * 1_000_000))


class Follow(Published):
    """A running JournalSource and what it published."""

    def __init__(self, hub: MemoryHub, source: JournalSource) -> None:
        super().__init__(hub, wait_s=3.0)
        self.source = source

    def has_state(self, state: str) -> bool:
        self.poll()
        return any(s["state"] == state for s in self.statuses)


@pytest.fixture
async def follow() -> AsyncIterator[Callable[..., Follow]]:
    tasks: list[asyncio.Task[None]] = []

    def start(
        *args: Any, min_backoff_s: float = 1.0, max_events: int = 10_000, **kwargs: Any
    ) -> Follow:
        hub = MemoryHub(max_events=max_events, max_bytes=16 * 1024 * 1024)
        source = JournalSource("journal", *args, **kwargs)
        # As the server runs it: supervise() restarts journalctl when it exits.
        run = supervise(source, hub, min_backoff_s=min_backoff_s)
        tasks.append(asyncio.create_task(run))
        return Follow(hub, source)

    yield start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_backlog_then_live_entries(tmp_path: Path, follow: Callable[..., Follow]) -> None:
    write_journal(
        tmp_path / "a.journal",
        {"MESSAGE": "old", "PRIORITY": "3", "_SYSTEMD_UNIT": "demo.service", "_PID": "42",
         "__REALTIME_TIMESTAMP": past(60)},
        {"MESSAGE": "older", "SYSLOG_IDENTIFIER": "cron", "__REALTIME_TIMESTAMP": past(30)},
    )  # fmt: skip
    f = follow(directory=str(tmp_path))
    assert await f.wait_lines(2) == ["demo.service[42]: old", "cron: older"]
    backlog = f.events[0]
    assert backlog["backlog"] is True and backlog["file"] == "journal"
    assert [(e["priority"], e["unit"]) for e in backlog["entries"]] == [
        (3, "demo.service"),
        (6, None),
    ]
    assert abs(backlog["entries"][0]["ts"] - (time.time() - 60)) < 5
    # A second journal file in the same directory, written while following.
    write_journal(tmp_path / "b.journal", {"MESSAGE": "new", "_SYSTEMD_UNIT": "demo.service"})
    assert (await f.wait_lines(3))[2] == "demo.service: new"
    assert "backlog" not in f.events[-1]
    assert f.statuses[0]["state"] == "following" and f.statuses[0]["mode"] == "journalctl"


async def test_match_filters_and_backlog_is_bounded(
    tmp_path: Path, follow: Callable[..., Follow]
) -> None:
    entries = [
        {"MESSAGE": f"m{i}", "_SYSTEMD_UNIT": "demo.service" if i % 2 else "other.service",
         "__REALTIME_TIMESTAMP": past(60 - i)}
        for i in range(10)
    ]  # fmt: skip
    write_journal(tmp_path / "a.journal", *entries)
    f = follow(("_SYSTEMD_UNIT=demo.service",), directory=str(tmp_path), backlog_lines=3)
    await f.wait_lines(3)
    write_journal(tmp_path / "a.journal", {"MESSAGE": "x", "_SYSTEMD_UNIT": "other.service"})
    write_journal(tmp_path / "a.journal", {"MESSAGE": "live", "_SYSTEMD_UNIT": "demo.service"})
    assert await f.wait_lines(4) == [f"demo.service: m{i}" for i in (5, 7, 9)] + [
        "demo.service: live"
    ]
    assert f.statuses[0]["matches"] == ["_SYSTEMD_UNIT=demo.service"]


async def test_killed_journalctl_resumes_after_its_cursor(
    tmp_path: Path, follow: Callable[..., Follow]
) -> None:
    path = tmp_path / "a.journal"
    write_journal(path, *({"MESSAGE": f"b{i}", "__REALTIME_TIMESTAMP": past(9)} for i in range(3)))
    f = follow(directory=str(tmp_path), min_backoff_s=0.3)
    await f.wait_lines(3)
    children = [p for p in psutil.Process().children() if p.name() == "journalctl"]
    assert [p.pid for p in children] == [f.source.process.pid]  # type: ignore[union-attr]
    os.kill(children[0].pid, signal.SIGKILL)
    await wait_until(lambda: f.has_state("error"), 3)
    write_journal(path, *({"MESSAGE": f"l{i}"} for i in range(30)))  # while it is down
    lines = await f.wait_lines(33)
    await asyncio.sleep(0.2)  # nothing repeated arrives late either
    # All of them: journalctl --follow from a cursor would show 10 without --lines=all.
    assert f.lines() == ["b0", "b1", "b2", *(f"l{i}" for i in range(30))] and lines == f.lines()
    assert "--after-cursor" in " ".join(f.source.command()) and f.source.stats.restarts == 1
    error = next(s for s in f.statuses if s["state"] == "error")
    assert "journalctl exited" in error["detail"]


async def test_missing_journalctl_is_an_error_status(follow: Callable[..., Follow]) -> None:
    f = follow(journalctl="/nonexistent/journalctl", min_backoff_s=10)
    await wait_until(lambda: f.has_state("error"), 3)
    assert f.statuses[0]["state"] == "error"
    assert f.statuses[0]["detail"].startswith("/nonexistent/journalctl not found")


def test_entry_line_decodes_binary_messages() -> None:
    entry = {"MESSAGE": [104, 105, 0xFF], "_COMM": "sh", "_PID": "7"}
    assert entry_line(entry) == "sh[7]: hi\ufffd"
    assert entry_line({"MESSAGE": "bare"}) == "bare"


def test_journal_config_from_flags_and_file(tmp_path: Path) -> None:
    config_file = tmp_path / "c.toml"
    config_file.write_text(
        '[logs]\napp = "/tmp/app.log"\n'
        '[journals]\nweb = {matches = ["_SYSTEMD_UNIT=nginx.service"], directory = "/j"}\n'
    )
    flags = {"journals": ["errors=PRIORITY=3,_SYSTEMD_UNIT=x.service", "all"]}
    config = load_config(str(config_file), flags)
    assert [(j.name, j.matches, j.directory) for j in config.journals] == [
        ("web", ("_SYSTEMD_UNIT=nginx.service",), "/j"),
        ("errors", ("PRIORITY=3", "_SYSTEMD_UNIT=x.service"), None),
        ("all", (), None),
    ]
    assert config.log_names() == ["app", "web", "errors", "all"]
    with pytest.raises(ConfigError, match="already has this name"):
        load_config(str(config_file), {"journals": ["app"]})
    with pytest.raises(ConfigError, match="FIELD=VALUE"):
        load_config(None, {"journals": ["x=nonsense"]})


async def test_journal_counters_reach_metrics_by_source_name(
    tmp_path: Path, aiohttp_client: Any
) -> None:
    write_journal(tmp_path / "a.journal", *({"MESSAGE": f"m{i}"} for i in range(3)))
    journal = JournalSpec("system", directory=str(tmp_path))
    client = await aiohttp_client(create_app(Config(port=0, journals=(journal,))))

    async def scrape() -> dict[str, float]:
        text = await (await client.get("/metrics")).text()
        return {
            f"{s.name}/{s.labels.get('source')}": s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    async with asyncio.timeout(5):
        while (await scrape()).get("sse_monitor_log_lines_read_total/system") != 3:
            await asyncio.sleep(0.05)
    samples = await scrape()
    assert samples["sse_monitor_log_skipped_total/system"] == 0
    assert samples["sse_monitor_source_restarts_total/system"] == 0
    assert samples["sse_monitor_source_restarts_total/metrics"] == 0


async def test_a_reader_behind_the_buffer_gets_journal_entries_again_by_cursor(
    tmp_path: Path, follow: Callable[..., Follow]
) -> None:
    """A reader the hub's buffer (16 events) lapped gets every entry again from the journal,
    by each event's cursor, in order and once; the matches hold for the rereading too. Once
    the journal no longer holds them, a `gap` counts the lines."""
    path = tmp_path / "a.journal"
    f = follow(("_SYSTEMD_UNIT=demo.service",), directory=str(tmp_path), max_events=16)
    expected = []
    for i in range(40):  # one write, one event
        demo = [{"MESSAGE": f"m{i}-{j}", "_SYSTEMD_UNIT": "demo.service"} for j in range(3)]
        write_journal(
            path, demo[0], {"MESSAGE": "noise", "_SYSTEMD_UNIT": "other.service"}, *demo[1:]
        )
        expected += [f"demo.service: m{i}-{j}" for j in range(3)]
        await f.wait_lines(len(expected))
    hub = f.hub

    async def read_from_start() -> list[SSEEvent]:
        data, cursor = [], 1
        while cursor < hub.stats().published + 1:
            frames, cursor = await hub.read(cursor, Selector(frozenset({"log", "gap"})))
            data += frames
        return SSEParser().feed(b"".join(fr.data for fr in data))

    events = await read_from_start()
    assert [line for e in events if e.type == "log" for line in e.json()["lines"]] == expected
    assert not [e for e in events if e.type == "gap"] and hub.stats().replayed >= 40 - 16
    path.unlink()  # the journal is gone: what the buffer no longer holds is a gap
    events = await read_from_start()
    gaps = [e.json() for e in events if e.type == "gap"]
    got = [line for e in events if e.type == "log" for line in e.json()["lines"]]
    assert gaps
    assert len(got) + sum(g["lines"] for g in gaps) == len(expected)
    assert got == expected[len(expected) - len(got) :]  # the newest, still in the buffer
