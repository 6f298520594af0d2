"""Supervised sources: a crash becomes a status event and a retry; nothing else stops."""

from __future__ import annotations

import asyncio

from helpers import wait_until
from pytest_aiohttp import AiohttpClient

from monitor.config import Config
from monitor.http.app import create_app
from monitor.http.keys import HUB
from monitor.hub.events import METRICS, STATUS
from monitor.hub.interface import Publisher, Selector
from monitor.hub.memory import MemoryHub
from monitor.hub.sse import SSEParser
from monitor.sources.sampler import MetricsSampler
from monitor.sources.supervisor import SourceStats, supervise


class Crashing:
    """A test-only source that publishes once, then crashes, every time it is started."""

    kind = "log"

    def __init__(self, name: str = "flaky") -> None:
        self.name = name
        self.starts = 0
        self.stats = SourceStats()

    async def run(self, hub: Publisher) -> None:
        self.starts += 1
        hub.publish("log", {"source": self.name, "lines": [f"start {self.starts}"]}, self.name)
        raise OSError(f"disk on fire #{self.starts}")


async def test_crash_is_reported_and_retried_with_growing_backoff() -> None:
    hub = MemoryHub()
    source = Crashing()
    task = asyncio.create_task(supervise(source, hub, min_backoff_s=0.01, max_backoff_s=0.04))
    await wait_until(lambda: source.starts >= 5)
    task.cancel()
    status = hub.latest(STATUS)["flaky"]
    assert status["state"] == "error"
    assert "OSError: disk on fire" in status["detail"]
    assert status["retry_in_s"] == 0.04  # capped
    assert source.stats.restarts >= 4  # counted for /metrics


async def test_crashing_source_does_not_stop_server_or_other_sources(
    aiohttp_client: AiohttpClient, config: Config
) -> None:
    sampler = MetricsSampler(interval_s=0.05)
    client = await aiohttp_client(create_app(config, sources=[Crashing("app"), sampler]))
    hub = client.app[HUB]
    await wait_until(lambda: hub.latest(STATUS).get("app", {}).get("state") == "error")
    published = hub.stats().published
    await wait_until(lambda: hub.stats().published >= published + 3)  # the sampler goes on
    sources = {s["name"]: s for s in await (await client.get("/api/sources")).json()}
    assert sources["app"]["status"]["state"] == "error"
    assert "disk on fire" in sources["app"]["status"]["detail"]
    assert sources["metrics"]["status"]["state"] == "running"
    assert (await client.get("/healthz")).status == 200


async def test_sampler_publishes_the_metrics_contract() -> None:
    hub = MemoryHub()
    task = asyncio.create_task(MetricsSampler(interval_s=0.05).run(hub))
    await wait_until(lambda: hub.stats().published >= 3)
    task.cancel()
    frames, _ = await hub.read(1, Selector(frozenset({METRICS})))
    events = SSEParser().feed(b"".join(f.data for f in frames))
    assert events and all(e.type == METRICS for e in events)
    for event in events:
        sample = event.json()
        assert {"ts", "cpu", "memory"} <= sample.keys()
        assert 0 <= sample["cpu"]["percent"] <= 100 and 0 < sample["memory"]["percent"] < 100
