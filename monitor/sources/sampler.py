"""MetricsSampler: host metrics from psutil, one `metrics` event per interval.

CPU percentages and disk and network rates come from counter deltas between consecutive
samples; the costly process table is refreshed on its own, slower cadence.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import psutil

from monitor.hub.events import METRICS
from monitor.hub.interface import Publisher
from monitor.sources.processes import ProcessTable
from monitor.sources.supervisor import SourceStats, report

PARTITIONS_EVERY_S = 30.0
DISK_RATES = ("read_bytes_per_s", "write_bytes_per_s", "read_ops_per_s", "write_ops_per_s")
DISK_COUNTERS = ("read_bytes", "write_bytes", "read_count", "write_count")
NET_RATES = (
    *("rx_bytes_per_s", "tx_bytes_per_s", "rx_packets_per_s", "tx_packets_per_s"),
    *("rx_errors_per_s", "tx_errors_per_s", "rx_drops_per_s", "tx_drops_per_s"),
)
NET_COUNTERS = (
    *("bytes_recv", "bytes_sent", "packets_recv", "packets_sent"),
    *("errin", "errout", "dropin", "dropout"),
)
# Block devices whose I/O is in memory, or is counted again on the disk behind them.
VIRTUAL_DISKS = ("loop", "ram", "zram")
# The kernel names a partition <disk><n>, or <disk>p<n> when the disk's name ends in a digit.
PARTITION = re.compile(r"(.+\d)p\d+|(.+\D)\d+")
# Loopback traffic never leaves the host: listed per interface, left out of the totals.
LOOPBACK = frozenset({"lo"})

Counters = dict[str, tuple[int, ...]]
Rates = dict[str, float | None]
CpuTimes = dict[str, float]


def rate(prev: int | None, cur: int | None, elapsed_s: float) -> float | None:
    """A counter's change per second; None if unknown (no previous value, reset or wrap)."""
    if prev is None or cur is None or cur < prev or elapsed_s <= 0:
        return None
    # Rounded like every figure here: each goes to every client every second, and 17 digits
    # of a float say no more to a chart or a person than 3 or 4 do.
    return round((cur - prev) / elapsed_s, 1)


def device_rates(
    prev: Mapping[str, tuple[int, ...]],
    cur: Mapping[str, tuple[int, ...]],
    names: Sequence[str],
    elapsed_s: float,
) -> dict[str, Rates]:
    """Rates per device; a device that appeared or vanished since `prev` gets only None."""
    rates: dict[str, Rates] = {}
    for device in [*cur, *(d for d in prev if d not in cur)]:
        before, after = prev.get(device), cur.get(device)
        if before is None or after is None:
            rates[device] = dict.fromkeys(names)
        else:
            rates[device] = {
                n: rate(b, a, elapsed_s) for n, b, a in zip(names, before, after, strict=True)
            }
    return rates


def total_rates(
    devices: Mapping[str, Rates], names: Sequence[str], exclude: Collection[str] = ()
) -> Rates:
    """Each rate summed over the devices that know it; None if none does."""
    totals: Rates = {}
    for name in names:
        known = [r[name] for d, r in devices.items() if d not in exclude]
        values = [v for v in known if v is not None]
        totals[name] = float(sum(values)) if values else None
    return totals


def whole_disks(names: Iterable[str]) -> list[str]:
    """The block devices to count: no virtual ones, no partition of a disk that is listed."""
    kept = [n for n in names if not n.startswith(VIRTUAL_DISKS)]
    listed = set(kept)
    return [n for n in kept if _parent_disk(n) not in listed]


def _parent_disk(name: str) -> str | None:
    match = PARTITION.fullmatch(name)
    return (match[1] or match[2]) if match else None


def cpu_split(prev: CpuTimes, cur: CpuTimes) -> dict[str, float]:
    """Busy, user, system and iowait time between two readings, as percent of all time."""
    # Clamped: some kernels let idle step back a little between readings.
    delta = {f: max(cur[f] - prev.get(f, 0.0), 0.0) for f in cur}
    # user and nice already include guest and guest_nice time; don't count it twice.
    total = sum(delta.values()) - delta.get("guest", 0.0) - delta.get("guest_nice", 0.0)
    if total <= 0:
        return {"percent": 0.0, "user": 0.0, "system": 0.0, "iowait": 0.0}
    idle = delta.get("idle", 0.0) + delta.get("iowait", 0.0)

    def percent(seconds: float) -> float:
        return round(min(max(100.0 * seconds / total, 0.0), 100.0), 2)

    return {
        "percent": percent(total - idle),
        "user": percent(delta.get("user", 0.0)),
        "system": percent(delta.get("system", 0.0)),
        "iowait": percent(delta.get("iowait", 0.0)),
    }


def read_cpu_times() -> list[CpuTimes]:
    """Seconds each CPU spent in each mode, from one read of /proc/stat."""
    return [times._asdict() for times in psutil.cpu_times(percpu=True)]


def read_disk_counters() -> Counters:
    """Byte and operation counters of each whole disk."""
    counters = psutil.disk_io_counters(perdisk=True, nowrap=False) or {}
    return {
        name: tuple(getattr(counters[name], f) for f in DISK_COUNTERS)
        for name in whole_disks(counters)
    }


def read_net_counters() -> Counters:
    """Byte, packet, error and drop counters of each network interface."""
    # nowrap=False: psutil would hide a reset by adding the old value; we report None once.
    counters = psutil.net_io_counters(pernic=True, nowrap=False) or {}
    return {nic: tuple(getattr(c, f) for f in NET_COUNTERS) for nic, c in counters.items()}


