"""The host's raw counters under node_exporter's names, read from psutil at each scrape:
one function per group of metric families, for monitor.http.prometheus's collector."""

from __future__ import annotations

import os
import time
from typing import Any

import psutil
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from monitor.sources.sampler import VIRTUAL_DISKS

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


def cpu_busy_total() -> tuple[float, float]:
    """Seconds of CPU time busy and in all, summed over CPUs, since boot."""
    times = psutil.cpu_times()
    total = sum(getattr(times, mode) for mode in CPU_MODES if hasattr(times, mode))
    idle = sum(getattr(times, mode) for mode in IDLE_MODES if hasattr(times, mode))
    return total - idle, total


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def load() -> list[Metric]:
    """node_load1/5/15."""
    load1, load5, load15 = psutil.getloadavg()
    return [
        _gauge("node_load1", "1-minute load average.", load1),
        _gauge("node_load5", "5-minute load average.", load5),
        _gauge("node_load15", "15-minute load average.", load15),
    ]


def memory() -> list[Metric]:
    """node_memory_*_bytes, and the share of memory not available."""
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


def filesystems() -> list[Metric]:
    """node_filesystem_{size,avail,free}_bytes per mounted filesystem."""
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


def disks() -> list[Metric]:
    """node_disk_* counters per block device (virtual ones left out)."""
    counters: dict[str, Any] = psutil.disk_io_counters(perdisk=True) or {}
    families: list[Metric] = []
    for name, doc, field in DISK_FIELDS:
        family = CounterMetricFamily(name, doc, labels=["device"])
        for device, io in sorted(counters.items()):
            if not device.startswith(VIRTUAL_DISKS):
                family.add_metric([device], getattr(io, field))
        families.append(family)
    return families


def network() -> list[Metric]:
    """node_network_* counters per interface."""
    counters: dict[str, Any] = psutil.net_io_counters(pernic=True) or {}
    families: list[Metric] = []
    for name, doc, field in NET_FIELDS:
        family = CounterMetricFamily(name, doc, labels=["device"])
        for device, io in sorted(counters.items()):
            family.add_metric([device], getattr(io, field))
        families.append(family)
    return families


def host() -> list[Metric]:
    """Boot time, the clock, and the number of processes."""
    return [
        _gauge("node_boot_time_seconds", "Boot time, in Unix seconds.", psutil.boot_time()),
        _gauge("node_time_seconds", "System time, in Unix seconds.", time.time()),
        _gauge("sse_monitor_host_processes", "Processes on the host.", len(psutil.pids())),
    ]
