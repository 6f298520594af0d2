"""Log sources through the real server: latency to an SSE client, and bad sources in status."""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from helpers import Server, wait_until

from monitor.client.stream import iter_events


async def test_a_written_line_reaches_an_sse_client_quickly(
    tmp_path: Path, start_server: Callable[..., Server]
) -> None:
    log = tmp_path / "app.log"
    log.touch()
    server = start_server("--log", f"app={log}", "--interval", "60")
    fd = os.open(log, os.O_WRONLY | os.O_APPEND)
    latencies: list[float] = []
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{server.url}/events?types=log,status&sources=app") as resp:
            events = iter_events(resp)
            async with asyncio.timeout(10):
                async for event in events:
                    if event.type == "status" and event.json()["state"] == "following":
                        break
            for i in range(50):
                written = time.perf_counter()
                os.write(fd, f"line {i}\n".encode())
                async with asyncio.timeout(5):
                    event = await anext(events)
                latencies.append(time.perf_counter() - written)
                assert event.json()["lines"] == [f"line {i}"]
    os.close(fd)
    latencies.sort()
    print(
        f"write to SSE client: p50 {latencies[25] * 1e3:.2f} ms, max {latencies[-1] * 1e3:.2f} ms"
    )
    assert latencies[-1] < 1.0  # generous: the benchmark measures it for real


def sources(server: Server) -> dict[str, dict[str, Any]]:
    with urllib.request.urlopen(f"{server.url}/api/sources", timeout=5) as resp:
        return {s["name"]: s for s in json.load(resp)}


async def test_bad_sources_are_reported_and_the_rest_is_served(
    tmp_path: Path, start_server: Callable[..., Server]
) -> None:
    (tmp_path / "adir").mkdir()
    os.mkfifo(tmp_path / "fifo")
    good = tmp_path / "good.log"
    good.write_text("fine\n")
    server = start_server(
        *("--log", f"dir={tmp_path / 'adir'}", "--log", f"fifo={tmp_path / 'fifo'}"),
        *("--log", "null=/dev/null", "--log", f"good={good}", "--log", f"late={tmp_path / 'x'}"),
    )
    await wait_until(lambda: sources(server)["null"]["status"]["state"] == "error")
    status = {name: s["status"] for name, s in sources(server).items()}
    assert status["dir"]["state"] == "error" and "is a directory" in status["dir"]["detail"]
    assert status["fifo"]["state"] == "error" and "a FIFO" in status["fifo"]["detail"]
    assert "a character device" in status["null"]["detail"]
    assert status["good"]["state"] == "following"
    assert status["late"]["state"] == "waiting"
    assert status["metrics"]["state"] == "running"
    (tmp_path / "adir").rmdir()
    (tmp_path / "adir").write_text("now a file\n")
    await wait_until(lambda: sources(server)["dir"]["status"]["state"] == "following")
