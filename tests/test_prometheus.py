"""Prometheus export on this machine's real psutil figures, a real hub and a real tailer."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from helpers import wait_until
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from pytest_aiohttp import AiohttpClient

from monitor.config import Config, LogSource, MetricsConfig
from monitor.http.app import create_app
from monitor.http.keys import HUB
from monitor.http.prometheus import build_registry, render
from monitor.hub.events import METRICS, STATUS
from monitor.hub.interface import Selector
from monitor.hub.memory import MemoryHub
from monitor.metrics.history import MetricsHistory
from monitor.sources.files import FileSource

MB = 1024 * 1024
DEVICE = ("device",)
FS = ("device", "fstype", "mountpoint")
NET = [
    f"node_network_{way}_{what}_total"
    for way in ("receive", "transmit")
    for what in ("bytes", "packets", "errs", "drop")
]
DISK = [
    "node_disk_read_bytes_total",
    "node_disk_written_bytes_total",
    "node_disk_reads_completed_total",
    "node_disk_writes_completed_total",
]
# sample name -> (family type, label names)
EXPECTED: dict[str, tuple[str, tuple[str, ...]]] = {
    "node_cpu_seconds_total": ("counter", ("cpu", "mode")),
    "node_load1": ("gauge", ()),
    "node_load5": ("gauge", ()),
    "node_load15": ("gauge", ()),
    "node_memory_MemTotal_bytes": ("gauge", ()),
    "node_memory_MemAvailable_bytes": ("gauge", ()),
    "node_memory_MemFree_bytes": ("gauge", ()),
    "node_memory_SwapTotal_bytes": ("gauge", ()),
    "node_memory_SwapFree_bytes": ("gauge", ()),
    "node_filesystem_size_bytes": ("gauge", FS),
    "node_filesystem_avail_bytes": ("gauge", FS),
    "node_filesystem_free_bytes": ("gauge", FS),
    **{name: ("counter", DEVICE) for name in DISK + NET},
    "node_boot_time_seconds": ("gauge", ()),
    "node_time_seconds": ("gauge", ()),
    "sse_monitor_host_processes": ("gauge", ()),
    "sse_monitor_cpu_usage_ratio": ("gauge", ()),
    "sse_monitor_memory_usage_ratio": ("gauge", ()),
    "sse_monitor_clients": ("gauge", ()),
    "sse_monitor_clients_caught_up": ("gauge", ()),
    "sse_monitor_consumer_dropped_events_total": ("counter", ()),
    "sse_monitor_history_dropped_series_total": ("counter", ()),
    "sse_monitor_source_restarts_total": ("counter", ("source",)),
    "sse_monitor_events_published_total": ("counter", ()),
    "sse_monitor_gaps_total": ("counter", ()),
    "sse_monitor_events_replayed_total": ("counter", ()),
    "sse_monitor_buffer_events": ("gauge", ()),
    "sse_monitor_buffer_bytes": ("gauge", ()),
    "sse_monitor_log_lines_read_total": ("counter", ("source",)),
    "sse_monitor_log_bytes_read_total": ("counter", ("source",)),
    "sse_monitor_log_rotations_total": ("counter", ("source",)),
    "sse_monitor_log_truncations_total": ("counter", ("source",)),
    "sse_monitor_log_skipped_total": ("counter", ("source",)),
}


class Scrape:
    """One parsed scrape: family types and samples by name."""

    def __init__(self, registry: CollectorRegistry) -> None:
        body, _ = render(registry)
        self.types: dict[str, str] = {}
        self.samples: dict[str, list[tuple[dict[str, str], float]]] = {}
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                self.types[sample.name] = family.type
                self.samples.setdefault(sample.name, []).append((sample.labels, sample.value))

    def value(self, name: str, **labels: str) -> float:
        """The one sample of `name` with exactly these labels."""
        (value,) = [v for found, v in self.samples[name] if found == labels]
        return value

    def total(self, name: str) -> float:
        return sum(v for _, v in self.samples[name])


@pytest.fixture
def hub() -> MemoryHub:
    return MemoryHub(max_events=4)


@pytest.fixture
async def running() -> AsyncIterator[Callable[[FileSource, MemoryHub], None]]:
    """Runs tailers until the test ends."""
    tasks: list[asyncio.Task[None]] = []
    yield lambda tailer, hub: tasks.append(asyncio.create_task(tailer.run(hub)))
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_every_family_has_its_type_labels_and_sane_values(hub: MemoryHub) -> None:
    tailer = FileSource("app", "/nonexistent/app.log")
    scrape = Scrape(build_registry(hub, [tailer], MetricsHistory(), {}))

    for name, (kind, labels) in EXPECTED.items():
        assert scrape.types.get(name) == kind, name
        assert scrape.samples[name], name
        assert all(tuple(sorted(found)) == labels for found, _ in scrape.samples[name]), name
    assert not [name for name in scrape.samples if name.endswith("_created")]
    modes = {labels["mode"] for labels, _ in scrape.samples["node_cpu_seconds_total"]}
    assert modes == {"user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"}
    cpus = {labels["cpu"] for labels, _ in scrape.samples["node_cpu_seconds_total"]}
    assert cpus == {str(i) for i in range(os.cpu_count() or 1)}
    for ratio in ("sse_monitor_cpu_usage_ratio", "sse_monitor_memory_usage_ratio"):
        assert 0.0 <= scrape.value(ratio) <= 1.0
    assert scrape.value("node_memory_MemTotal_bytes") > 0
    assert (
        0
        < scrape.value("node_memory_MemAvailable_bytes")
        <= scrape.value("node_memory_MemTotal_bytes")
    )
    assert min(scrape.value(f"node_load{n}") for n in (1, 5, 15)) >= 0
    assert scrape.value("node_boot_time_seconds") < scrape.value("node_time_seconds")
    assert scrape.value("sse_monitor_host_processes") >= 1
    root = [labels for labels, _ in scrape.samples["node_filesystem_size_bytes"]]
    assert {"device": "/dev/vda", "mountpoint": "/", "fstype": "ext4"} in root
    assert {labels["device"] for labels, _ in scrape.samples["node_disk_read_bytes_total"]} == {
        "vda"
    }  # loop* and zram* are left out
    nics = {labels["device"] for labels, _ in scrape.samples["node_network_receive_bytes_total"]}
    assert {"lo", "eth0"} <= nics
    assert scrape.value("sse_monitor_log_lines_read_total", source="app") == 0


def test_network_counters_count_loopback_traffic(hub: MemoryHub) -> None:
    registry = build_registry(hub, [], MetricsHistory(), {})
    before = Scrape(registry).value("node_network_receive_bytes_total", device="lo")

    with socket.create_server(("127.0.0.1", 0)) as server:
        sender = socket.create_connection(server.getsockname())
        receiver, _ = server.accept()

        def send() -> None:
            sender.sendall(b"x" * 5 * MB)
            sender.close()

        thread = threading.Thread(target=send)
        thread.start()
        received = 0
        with receiver:
            while chunk := receiver.recv(1024 * 1024):
                received += len(chunk)
        thread.join()
    assert received == 5 * MB

    after = Scrape(registry).value("node_network_receive_bytes_total", device="lo")
    assert after - before >= 5 * MB


def test_disk_counters_count_fsynced_writes(hub: MemoryHub, tmp_path: Path) -> None:
    registry = build_registry(hub, [], MetricsHistory(), {})
    before = Scrape(registry)

    with open(tmp_path / "blob", "wb") as f:
        for _ in range(20):
            f.write(os.urandom(MB))
        f.flush()
        os.fsync(f.fileno())

    after = Scrape(registry)
    written = after.total("node_disk_written_bytes_total")
    assert written - before.total("node_disk_written_bytes_total") >= 10 * MB
    writes = after.total("node_disk_writes_completed_total")
    assert writes > before.total("node_disk_writes_completed_total")


async def test_hub_counters_follow_the_hub(hub: MemoryHub) -> None:
    registry = build_registry(hub, [], MetricsHistory(), {})
    for i in range(10):
        hub.publish(METRICS, {"i": i})
    await hub.read(1, Selector())  # a cursor the ring's tail (max_events=4) has passed: one gap

    async with hub.subscribe(Selector()):
        scrape = Scrape(registry)
        assert scrape.value("sse_monitor_clients") == 1
    assert scrape.value("sse_monitor_events_published_total") == 10
    assert scrape.value("sse_monitor_gaps_total") == 1
    assert scrape.value("sse_monitor_buffer_events") == 4
    assert scrape.value("sse_monitor_buffer_bytes") == hub.stats().held_bytes > 0
    assert Scrape(registry).value("sse_monitor_clients") == 0


async def test_log_counters_follow_a_running_tailer(
    tmp_path: Path, running: Callable[[FileSource, MemoryHub], None]
) -> None:
    log = tmp_path / "app.log"
    log.write_text("one\ntwo\nthree\n")
    hub = MemoryHub()
    tailer = FileSource("app", str(log))
    registry = build_registry(hub, [tailer], MetricsHistory(), {})
    running(tailer, hub)

    def lines() -> float:
        return Scrape(registry).value("sse_monitor_log_lines_read_total", source="app")

    await wait_until(lambda: lines() == 3)
    with log.open("a", encoding="utf-8") as f:
        f.write("four\nfünf\n")  # bytes, not characters: ü is two
    await wait_until(lambda: lines() == 5)
    scrape = Scrape(registry)
    assert scrape.value("sse_monitor_log_bytes_read_total", source="app") == len(
        "one\ntwo\nthree\nfour\nfünf\n".encode()
    )
    assert scrape.value("sse_monitor_log_rotations_total", source="app") == 0
    assert scrape.value("sse_monitor_log_truncations_total", source="app") == 0


def test_two_apps_registries_do_not_collide() -> None:
    first, second = MemoryHub(), MemoryHub()
    first.publish(METRICS, {})
    for _ in range(3):
        second.publish(METRICS, {})

    one, two = (
        build_registry(first, [], MetricsHistory(), {}),
        build_registry(second, [], MetricsHistory(), {}),
    )

    assert Scrape(one).value("sse_monitor_events_published_total") == 1
    assert Scrape(two).value("sse_monitor_events_published_total") == 3


def test_render_returns_the_classic_text_content_type(hub: MemoryHub) -> None:
    body, content_type = render(build_registry(hub, [], MetricsHistory(), {}))
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    assert b"# TYPE node_cpu_seconds_total counter\n" in body


def test_cpu_usage_ratio_is_measured_between_scrapes(hub: MemoryHub) -> None:
    registry = build_registry(hub, [], MetricsHistory(), {})
    Scrape(registry)
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:
        pass  # one CPU busy for 0.3 s: at least 1/cpu_count of the time since the last scrape

    busy = Scrape(registry).value("sse_monitor_cpu_usage_ratio")
    assert 0.8 / (os.cpu_count() or 1) <= busy <= 1.0


async def test_metrics_endpoint_serves_the_text_format(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    log = tmp_path / "app.log"
    log.write_text("one\ntwo\n")
    config = Config(
        port=0, logs=(LogSource("app", str(log)),), metrics=MetricsConfig(interval_s=0.05)
    )
    client = await aiohttp_client(create_app(config))
    await wait_until(
        lambda: client.app[HUB].latest(STATUS).get("app", {}).get("state") == "following"
    )
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(await resp.text())}
    lines = families["sse_monitor_log_lines_read"].samples
    assert [(s.labels["source"], s.value) for s in lines if s.name.endswith("_total")] == [
        ("app", 2.0)
    ]
    assert "node_memory_MemTotal_bytes" in families
