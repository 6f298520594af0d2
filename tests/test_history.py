"""MetricsHistory: flattening, the full-resolution ring, buckets, bounds and parse_window."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from helpers import wait_until
from pytest_aiohttp import AiohttpClient

from monitor.config import Config, MetricsConfig
from monitor.http.app import create_app
from monitor.http.keys import HISTORY
from monitor.metrics.history import MetricsHistory, series_of
from monitor.metrics.paths import flatten, lookup

T0 = 1_795_599_960.0  # a minute boundary, so bucket starts are easy to predict


def payload(ts: float, **overrides: Any) -> dict[str, Any]:
    """A realistic metrics payload at `ts`; keyword arguments replace top-level sections."""
    rates = {"read_bytes_per_s": 0.0, "write_bytes_per_s": 4096.0}
    rates |= {"read_ops_per_s": 0.0, "write_ops_per_s": 1.0}
    iface = {"rx_bytes_per_s": 100.0, "tx_bytes_per_s": 50.0}
    base: dict[str, Any] = {
        "ts": ts,
        "uptime_s": 123.0,
        "cpu": {"percent": 12.5, "user": 8.0, "system": 3.0, "iowait": 0.5},
        "load": {"1m": 0.5, "5m": 0.4, "15m": 0.3},
        "memory": {"total": 25276510208, "used": 321187840, "percent": 1.3},
        "swap": {"total": 0, "used": 0, "free": 0, "percent": 0.0},
        "disks": [
            {"mount": "/", "device": "/dev/vda", "total": 2, "used": 1, "percent": 50.0},
            {"mount": "/boot", "device": "/dev/vda1", "total": 4, "used": 1, "percent": 25.0},
        ],
        "disk_io": {**rates, "devices": {"vda": dict(rates)}},
        "net": {**iface, "interfaces": {"eth0": dict(iface), "lo": dict(iface)}},
        "processes": {
            "count": 66,
            "sampled_at": ts,
            "top_cpu": [{"pid": 1, "name": "init", "cpu_percent": 1.0}],
            "top_memory": [{"pid": 1, "name": "init", "rss": 1000}],
        },
    }
    base["cpu"] |= {"per_core": [10.0, 15.0], "count": 2}
    return base | overrides


def filled(history: MetricsHistory, seconds: int, start: float = T0) -> MetricsHistory:
    sample = payload(start)
    for i in range(seconds):
        sample["ts"] = sample["processes"]["sampled_at"] = start + i
        history.add(sample)
    return history


def test_flatten_names_numeric_leaves_by_dotted_path() -> None:
    names = flatten(payload(T0))
    for name in (
        "cpu.percent",
        "cpu.per_core.0",
        "cpu.per_core.1",
        "load.1m",
        "memory.percent",
        "disk_io.devices.vda.write_bytes_per_s",
        "net.interfaces.eth0.rx_bytes_per_s",
        "net.interfaces.lo.tx_bytes_per_s",
        "processes.count",
    ):
        assert name in names
    assert names["cpu.per_core.1"] == 15.0
    assert "ts" not in names
    assert names["cpu.count"] == 2 and names["disks./.total"] == 2  # a rule may name them


def test_every_series_is_a_path_a_rule_can_name() -> None:
    sample = payload(T0)
    series = series_of(sample)
    assert len(series) > 20
    for name, value in series.items():
        assert lookup(sample, name) == value, name


def test_constants_and_clock_readings_are_not_series() -> None:
    names = series_of(payload(T0))
    for name in ("uptime_s", "cpu.count", "memory.total", "swap.total", "processes.sampled_at"):
        assert name not in names
    assert {"memory.used", "swap.used", "processes.count"} <= names.keys()


def test_flatten_skips_tables_but_keeps_disks_by_mount() -> None:
    names = flatten(payload(T0))
    assert not [n for n in names if n.startswith(("processes.top_", "disks.0", "disks.1"))]
    assert names["disks./.percent"] == 50.0 and names["disks./.used"] == 1.0
    assert names["disks./boot.percent"] == 25.0
    assert not [n for n in names if n.startswith("disks.") and n.endswith(".device")]
    series = series_of(payload(T0))
    assert {n for n in series if n.startswith("disks.")} == {
        "disks./.percent",
        "disks./.used",
        "disks./boot.percent",
        "disks./boot.used",
    }


def test_flatten_keeps_none_as_gap_and_ignores_bools_and_strings() -> None:
    odd = {"ts": T0, "a": None, "b": True, "c": "x", "d": float("nan"), "e": [1, None, False]}
    assert flatten(odd) == {"a": None, "d": None, "e.0": 1.0, "e.1": None}


def test_full_ring_is_bounded_and_keeps_the_newest_in_order() -> None:
    history = filled(MetricsHistory(full_s=900, interval_s=1), 5000)
    everything = history.query(900)
    assert everything["resolution_s"] == 1
    assert everything["ts"] == [T0 + i for i in range(5000 - 900, 5000)]
    assert len(everything["series"]["cpu.percent"]) == 900


def test_query_within_full_returns_only_the_window() -> None:
    history = filled(MetricsHistory(), 2000)
    last = T0 + 1999
    result = history.query(300, keys=["cpu.percent", "load.1m", "no.such"])
    assert result["ts"] == [last - 299 + i for i in range(300)]
    assert set(result["series"]) == {"cpu.percent", "load.1m"}
    assert result["series"]["load.1m"] == [0.5] * 300


def test_late_series_is_back_filled_and_missing_series_is_a_gap() -> None:
    history = MetricsHistory()
    for i in range(20):
        extra = {"gpu": {"percent": float(i)}} if 10 <= i < 15 else {}
        history.add(payload(T0 + i, **extra))
    result = history.query(60)
    gpu = result["series"]["gpu.percent"]
    assert len(gpu) == len(result["ts"]) == 20
    assert gpu == [None] * 10 + [10.0, 11.0, 12.0, 13.0, 14.0] + [None] * 5
    assert {len(column) for column in result["series"].values()} == {20}


def test_none_rate_is_a_gap_in_full_and_ignored_by_buckets() -> None:
    history = MetricsHistory(full_s=60)
    for i in range(120):
        rate = None if i % 2 else float(i % 60)
        history.add(payload(T0 + i, net={"rx_bytes_per_s": rate, "unknown": None}))
    full = history.query(4)["series"]["net.rx_bytes_per_s"]
    assert full == [56.0, None, 58.0, None]
    buckets = history.query(120)
    assert buckets["is_bucketed"] is True
    assert buckets["min"]["net.rx_bytes_per_s"] == [0.0, 0.0]
    assert buckets["series"]["net.rx_bytes_per_s"] == [29.0, 29.0]
    assert buckets["max"]["net.rx_bytes_per_s"] == [58.0, 58.0]
    for stats in ("min", "series", "max"):
        assert buckets[stats]["net.unknown"] == [None, None]


def test_buckets_hold_exact_min_avg_max() -> None:
    history = MetricsHistory()
    for i in range(3 * 3600):
        history.add({"ts": T0 + i, "v": float(i % 60), "w": float(i // 60)})
    result = history.query(2 * 3600)
    assert result["resolution_s"] == 60
    newest = T0 + 3 * 3600 - 1
    assert result["ts"][0] <= newest - 7200 < result["ts"][0] + 60
    assert result["ts"][-1] == T0 + 3 * 3600 - 60  # the open bucket
    assert result["ts"] == sorted(result["ts"]) and len(result["ts"]) == 121
    low, avg, high = result["min"], result["series"], result["max"]
    assert set(low["v"]) == {0.0} and set(high["v"]) == {59.0} and set(avg["v"]) == {29.5}
    assert avg["w"] == [float(m) for m in range(59, 180)] == low["w"] == high["w"]


def test_open_bucket_is_readable_while_partial() -> None:
    history = MetricsHistory(full_s=60)
    for i in range(70):
        history.add({"ts": T0 + i, "v": float(i)})
    result = history.query(3600)
    assert result["ts"] == [T0, T0 + 60]
    assert result["min"]["v"] == [0.0, 60.0]
    assert result["series"]["v"] == [29.5, 64.5]
    assert result["max"]["v"] == [59.0, 69.0]


def test_bucket_ring_is_bounded_by_downsampled_s() -> None:
    history = MetricsHistory(full_s=60, bucket_s=60, downsampled_s=3600)
    for i in range(0, 30 * 3600, 10):  # 30 simulated hours, a sample every 10 s
        history.add({"ts": T0 + i, "v": 1.0})
    result = history.query(86400)
    assert len(result["ts"]) == 3600 // 60 + 1  # closed buckets plus the open one
    assert result["ts"][-1] == T0 + 30 * 3600 - 60
    assert result["ts"] == sorted(result["ts"])


def test_max_series_caps_names_and_counts_the_dropped() -> None:
    history = MetricsHistory(max_series=5)
    for i in range(10):
        history.add({"ts": T0 + i, "m": {f"s{n}": 1.0 for n in range(8)}})
    assert history.series_names() == [f"m.s{n}" for n in range(5)]
    assert history.dropped_series == 3  # counted once per name, not per sample
    assert len(history.query(60)["series"]) == 5


def test_vanished_series_is_forgotten_and_frees_its_slot() -> None:
    history = MetricsHistory(full_s=60, downsampled_s=600, max_series=2)
    history.add({"ts": T0, "veth1": 1.0, "cpu": 1.0})
    for i in range(1, 700):
        history.add({"ts": T0 + i, "cpu": 1.0, "veth2": 2.0})
    assert history.dropped_series == 1
    assert history.series_names() == ["cpu", "veth2"]


def test_clock_stepping_back_starts_over() -> None:
    history = filled(MetricsHistory(), 100)
    history.add(payload(T0 - 3600))
    assert history.query(900)["ts"] == [T0 - 3600]


def test_settings_that_cannot_work_are_refused() -> None:
    with pytest.raises(ValueError, match="bucket_s"):
        MetricsHistory(full_s=30, bucket_s=60)
    with pytest.raises(ValueError, match="interval_s must be a positive"):
        MetricsHistory(interval_s=0)
    with pytest.raises(ValueError, match="window_s"):
        MetricsHistory().query(0)


def test_empty_history_answers_with_empty_columns() -> None:
    history = MetricsHistory()
    empty: dict[str, Any] = {"ts": [], "series": {}, "min": {}, "max": {}}
    assert history.query(300) == {"resolution_s": 1.0, "is_bucketed": False, **empty}
    assert history.query(3600) == {"resolution_s": 60, "is_bucketed": True, **empty}
    with pytest.raises(ValueError, match="ts"):
        history.add({"cpu": {"percent": 1.0}})


def test_stored_values_stay_bounded_over_many_samples() -> None:
    history = MetricsHistory(full_s=900, bucket_s=60, downsampled_s=3600)
    filled(history, 2000)
    series = len(history.series_names())
    bound = (series + 1) * 900 + (3 * series + 1) * 60 + 4 * series
    after_warmup = history.stored_values()
    filled(history, 20_000, start=T0 + 2000)  # 22 times the full ring, 5 hours of buckets
    assert history.stored_values() == after_warmup <= bound
    assert len(history.series_names()) == series


async def test_api_history_serves_chart_columns(aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(
        create_app(Config(port=0, metrics=MetricsConfig(interval_s=0.05)))
    )
    await wait_until(lambda: len(client.app[HISTORY].query(60)["ts"]) >= 5)
    resp = await client.get("/api/history?window=5m&keys=cpu.percent,memory.percent,nope")
    assert resp.status == 200
    data = await resp.json()
    assert data["resolution_s"] == 0.05
    assert set(data["series"]) == {"cpu.percent", "memory.percent"}
    assert len(data["series"]["cpu.percent"]) == len(data["ts"]) >= 5
    assert data["ts"] == sorted(data["ts"])
    assert data["is_bucketed"] is False and data["min"] == data["max"] == {}
    day = await (await client.get("/api/history?window=24h&keys=memory.percent")).json()
    assert day["is_bucketed"] is True
    for stats in ("min", "series", "max"):
        assert len(day[stats]["memory.percent"]) == len(day["ts"])


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("?window=abc", "window: expected a duration"),
        ("?window=48h", "at most 24h"),
        ("?win=5m", "unknown query parameter"),
    ],
)
async def test_api_history_rejects_bad_queries(
    aiohttp_client: AiohttpClient, query: str, message: str
) -> None:
    client = await aiohttp_client(create_app(Config(port=0)))
    resp = await client.get(f"/api/history{query}")
    assert resp.status == 400
    assert message in (await resp.json())["error"]


async def test_concurrent_requests_share_one_build_of_a_body(
    aiohttp_client: AiohttpClient, config: Config
) -> None:
    client = await aiohttp_client(create_app(config, sources=[]))
    for path in ("/api/state", "/api/history?window=24h"):
        resps = await asyncio.gather(*(client.get(path) for _ in range(20)))
        bodies = {await r.read() for r in resps}
        assert [r.status for r in resps] == [200] * 20 and len(bodies) == 1
    metrics = await (await client.get("/metrics")).text()
    # Nothing was published meanwhile: one build of each, every other request shared it.
    assert "\nsse_monitor_shared_body_builds_total 2.0\n" in metrics
