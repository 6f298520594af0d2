"""MetricsSampler: host metrics from psutil, one `metrics` event per interval."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psutil

from monitor.events import METRICS
from monitor.hub import EventHub
from monitor.sources import report


class MetricsSampler:
    """Samples CPU and memory every `interval_s` seconds."""

    kind = "metrics"

    def __init__(self, interval_s: float, name: str = "metrics") -> None:
        self.name = name
        self.interval_s = interval_s

    def sample(self) -> dict[str, Any]:
        """One metrics payload; `ts`, `cpu.percent` and `memory.percent` are always there."""
        mem = psutil.virtual_memory()
        return {
            "ts": time.time(),
            "cpu": {"percent": psutil.cpu_percent(None)},
            "memory": {
                "percent": mem.percent,
                "total": mem.total,
                "used": mem.used,
                "available": mem.available,
            },
        }

    async def run(self, hub: EventHub) -> None:
        """Publish a sample every interval, on a fixed schedule that does not drift."""
        psutil.cpu_percent(None)  # the first call returns 0.0; prime it
        report(hub, self, "running", f"sampling every {self.interval_s:g}s")
        next_at = time.monotonic()
        while True:
            next_at += self.interval_s
            delay = next_at - time.monotonic()
            if delay < 0:  # the loop was stalled: skip missed ticks rather than burst
                next_at, delay = time.monotonic(), 0.0
            await asyncio.sleep(delay)
            hub.publish(METRICS, self.sample())
