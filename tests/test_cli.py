"""`python -m monitor serve` as a subprocess: flag and config errors, config files, shutdown."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from helpers import MONITOR, Server

from monitor.cli import JournalFormatter
from monitor.client.stream import iter_events


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run `python -m monitor <args>` to completion."""
    return subprocess.run([*MONITOR, *args], cwd=cwd, capture_output=True, text=True, timeout=30)


def one_error_line(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Assert a non-zero exit with one non-empty stderr line holding every needle; return it."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr
    assert len(lines) == 1, result.stderr
    assert all(needle in lines[0] for needle in needles), (needles, lines[0])
    return lines[0]


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--port", "70000"], "--port"),
        (["--interval", "0"], "--interval"),
        (["--log", "noequals"], "NAME=PATH"),
        (["--log", "a=/x", "--log", "a=/y"], "'a' is given twice"),
    ],
    ids=["port-out-of-range", "interval-zero", "log-without-equals", "log-name-twice"],
)
def test_bad_flag_exits_with_one_line(tmp_path: Path, flags: list[str], needle: str) -> None:
    one_error_line(run_cli("serve", *flags, cwd=tmp_path), needle)


@pytest.mark.parametrize(
    ("toml", "needles"),
    [
        ("bogus = 1\n", ["bogus: unknown key"]),
        ('port = "x"\n', ["port:", "'x'"]),
        ("port = [\n", ["invalid TOML"]),
        (None, ["not found"]),
        (
            '[[alerts]]\nname = "cpu-high"\nmetric = "cpu.percent >> 90"\n',
            ["alerts[0] 'cpu-high': metric:", "cpu.percent >> 90"],
        ),
        (
            '[[alerts]]\nname = "errs"\nsource = "nope"\npattern = "ERROR"\n',
            ["alerts[0] 'errs': source:", "'nope'"],
        ),
    ],
    ids=[
        "unknown-key",
        "port-not-integer",
        "invalid-toml",
        "missing-file",
        "bad-rule",
        "bad-source",
    ],
)
def test_bad_config_file_exits_with_one_line(
    tmp_path: Path, toml: str | None, needles: list[str]
) -> None:
    config = tmp_path / "monitor.toml"
    if toml is not None:
        config.write_text(toml)
    one_error_line(run_cli("serve", "--config", str(config), cwd=tmp_path), str(config), *needles)


def test_config_file_error_names_the_file_once(tmp_path: Path) -> None:
    missing = tmp_path / "absent.toml"
    line = one_error_line(run_cli("serve", "--config", str(missing), cwd=tmp_path))
    assert line.count(str(missing)) == 1, line


