"""Prometheus export: the host's raw counters (node_exporter names) and the monitor's own.

Everything is read at scrape time; Prometheus computes rates. Each app gets its own registry,
never the global default one, so several apps (and tests) in one process don't collide.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import psutil
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from monitor.hub.interface import HubStats
from monitor.metrics.history import MetricsHistory
from monitor.sources.sampler import VIRTUAL_DISKS
from monitor.sources.supervisor import Source

log = logging.getLogger(__name__)

CPU_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
# guest and guest_nice are already counted in user and nice (as psutil.cpu_percent knows).
IDLE_MODES = frozenset({"idle", "iowait"})
NET_FIELDS = (  # (name, help, psutil field)
    ("node_network_receive_bytes_total", "Bytes received.", "bytes_recv"),
    ("node_network_transmit_bytes_total", "Bytes sent.", "bytes_sent"),
    ("node_network_receive_packets_total", "Packets received.", "packets_recv"),
    ("node_network_transmit_packets_total", "Packets sent.", "packets_sent"),
    ("node_network_receive_errs_total", "Receive errors.", "errin"),
    ("node_network_transmit_errs_total", "Transmit errors.", "errout"),
    ("node_network_receive_drop_total", "Received packets dropped.", "dropin"),
    ("node_network_transmit_drop_total", "Packets to send dropped.", "dropout"),
)
DISK_FIELDS = (  # (name, help, psutil field)
    ("node_disk_read_bytes_total", "Bytes read from the disk.", "read_bytes"),
    ("node_disk_written_bytes_total", "Bytes written to the disk.", "write_bytes"),
    ("node_disk_reads_completed_total", "Reads completed.", "read_count"),
    ("node_disk_writes_completed_total", "Writes completed.", "write_count"),
)


class HubStatsReader(Protocol):
    """What the exporter reads from the hub."""

    def stats(self) -> HubStats: ...


def build_registry(
    hub: HubStatsReader,
    sources: list[Source],
    history: MetricsHistory,
    password_checks: Callable[[], int] | None = None,
) -> CollectorRegistry:
    """A new registry holding one MonitorCollector; render() it on each scrape.
    `password_checks` counts bcrypt checks, where a users file is configured."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MonitorCollector(hub, sources, history, password_checks))
    return registry


