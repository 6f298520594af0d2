"""MetricsSampler on this machine's real counters: payload shape, rates, process table, run()."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from helpers import wait_until

from monitor.hub.events import METRICS, STATUS
from monitor.hub.memory import MemoryHub
from monitor.sources.processes import ProcessTable
from monitor.sources.sampler import (
    DISK_RATES,
    NET_RATES,
    MetricsSampler,
    cpu_split,
    device_rates,
    rate,
    total_rates,
    whole_disks,
)

MB = 1024 * 1024
OPTIONAL_FLOAT = (float, type(None))
PROCESS_KEYS = {"pid": int, "name": str, "cpu_percent": float, "rss": int}
# Burns one CPU for at most this long, in case the test's teardown never runs.
BURNER = "import time\nend = time.monotonic() + 20\nwhile time.monotonic() < end: pass"


def check_types(section: dict[str, Any], types: dict[str, Any]) -> None:
    assert section.keys() == types.keys()
    for key, expected in types.items():
        assert isinstance(section[key], expected), (key, section[key])


def check_rates(section: dict[str, Any], names: tuple[str, ...], extra: str) -> None:
    assert section.keys() == {*names, extra}
    for rates in [section, *section[extra].values()]:
        for name in names:
            assert isinstance(rates[name], OPTIONAL_FLOAT) and (rates[name] or 0) >= 0


def check_processes(processes: dict[str, Any], top_n: int = 5) -> None:
    check_types(processes, {"count": int, "sampled_at": float, "top_cpu": list, "top_memory": list})
    assert processes["count"] > 1 and abs(processes["sampled_at"] - time.time()) < 60
    for row in processes["top_cpu"] + processes["top_memory"]:
        assert {**PROCESS_KEYS, "user": object}.keys() == row.keys()
        check_types({k: row[k] for k in PROCESS_KEYS}, PROCESS_KEYS)
        assert row["user"] is None or isinstance(row["user"], str)
    assert 0 < len(processes["top_memory"]) <= top_n
    rss = [row["rss"] for row in processes["top_memory"]]
    assert rss == sorted(rss, reverse=True)


def check_payload(p: dict[str, Any]) -> None:
    """Every key of the metrics contract, with its type and range."""
    sections = {"cpu": dict, "load": dict, "memory": dict, "swap": dict, "disks": list}
    sections |= {"disk_io": dict, "net": dict, "processes": dict}
    check_types(p, {"ts": float, "uptime_s": float, **sections})
    check_types(p["load"], {"1m": float, "5m": float, "15m": float})
    cpu = {"percent": float, "user": float, "system": float, "iowait": float}
    check_types(p["cpu"], {**cpu, "per_core": list, "count": int})
    assert len(p["cpu"]["per_core"]) == p["cpu"]["count"] == os.cpu_count()
    for percent in [*(p["cpu"][k] for k in cpu), *p["cpu"]["per_core"]]:
        assert isinstance(percent, float) and 0 <= percent <= 100
    memory = {"total": int, "used": int, "available": int, "percent": float}
    check_types(p["memory"], memory)
    assert 0 < p["memory"]["percent"] < 100 and p["memory"]["used"] < p["memory"]["total"]
    check_types(p["swap"], {"total": int, "used": int, "free": int, "percent": float})
    disk = {"mount": str, "device": str, "fstype": str, "total": int, "used": int, "free": int}
    assert any(d["mount"] == "/" for d in p["disks"])
    for d in p["disks"]:
        check_types(d, {**disk, "percent": float})
        assert 0 <= d["percent"] <= 100
    check_rates(p["disk_io"], DISK_RATES, "devices")
    check_rates(p["net"], NET_RATES, "interfaces")
    check_processes(p["processes"])


@pytest.fixture
def burner() -> Iterator[subprocess.Popen[bytes]]:
    """A process that keeps one CPU busy; killed at teardown."""
    proc = subprocess.Popen([sys.executable, "-c", BURNER])
    yield proc
    proc.kill()
    proc.wait(timeout=5)


def test_payload_has_every_key_with_its_type() -> None:
    sampler = MetricsSampler(interval_s=1.0)
    check_payload(sampler.measure())
    payload = sampler.measure()
    check_payload(payload)
    assert "vda" in payload["disk_io"]["devices"] and "lo" in payload["net"]["interfaces"]


def test_per_sample_cost_is_small() -> None:
    sampler = MetricsSampler(interval_s=1.0, process_interval_s=3600)
    sampler.measure()
    started = time.perf_counter()
    for _ in range(50):
        sampler.measure()
    per_sample_s = (time.perf_counter() - started) / 50
    started = time.perf_counter()
    for _ in range(5):
        sampler.refresh_processes()
    per_refresh_s = (time.perf_counter() - started) / 5
    print(f"per sample {per_sample_s * 1e3:.2f} ms; process refresh {per_refresh_s * 1e3:.1f} ms")
    assert per_sample_s < 0.05  # generous: a loaded CI host, not a benchmark


def test_disk_write_shows_in_write_rate(tmp_path: Path) -> None:
    sampler = MetricsSampler(interval_s=1.0, process_interval_s=3600)
    started = time.monotonic()
    sampler.measure()
    with open(tmp_path / "blob", "wb") as f:
        f.write(b"x" * (20 * MB))
        f.flush()
        os.fsync(f.fileno())
    disk_io = sampler.measure()["disk_io"]
    elapsed_s = time.monotonic() - started  # at least the sampler's own interval
    assert disk_io["write_bytes_per_s"] * elapsed_s >= 10 * MB
    assert disk_io["devices"]["vda"]["write_bytes_per_s"] * elapsed_s >= 10 * MB


def test_loopback_traffic_shows_on_lo_but_not_in_totals() -> None:
    sampler = MetricsSampler(interval_s=1.0, process_interval_s=3600)
    started = time.monotonic()
    sampler.measure()
    with socket.create_server(("127.0.0.1", 0)) as server:
        with socket.create_connection(server.getsockname()) as sender:
            receiver, _ = server.accept()
            with receiver:
                sending = threading.Thread(target=sender.sendall, args=(b"x" * (10 * MB),))
                sending.start()
                received = 0
                while received < 10 * MB:
                    received += len(receiver.recv(MB))
                sending.join()
    net = sampler.measure()["net"]
    elapsed_s = time.monotonic() - started
    assert net["interfaces"]["lo"]["rx_bytes_per_s"] * elapsed_s >= 10 * MB
    others = [r for nic, r in net["interfaces"].items() if nic != "lo"]
    for name in NET_RATES:
        known = [r[name] for r in others if r[name] is not None]
        assert net[name] == (pytest.approx(sum(known)) if known else None)


def test_counter_reset_or_missing_gives_none_not_negative() -> None:
    assert rate(100, 150, 2.0) == 25.0
    assert rate(150, 100, 2.0) is None  # reset or wrap
    assert rate(None, 100, 2.0) is None and rate(100, 150, 0.0) is None
    prev = {"eth0": (100, 10), "gone0": (5, 5), "lo": (0, 0)}
    cur = {"eth0": (50, 20), "new0": (7, 7), "lo": (30, 30)}
    rates = device_rates(prev, cur, ("a", "b"), 1.0)
    assert rates == {
        "eth0": {"a": None, "b": 10.0},
        "new0": {"a": None, "b": None},
        "lo": {"a": 30.0, "b": 30.0},
        "gone0": {"a": None, "b": None},
    }
    assert total_rates(rates, ("a", "b"), exclude={"lo"}) == {"a": None, "b": 10.0}
    assert total_rates(rates, ("a", "b")) == {"a": 30.0, "b": 40.0}


def test_only_whole_real_disks_are_counted() -> None:
    names = ["loop0", "ram1", "zram0", "vda", "vda1", "sdb", "sdb2", "nvme0n1", "nvme0n1p3"]
    names += ["mmcblk0p1", "md0", "dm-0"]
    assert whole_disks(names) == ["vda", "sdb", "nvme0n1", "mmcblk0p1", "md0", "dm-0"]


def test_cpu_split_is_percent_of_all_time() -> None:
    prev = {"user": 10.0, "system": 5.0, "idle": 80.0, "iowait": 5.0, "guest": 1.0}
    cur = {"user": 40.0, "system": 15.0, "idle": 130.0, "iowait": 15.0, "guest": 21.0}
    # 100 s in all: user 30 (of which guest 20, not counted twice), system 10, idle+iowait 60.
    assert cpu_split(prev, cur) == pytest.approx(
        {"percent": 40.0, "user": 30.0, "system": 10.0, "iowait": 10.0}
    )
    assert cpu_split(cur, cur)["percent"] == 0.0


async def test_cpu_hog_appears_in_top_cpu(burner: subprocess.Popen[bytes]) -> None:
    hub = MemoryHub()
    samples = hub.feed(frozenset({METRICS}))
    sampler = MetricsSampler(interval_s=0.05, process_interval_s=0.1)
    task = asyncio.create_task(sampler.run(hub))

    def hog_is_top() -> bool:
        rows = [r for e in samples.drain() for r in e.payload["processes"]["top_cpu"]]
        return any(r["pid"] == burner.pid and r["cpu_percent"] > 50 for r in rows)

    try:
        await wait_until(hog_is_top, timeout_s=3)
    finally:
        task.cancel()


def test_process_table_is_reused_between_refreshes() -> None:
    sampler = MetricsSampler(interval_s=1.0, process_interval_s=3600)
    first, second = sampler.measure(), sampler.measure()
    assert first["processes"] is second["processes"]


async def test_run_publishes_growing_events_from_the_first() -> None:
    hub = MemoryHub()
    payloads: list[dict[str, Any]] = []
    samples = hub.feed(frozenset({METRICS}))
    sampler = MetricsSampler(interval_s=0.02, process_interval_s=0.2)
    task = asyncio.create_task(sampler.run(hub))

    def tables_seen() -> int:
        payloads.extend(e.payload for e in samples.drain())
        return len({p["processes"]["sampled_at"] for p in payloads})

    try:
        await wait_until(lambda: tables_seen() >= 3)
    finally:
        task.cancel()
    assert hub.latest(STATUS)["metrics"]["state"] == "running"
    check_payload(payloads[0])
    # The table refreshes every 0.2 s while samples come every 0.02 s.
    assert len(payloads) >= 2 * len({p["processes"]["sampled_at"] for p in payloads})
    assert [p["ts"] for p in payloads] == sorted(p["ts"] for p in payloads)


async def test_the_process_walk_lets_the_loop_run_between_slices() -> None:
    """The walk runs on the event loop; a log line must not wait for the whole table.
    A slice of 0 s yields after every process, so the test does not depend on how many
    processes the machine runs or how fast it reads them (a fresh CI machine walked its
    few processes inside one 0.5 ms slice)."""
    table = ProcessTable(top_n=3)
    ticks = 0
    walking = True

    async def ticker() -> None:
        nonlocal ticks
        while walking:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    started = ticks
    walked = await table.walk(slice_s=0)
    walking = False
    await task
    assert walked.keys() == table.snapshot().keys() and walked["count"] > 1
    assert len(walked["top_memory"]) == 3 and walked["top_memory"][0]["rss"] > 0
    assert ticks - started >= walked["count"] - 1, "the walk held the loop between slices"


def test_the_process_table_agrees_with_psutil_on_a_busy_process(tmp_path: Path) -> None:
    """A process spinning on one core leads top_cpu near 100 %, named and owned as psutil
    names them (its whole name, past the kernel's 15 characters), with psutil's memory."""
    table = ProcessTable(top_n=5)
    spinner = tmp_path / "spinner-with-a-long-name"
    spinner.symlink_to(sys.executable)
    busy = subprocess.Popen([str(spinner), "-c", "while True: pass"])
    try:
        table.snapshot()  # primes each process's CPU ticks
        time.sleep(0.5)  # the span the percentages are over, not a wait for anything
        walked = table.snapshot()
        row = next(r for r in walked["top_cpu"] if r["pid"] == busy.pid)
        proc = psutil.Process(busy.pid)
        assert 50 <= row["cpu_percent"] <= 110
        assert row["name"] == proc.name() == "spinner-with-a-long-name"
        assert row["user"] == proc.username()
        assert abs(row["rss"] - proc.memory_info().rss) < 1024 * 1024
    finally:
        busy.kill()
        busy.wait()