def test_port_in_use_exits_1_with_cannot_listen(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", "--port", str(port), cwd=tmp_path)
    one_error_line(result, "cannot listen", str(port))
    assert result.returncode == 1


async def sources_and_hello(url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """GET /api/sources by name, and the `hello` payload of a fresh /events stream."""
    async with aiohttp.ClientSession() as session, asyncio.timeout(5):
        async with session.get(f"{url}/api/sources") as resp:
            assert resp.status == 200
            sources = {item["name"]: item for item in await resp.json()}
        async with session.get(f"{url}/events") as resp:
            async for event in iter_events(resp):
                if event.type == "hello":
                    return sources, event.json()
    raise AssertionError("stream ended without a hello")


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    """A TOML config with an interval and one log source, `app`."""
    path = tmp_path / "monitor.toml"
    path.write_text(f'interval_s = 0.3\n\n[logs]\napp = "{tmp_path / "x.log"}"\n')
    return path


async def test_config_file_values_are_used(
    start_server: Callable[..., Server], config_file: Path, tmp_path: Path
) -> None:
    server = start_server("--config", str(config_file))
    sources, hello = await sources_and_hello(server.url)
    assert sources["app"]["path"] == str(tmp_path / "x.log")
    assert hello["interval_s"] == 0.3


async def test_flags_override_config_file(
    start_server: Callable[..., Server], config_file: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other.log"
    server = start_server("--config", str(config_file), "--log", f"app={other}", "--interval", "2")
    sources, hello = await sources_and_hello(server.url)
    assert sources["app"]["path"] == str(other)
    assert [s["name"] for s in hello["sources"]] == ["app"]
    assert hello["interval_s"] == 2.0


async def hold_stream(session: aiohttp.ClientSession, url: str, hellos: list[int]) -> None:
    """Read /events: count the hello, then read on until the server ends the stream."""
    async with session.get(f"{url}/events") as resp:
        assert resp.status == 200
        events = iter_events(resp)
        async for event in events:
            if event.type == "hello":
                hellos.append(1)
                break
        async for _ in events:
            pass  # returns at EOF; a cut connection raises instead


async def stop_with_streams(server: Server, n: int, signum: signal.Signals) -> float:
    """Open `n` streams, wait for every hello, send `signum`: seconds until the process exits."""
    hellos: list[int] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        tasks = [asyncio.create_task(hold_stream(session, server.url, hellos)) for _ in range(n)]
        deadline = time.monotonic() + 15
        while len(hellos) < n:
            assert time.monotonic() < deadline, f"{len(hellos)}/{n} hellos after 15s"
            assert not any(t.done() for t in tasks), "a stream ended before shutdown"
            await asyncio.sleep(0.02)
        start = time.monotonic()
        server.proc.send_signal(signum)
        code = await asyncio.to_thread(server.proc.wait, 10)
        elapsed = time.monotonic() - start
        async with asyncio.timeout(5):  # every stream sees its end instead of hanging
            await asyncio.gather(*tasks)
    assert code == 0, server.all_stderr()
    assert "Traceback" not in server.all_stderr()
    return elapsed


async def test_sigterm_with_200_streams_exits_0_quickly(
    start_server: Callable[..., Server],
) -> None:
    # 200 streams from 127.0.0.1: loopback counts against the total caps only.
    server = start_server()
    elapsed = await stop_with_streams(server, 200, signal.SIGTERM)
    print(f"shutdown with 200 streams: {elapsed:.3f}s")
    assert elapsed < 3.0


async def test_sigint_with_open_streams_exits_0(start_server: Callable[..., Server]) -> None:
    assert await stop_with_streams(start_server(), 5, signal.SIGINT) < 3.0


def test_sigterm_without_clients_exits_0_quickly(start_server: Callable[..., Server]) -> None:
    server = start_server()
    start = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=10) == 0
    assert time.monotonic() - start < 2.0


def test_sigterm_once_accepting_exits_0(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # stderr is a full one-page pipe: the first log line ('listening on') blocks until read,
    # which holds the server right between accepting connections and installing its handlers.
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4096)
    os.write(write_end, b"x" * 4096)
    with os.fdopen(read_end, "rb") as stderr:
        proc = subprocess.Popen(
            [*MONITOR, "serve", "--port", str(port)], cwd=tmp_path, stderr=write_end
        )
        os.close(write_end)
        drain = threading.Thread(target=stderr.read, daemon=True)  # unblocks the logger
        try:
            deadline = time.monotonic() + 15
            while not accepts(port):
                assert time.monotonic() < deadline, f"port {port} not accepting after 15s"
                time.sleep(0.02)
            proc.send_signal(signal.SIGTERM)
            drain.start()
            assert proc.wait(timeout=10) == 0
        finally:
            proc.kill()
            proc.wait(timeout=10)
            if drain.ident is not None:
                drain.join(timeout=5)


def accepts(port: int) -> bool:
    """True if something accepts TCP connections on 127.0.0.1:port."""
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def test_client_leaving_an_idle_stream_is_released(
    start_server: Callable[..., Server],
) -> None:
    server = start_server()
    async with aiohttp.ClientSession() as session:
        resp = await session.get(f"{server.url}/events?types=alert")
        async with asyncio.timeout(10):
            async for event in iter_events(resp):
                if event.type == "hello":
                    break
        health = await (await session.get(f"{server.url}/healthz")).json()
        assert health["clients"] == 1
        resp.close()  # an idle stream: only a disconnect can tell the server
        deadline = time.monotonic() + 5
        while (await (await session.get(f"{server.url}/healthz")).json())["clients"]:
            assert time.monotonic() < deadline, "server still counts the client after 5s"
            await asyncio.sleep(0.02)


def test_check_config_good_file_prints_ok(tmp_path: Path) -> None:
    path = tmp_path / "monitor.toml"
    path.write_text(
        f'[logs]\napp = "{tmp_path / "app.log"}"\ndb = "{tmp_path / "db.log"}"\n\n'
        '[[alerts]]\nname = "cpu-high"\nmetric = "cpu.percent > 90"\n'
    )
    result = run_cli("check-config", str(path), cwd=tmp_path)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == f"{path}: OK (2 log sources, 1 alert rules, 0 notification targets)\n"


@pytest.mark.parametrize(
    ("toml", "needles"),
    [
        ('[[alerts]]\nname = "cpu-high"\nmetric = "cpu.percent >> 90"\n', ["alerts[0]", ">>"]),
        ("bogus = 1\n", ["bogus: unknown key"]),
        (None, ["not found"]),
        ('certfile = "absent.pem"\nkeyfile = "absent.key"\n', ["--certfile absent.pem"]),
    ],
    ids=["bad-rule", "unknown-key", "missing-file", "missing-certfile"],
)
def test_check_config_bad_file_is_one_line_exit_2(
    tmp_path: Path, toml: str | None, needles: list[str]
) -> None:
    path = tmp_path / "monitor.toml"
    if toml is not None:
        path.write_text(toml)
    result = run_cli("check-config", str(path), cwd=tmp_path)
    one_error_line(result, *needles)
    assert result.returncode == 2
    assert result.stdout == ""


def test_journal_lines_carry_syslog_priority_on_every_line() -> None:
    formatter = JournalFormatter("%(name)s: %(message)s")
    record = logging.LogRecord("monitor", logging.WARNING, __file__, 1, "a\nb", None, None)
    assert formatter.format(record) == "<4>monitor: a\n<4>b"
    record.levelno = logging.DEBUG
    assert formatter.format(record) == "<7>monitor: a\n<7>b"
    record.levelno = logging.ERROR
    assert formatter.format(record).startswith("<3>")