def render(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The text exposition of `registry` and its content type; blocks for a few ms (psutil)."""
    # generate_latest() writes the classic 0.0.4 text format (our names need no escaping);
    # prometheus-client 0.26's CONTENT_TYPE_LATEST says version=1.0.0, which older scrapers lack.
    return generate_latest(registry), CONTENT_TYPE_PLAIN_0_0_4


class MonitorCollector(Collector):
    """Yields fresh metric families per scrape; safe to run in a worker thread: it only reads
    the hub's, sources' and history's ints, and guards its own CPU baseline with a lock."""

    def __init__(
        self,
        hub: HubStatsReader,
        sources: list[Source],
        history: MetricsHistory,
        password_checks: Callable[[], int] | None = None,
    ) -> None:
        self._hub = hub
        self._sources = sources
        self._history = history
        self._password_checks = password_checks
        self._lock = threading.Lock()
        # The baseline for sse_monitor_cpu_usage_ratio: the first scrape reports usage since
        # the app started (since boot if this read fails); each later one, since the previous.
        try:
            self._cpu_busy, self._cpu_total = _cpu_busy_total()
        except (psutil.Error, OSError):
            self._cpu_busy, self._cpu_total = 0.0, 0.0
        self._cpu_ratio = 0.0
        self._failed: set[str] = set()

    def collect(self) -> Iterator[Metric]:
        """One scrape; a group whose psutil call fails is left out, the rest still served."""
        groups: list[Callable[[], list[Metric]]] = [
            self._cpu,
            _load,
            _memory,
            _filesystems,
            _disks,
            _network,
            _host,
            self._monitor,
            self._source_counters,
        ]
        for group in groups:
            try:
                families = group()
            except (psutil.Error, OSError) as exc:
                name = group.__name__
                if name not in self._failed:  # once: Prometheus scrapes every few seconds
                    self._failed.add(name)
                    log.warning("%s left out of /metrics: %r", name.strip("_"), exc)
                continue
            yield from families

    def _cpu(self) -> list[Metric]:
        per_cpu = psutil.cpu_times(percpu=True)
        seconds = CounterMetricFamily(
            "node_cpu_seconds_total", "Seconds the CPUs spent in each mode.", labels=["cpu", "mode"]
        )
        for cpu, times in enumerate(per_cpu):
            for mode in CPU_MODES:
                if hasattr(times, mode):
                    seconds.add_metric([str(cpu), mode], getattr(times, mode))
        ratio = GaugeMetricFamily(
            "sse_monitor_cpu_usage_ratio",
            "Share of CPU time not idle (0-1) since the previous scrape, all CPUs.",
            value=self._cpu_usage(),
        )
        return [seconds, ratio]

    def _cpu_usage(self) -> float:
        busy, total = _cpu_busy_total()
        with self._lock:
            if total > self._cpu_total:  # else: scraped twice within one clock tick
                ratio = (busy - self._cpu_busy) / (total - self._cpu_total)
                self._cpu_ratio = min(1.0, max(0.0, ratio))
                self._cpu_busy, self._cpu_total = busy, total
            return self._cpu_ratio

    def _monitor(self) -> list[Metric]:
        stats, history = self._hub.stats(), self._history
        return [
            GaugeMetricFamily("sse_monitor_clients", "Connected SSE clients.", stats.subscribers),
            GaugeMetricFamily(
                "sse_monitor_clients_caught_up",
                "Clients with nothing left to read, written to as events are published.",
                stats.caught_up,
            ),
            GaugeMetricFamily(
                "sse_monitor_sources_waiting",
                "Log sources waiting now for a client that keeps up to read on.",
                stats.waiting_sources,
            ),
            CounterMetricFamily(
                "sse_monitor_events_published_total",
                "Events published to the hub.",
                stats.published,
            ),
            CounterMetricFamily(
                "sse_monitor_gaps_total",
                "Times a slow client lost events (gap frames).",
                stats.gaps,
            ),
            CounterMetricFamily(
                "sse_monitor_clients_left_behind_total",
                "Times a client held the log sources back for 5 s and was left to get a gap.",
                stats.left_behind,
            ),
            GaugeMetricFamily(
                "sse_monitor_buffer_events", "Events the replay ring holds.", stats.held_events
            ),
            GaugeMetricFamily(
                "sse_monitor_buffer_bytes", "Encoded bytes the replay ring holds.", stats.held_bytes
            ),
            CounterMetricFamily(
                "sse_monitor_consumer_dropped_events_total",
                "Events history or alert rules fell too far behind to see.",
                stats.consumer_drops,
            ),
            CounterMetricFamily(
                "sse_monitor_history_dropped_series_total",
                "Metric names not kept as chart history (over its series cap).",
                history.dropped_series,
            ),
            *self._auth(),
        ]

    def _auth(self) -> list[Metric]:
        if self._password_checks is None:
            return []
        doc = "Passwords checked with bcrypt (cache misses: each costs tens of ms of CPU)."
        return [
            CounterMetricFamily("sse_monitor_password_checks_total", doc, self._password_checks())
        ]

    def _source_counters(self) -> list[Metric]:
        restarts = CounterMetricFamily(
            "sse_monitor_source_restarts_total",
            "Times a source stopped or crashed and was started again.",
            labels=["source"],
        )
        fields = [
            ("lines_read", "Log lines read."),
            ("bytes_read", "Log bytes read from files, newlines included."),
            ("rotations", "Times a followed log file was rotated away."),
            ("truncations", "Times a followed log file was truncated."),
            ("skipped", "Log input skipped as unreadable (journal entries that are not JSON)."),
        ]
        families = [
            CounterMetricFamily(f"sse_monitor_log_{field}_total", doc, labels=["source"])
            for field, doc in fields
        ]
        for source in self._sources:
            restarts.add_metric([source.name], source.stats.restarts)
            if source.kind == "log":
                for family, (field, _) in zip(families, fields, strict=True):
                    family.add_metric([source.name], getattr(source.stats, field))
        return [restarts, *families]


def _cpu_busy_total() -> tuple[float, float]:
    times = psutil.cpu_times()
    total = sum(getattr(times, mode) for mode in CPU_MODES if hasattr(times, mode))
    idle = sum(getattr(times, mode) for mode in IDLE_MODES if hasattr(times, mode))
    return total - idle, total


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _load() -> list[Metric]:
    load1, load5, load15 = psutil.getloadavg()
    return [
        _gauge("node_load1", "1-minute load average.", load1),
        _gauge("node_load5", "5-minute load average.", load5),
        _gauge("node_load15", "15-minute load average.", load15),
    ]


def _memory() -> list[Metric]:
    mem, swap = psutil.virtual_memory(), psutil.swap_memory()
    used = 1.0 - mem.available / mem.total if mem.total else 0.0
    return [
        _gauge("node_memory_MemTotal_bytes", "Total memory in bytes.", mem.total),
        _gauge(
            "node_memory_MemAvailable_bytes", "Memory available without swapping.", mem.available
        ),
        _gauge("node_memory_MemFree_bytes", "Memory not used at all.", mem.free),
        _gauge("node_memory_SwapTotal_bytes", "Total swap in bytes.", swap.total),
        _gauge("node_memory_SwapFree_bytes", "Free swap in bytes.", swap.free),
        _gauge("sse_monitor_memory_usage_ratio", "Share of memory not available (0-1).", used),
    ]


def _filesystems() -> list[Metric]:
    labels = ["device", "mountpoint", "fstype"]
    size = GaugeMetricFamily("node_filesystem_size_bytes", "Filesystem size.", labels=labels)
    avail = GaugeMetricFamily(
        "node_filesystem_avail_bytes", "Bytes available to non-root users.", labels=labels
    )
    free = GaugeMetricFamily("node_filesystem_free_bytes", "Free bytes.", labels=labels)
    for part in psutil.disk_partitions(all=False):
        try:
            st = os.statvfs(part.mountpoint)
        except OSError:
            continue  # one unreadable mount (permissions, a stale NFS) leaves out only itself
        values = [part.device, part.mountpoint, part.fstype]
        size.add_metric(values, st.f_blocks * st.f_frsize)
        avail.add_metric(values, st.f_bavail * st.f_frsize)
        free.add_metric(values, st.f_bfree * st.f_frsize)
    return [size, avail, free]


def _disks() -> list[Metric]:
    counters: dict[str, Any] = psutil.disk_io_counters(perdisk=True) or {}
    families: list[Metric] = []
    for name, doc, field in DISK_FIELDS:
        family = CounterMetricFamily(name, doc, labels=["device"])
        for device, io in sorted(counters.items()):
            if not device.startswith(VIRTUAL_DISKS):
                family.add_metric([device], getattr(io, field))
        families.append(family)
    return families


def _network() -> list[Metric]:
    counters: dict[str, Any] = psutil.net_io_counters(pernic=True) or {}
    families: list[Metric] = []
    for name, doc, field in NET_FIELDS:
        family = CounterMetricFamily(name, doc, labels=["device"])
        for device, io in sorted(counters.items()):
            family.add_metric([device], getattr(io, field))
        families.append(family)
    return families


def _host() -> list[Metric]:
    return [
        _gauge("node_boot_time_seconds", "Boot time, in Unix seconds.", psutil.boot_time()),
        _gauge("node_time_seconds", "System time, in Unix seconds.", time.time()),
        _gauge("sse_monitor_host_processes", "Processes on the host.", len(psutil.pids())),
    ]
