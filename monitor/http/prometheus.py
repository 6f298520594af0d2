"""Prometheus export: the host's raw counters (node_exporter names, node_families.py) and
the monitor's own.

Everything is read at scrape time; Prometheus computes rates. Each app gets its own registry,
never the global default one, so several apps (and tests) in one process don't collide.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import psutil
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from monitor.http import node_families as node
from monitor.hub.interface import HubStats
from monitor.metrics.history import MetricsHistory
from monitor.sources.supervisor import Source

log = logging.getLogger(__name__)


class HubStatsReader(Protocol):
    """What the exporter reads from the hub."""

    def stats(self) -> HubStats: ...


# More of the monitor's own figures: metric name -> (help, how to read it); a name ending in
# _total is a counter, any other a gauge.
Counters = dict[str, tuple[str, Callable[[], int]]]


# Each notification target's figures (Notifier.view()): name, sent, failed, pending...
TargetViews = Callable[[], list[dict[str, Any]]]


def build_registry(
    hub: HubStatsReader,
    sources: list[Source],
    history: MetricsHistory,
    counters: Counters,
    targets: TargetViews = list,
) -> CollectorRegistry:
    """A new registry holding one MonitorCollector; render() it on each scrape."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MonitorCollector(hub, sources, history, counters, targets))
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
        counters: Counters,
        targets: TargetViews = list,
    ) -> None:
        self._hub = hub
        self._targets = targets
        self._sources = sources
        self._history = history
        self._counters = counters
        self._lock = threading.Lock()
        # The baseline for sse_monitor_cpu_usage_ratio: the first scrape reports usage since
        # the app started (since boot if this read fails); each later one, since the previous.
        try:
            self._cpu_busy, self._cpu_total = node.cpu_busy_total()
        except (psutil.Error, OSError):
            self._cpu_busy, self._cpu_total = 0.0, 0.0
        self._cpu_ratio = 0.0
        self._failed: set[str] = set()

    def collect(self) -> Iterator[Metric]:
        """One scrape; a group whose psutil call fails is left out, the rest still served."""
        groups: list[Callable[[], list[Metric]]] = [
            self._cpu,
            node.load,
            node.memory,
            node.filesystems,
            node.disks,
            node.network,
            node.host,
            self._monitor,
            self._source_counters,
            self._notify,
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
            for mode in node.CPU_MODES:
                if hasattr(times, mode):
                    seconds.add_metric([str(cpu), mode], getattr(times, mode))
        ratio = GaugeMetricFamily(
            "sse_monitor_cpu_usage_ratio",
            "Share of CPU time not idle (0-1) since the previous scrape, all CPUs.",
            value=self._cpu_usage(),
        )
        return [seconds, ratio]

    def _cpu_usage(self) -> float:
        busy, total = node.cpu_busy_total()
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
            CounterMetricFamily(
                "sse_monitor_events_published_total",
                "Events published to the hub.",
                stats.published,
            ),
            CounterMetricFamily(
                "sse_monitor_gaps_total",
                "Times a slow client lost events (gap frames): lines no longer in their file, "
                "or other events past the replay buffer.",
                stats.gaps,
            ),
            CounterMetricFamily(
                "sse_monitor_events_replayed_total",
                "Log events read again from their files for clients behind the replay buffer.",
                stats.replayed,
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
            *self._more(),
        ]

    def _more(self) -> list[Metric]:
        return [
            (CounterMetricFamily if name.endswith("_total") else GaugeMetricFamily)(
                name, doc, read()
            )
            for name, (doc, read) in self._counters.items()
        ]

    def _notify(self) -> list[Metric]:
        views = self._targets()
        fields = [
            ("sent", "Notifications delivered, by target."),
            ("failed", "Notifications not delivered: refused for good, or out of retry time."),
            ("dropped", "Notifications dropped untried: the target's queue was full."),
            ("retries", "Tries of a notification after its first, by target."),
        ]
        pending = GaugeMetricFamily(
            "sse_monitor_notify_pending", "Notifications waiting, by target.", labels=["target"]
        )
        for view in views:
            pending.add_metric([view["name"]], view["pending"])
        rows = [(v["name"], v) for v in views]
        return [*_counters_by("target", "sse_monitor_notify", fields, rows), pending]

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
        for source in self._sources:
            restarts.add_metric([source.name], source.stats.restarts)
        rows = [
            (s.name, {field: getattr(s.stats, field) for field, _ in fields})
            for s in self._sources
            if s.kind == "log"
        ]
        return [restarts, *_counters_by("source", "sse_monitor_log", fields, rows)]


def _counters_by(
    label: str,
    prefix: str,
    fields: list[tuple[str, str]],
    rows: Sequence[tuple[str, Mapping[str, Any]]],
) -> list[Metric]:
    """A counter family `<prefix>_<field>_total` per field, one sample per row: the row's
    label value, and its value of each field."""
    families: list[Metric] = []
    for field, doc in fields:
        family = CounterMetricFamily(f"{prefix}_{field}_total", doc, labels=[label])
        for value, values in rows:
            family.add_metric([value], values[field])
        families.append(family)
    return families
