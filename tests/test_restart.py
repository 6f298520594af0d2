"""Restarts lose nothing: with a state directory, a client that reconnects to the restarted
server with its last event id gets every line after it, including those written while the
server was down (and through a rotation meanwhile), none twice, and no `reset`. A bad state
directory is a warning and a fresh start. Real server processes, killed for real."""

from __future__ import annotations

import json
import signal
import urllib.request
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
from helpers import Server, StreamReader, has_journal_tools, wait_until_sync, write_journal

from monitor.hub.events import parse_id

END = 650  # lines 100..END-1 are written while the server is down: more than a backlog


def write(log: Path, first: int, count: int) -> None:
    with log.open("a") as f:
        f.write("".join(f"app {i}\n" for i in range(first, first + count)))


async def read_lines(reader: StreamReader, last: str) -> tuple[list[str], list[str], list[str]]:
    """Lines, their events' ids, and every event type seen, through the line `last`."""
    lines: list[str] = []
    ids: list[str] = []
    types: list[str] = []
    while lines[-1:] != [last]:
        event = await reader.next(timeout_s=10)
        types.append(event.type)
        if event.type == "log":
            lines += event.json()["lines"]
            ids.append(event.id)
    return lines, ids, types


@pytest.mark.parametrize("how", ["kill -9", "SIGTERM", "kill -9, rotated while down"])
async def test_a_client_resumes_across_a_restart_with_every_line_once(
    tmp_path: Path, start_server: Callable[..., Server], how: str
) -> None:
    log = tmp_path / "app.log"
    log.touch()
    flags = ("--log", f"app={log}", "--state-dir", str(tmp_path / "state"))
    server = start_server(*flags)
    path = "/events?types=log&sources=app"
    async with aiohttp.ClientSession() as session:
        async with session.get(server.url + path) as resp:
            reader = StreamReader(resp)
            await reader.until("hello")
            write(log, 0, 100)
            lines, ids, _ = await read_lines(reader, "app 99")
        assert lines == [f"app {i}" for i in range(100)]
        if how.startswith("kill -9"):
            server.proc.kill()
        else:
            server.proc.send_signal(signal.SIGTERM)
        server.proc.wait(timeout=10)
        if "rotated" in how:
            write(log, 100, 20)  # the last lines of the old file, unread by anyone
            log.rename(tmp_path / "app.log.1")
            write(log, 120, END - 120)  # a new file, unknown to the last run: all of it is new
        else:
            write(log, 100, END - 100)
        restarted = start_server(*flags)
        headers = {"Last-Event-ID": ids[-1]}
        async with session.get(restarted.url + path, headers=headers) as resp:
            reader = StreamReader(resp)
            lines, new_ids, types = await read_lines(reader, f"app {END - 1}")
            assert lines == [f"app {i}" for i in range(100, END)]  # none lost, none twice
            assert "reset" not in types and "hello" not in types and "gap" not in types
            write(log, END, 1)
            live, _, _ = await read_lines(reader, f"app {END}")
            assert live == [f"app {END}"]
    seqs = [parse_id(i) for i in [ids[-1], *new_ids]]
    assert len({s[0] for s in seqs if s}) == 1  # the same run goes on...
    assert [s[1] for s in seqs if s] == sorted({s[1] for s in seqs if s})  # ...ids increasing


def test_a_corrupt_or_locked_state_directory_is_a_warning_and_a_fresh_start(
    tmp_path: Path, start_server: Callable[..., Server]
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "positions.json").write_text("{not json")
    (state / "positions").write_bytes(b"\x01" * 1000)
    log = tmp_path / "app.log"
    log.write_text("old 1\nold 2\n")
    first = start_server("--log", f"app={log}", "--state-dir", str(state))
    # A second server on the same directory runs without state rather than share it.
    second = start_server("--log", f"app={log}", "--state-dir", str(state))
    for server in (first, second):
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=10) == 0
    assert "positions.json is unreadable" in first.all_stderr()
    assert "in use by another server; starting without state" in second.all_stderr()


def history_times(server: Server) -> list[float]:
    with urllib.request.urlopen(f"{server.url}/api/history?window=15m", timeout=5) as resp:
        return [float(t) for t in json.load(resp)["ts"]]


def test_the_charts_history_survives_a_restart(
    tmp_path: Path, start_server: Callable[..., Server]
) -> None:
    log, state = tmp_path / "app.log", tmp_path / "state"
    flags = ("--interval", "0.1", "--log", f"app={log}", "--state-dir", str(state))
    server = start_server(*flags)
    wait_until_sync(lambda: len(history_times(server)) >= 10)
    before = history_times(server)
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=10) == 0
    restarted = start_server(*flags)
    after = history_times(restarted)
    assert after[: len(before)] == before  # the samples from before the stop, then new ones


@pytest.mark.skipif(not has_journal_tools(), reason="needs journalctl and systemd-journal-remote")
async def test_a_journal_source_resumes_across_a_restart_by_cursor(
    tmp_path: Path, start_server: Callable[..., Server]
) -> None:
    """The journal too: after kill -9 and a restart, a client with its last event id gets the
    entries written while the server was down, none twice, no backlog again, no `reset`."""
    journal = tmp_path / "journal"
    journal.mkdir()
    entries = tmp_path / "journal" / "a.journal"
    write_journal(entries, *({"MESSAGE": f"old {i}"} for i in range(5)))
    config = tmp_path / "c.toml"
    config.write_text(f'[journals]\nsys = {{directory = "{journal}"}}\n')
    flags = ("--config", str(config), "--state-dir", str(tmp_path / "state"))
    server = start_server(*flags)
    path = "/events?types=log&sources=sys"
    async with aiohttp.ClientSession() as session:
        async with session.get(server.url + path) as resp:
            reader = StreamReader(resp)
            await reader.until("hello")
            backlog, _, _ = await read_lines(reader, "old 4")
            write_journal(entries, *({"MESSAGE": f"j {i}"} for i in range(50)))
            lines, ids, _ = await read_lines(reader, "j 49")
        assert backlog[-5:] == [f"old {i}" for i in range(5)] and lines[-1] == "j 49"
        server.proc.kill()
        server.proc.wait(timeout=10)
        write_journal(entries, *({"MESSAGE": f"j {i}"} for i in range(50, 120)))
        restarted = start_server(*flags)
        headers = {"Last-Event-ID": ids[-1]}
        async with session.get(restarted.url + path, headers=headers) as resp:
            reader = StreamReader(resp)
            lines, _, types = await read_lines(reader, "j 119")
            assert lines == [f"j {i}" for i in range(50, 120)]  # none lost, none twice
            assert "reset" not in types and "hello" not in types and "gap" not in types