class MetricsSampler:
    """Samples host metrics every `interval_s` seconds; the process table every
    `process_interval_s` seconds, keeping the `top_n` busiest by CPU and by memory."""

    kind = "metrics"

    def __init__(
        self,
        interval_s: float,
        name: str = "metrics",
        *,
        process_interval_s: float = 5.0,
        top_n: int = 5,
    ) -> None:
        self.name = name
        self.interval_s = interval_s
        self.process_interval_s = process_interval_s
        self.stats = SourceStats()
        self._boot_time = psutil.boot_time()
        self._table = ProcessTable(top_n)
        self._processes: dict[str, Any] | None = None
        self._processes_due = 0.0
        self._partitions: list[Any] = []
        self._partitions_due = 0.0
        # Prime every counter, so that even the first sample has rates and percentages.
        self._cpu = read_cpu_times()
        self._disk_io = read_disk_counters()
        self._net = read_net_counters()
        self._read_at = time.monotonic()

    def refresh_processes(self) -> None:
        """Walk the process table (blocking, ~10 ms); later samples reuse the result."""
        self._processes = self._table.snapshot()
        self._processes_due = time.monotonic() + self.process_interval_s

    async def walk_processes(self) -> None:
        """refresh_processes() on the loop, a slice at a time (ProcessTable.walk)."""
        self._processes = await self._table.walk()
        self._processes_due = time.monotonic() + self.process_interval_s

    def measure(self) -> dict[str, Any]:
        """One metrics payload, with the last process table (walked now if there is none yet;
        run() refreshes it off the loop when due)."""
        if self._processes is None:
            self.refresh_processes()
        assert self._processes is not None
        now = time.time()
        mem, swap = psutil.virtual_memory(), psutil.swap_memory()
        load_1m, load_5m, load_15m = psutil.getloadavg()
        disk_io, net = self._io_rates()
        return {
            "ts": round(now, 3),
            "uptime_s": round(now - self._boot_time, 1),
            "cpu": self._cpu_percents(),
            "load": {"1m": round(load_1m, 2), "5m": round(load_5m, 2), "15m": round(load_15m, 2)},
            "memory": {
                "total": mem.total,
                "used": mem.used,
                "available": mem.available,
                "percent": float(mem.percent),
            },
            "swap": {
                "total": swap.total,
                "used": swap.used,
                "free": swap.free,
                "percent": float(swap.percent),
            },
            "disks": self._disks(),
            "disk_io": disk_io,
            "net": net,
            "processes": self._processes,
        }

    def _cpu_percents(self) -> dict[str, Any]:
        cur = read_cpu_times()
        # A CPU went on- or offline: indexes no longer match; start over from this reading.
        prev = self._cpu if len(self._cpu) == len(cur) else cur
        self._cpu = cur
        per_core = [cpu_split(p, c)["percent"] for p, c in zip(prev, cur, strict=True)]
        split = cpu_split(_sum_times(prev), _sum_times(cur))
        return {**split, "per_core": per_core, "count": len(cur)}

    def _io_rates(self) -> tuple[dict[str, Any], dict[str, Any]]:
        disk_io, net = read_disk_counters(), read_net_counters()
        read_at = time.monotonic()
        elapsed_s = read_at - self._read_at
        disks = device_rates(self._disk_io, disk_io, DISK_RATES, elapsed_s)
        nics = device_rates(self._net, net, NET_RATES, elapsed_s)
        self._disk_io, self._net, self._read_at = disk_io, net, read_at
        return (
            {**total_rates(disks, DISK_RATES), "devices": disks},
            {**total_rates(nics, NET_RATES, exclude=LOOPBACK), "interfaces": nics},
        )

    def _disks(self) -> list[dict[str, Any]]:
        if time.monotonic() >= self._partitions_due:
            self._partitions = psutil.disk_partitions(all=False)
            self._partitions_due = time.monotonic() + PARTITIONS_EVERY_S
        disks = []
        for part in self._partitions:
            try:
                usage = psutil.disk_usage(part.mountpoint)
            except OSError:  # PermissionError included; or unmounted since the list was read
                continue
            disks.append(
                {
                    "mount": part.mountpoint,
                    "device": part.device,
                    "fstype": part.fstype,
                    "total": usage.total,
                    "used": usage.used,
                    "free": usage.free,
                    "percent": float(usage.percent),
                }
            )
        return disks

    async def run(self, hub: Publisher) -> None:
        """Publish a sample every interval, on a fixed schedule that does not drift."""
        report(hub, self, "running", f"sampling every {self.interval_s:g}s")
        # The first walk only primes per-process CPU; walk again at the first tick.
        await self.walk_processes()
        self._processes_due = time.monotonic()
        next_at = time.monotonic()
        while True:
            next_at += self.interval_s
            delay = next_at - time.monotonic()
            if delay < 0:  # the loop was stalled: skip missed ticks rather than burst
                next_at, delay = time.monotonic(), 0.0
            await asyncio.sleep(delay)
            if time.monotonic() >= self._processes_due:
                await self.walk_processes()
            hub.publish(METRICS, self.measure())


def _sum_times(cpus: list[CpuTimes]) -> CpuTimes:
    return {field: sum(cpu[field] for cpu in cpus) for field in cpus[0]} if cpus else {}
