"""Alert rules: parsing [[alerts]], and the engine driven by real events through a real hub."""

from __future__ import annotations

import re
import time
import tomllib
from typing import Any

import pytest
from helpers import StreamReader, wait_until
from pytest_aiohttp import AiohttpClient

from monitor.alerts.engine import AlertEngine
from monitor.alerts.rules import LogRule, MetricRule, parse_rules
from monitor.config import Config, ConfigError, MetricsConfig
from monitor.http.app import create_app
from monitor.http.keys import HUB
from monitor.hub.events import ALERT, LOG, METRICS, STATUS
from monitor.hub.interface import Selector
from monitor.hub.memory import MemoryHub
from monitor.hub.sse import SSEParser
from monitor.metrics.paths import lookup

SOURCES = ("app", "db")


class Clock:
    """The time log events are seen at; tests set it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Rig:
    """A hub, an engine fed by it as the server's task would feed it (here, at once), and
    every alert event published through the hub."""

    def __init__(self, toml: str) -> None:
        self.hub = MemoryHub()
        self.clock = Clock()
        self.engine = AlertEngine(
            self.hub, parse_rules(tomllib.loads(toml)["alerts"], SOURCES), clock=self.clock
        )
        self._engine_feed = self.hub.feed(frozenset({METRICS, LOG, ALERT}))
        self._alert_feed = self.hub.feed(frozenset({ALERT}))
        self.alerts: list[dict[str, Any]] = []
        self.statuses: list[dict[str, Any]] = []
        self._status_feed = self.hub.feed(frozenset({STATUS}))

    def publish(self, event_type: str, payload: dict[str, Any], source: str | None = None) -> None:
        """Publish, then let the engine handle every event it was fed (its own alerts too)."""
        self.hub.publish(event_type, payload, source)
        while events := self._engine_feed.drain():
            for event in events:
                self.engine.handle(event)
        self.alerts += [e.payload for e in self._alert_feed.drain()]
        self.statuses += [e.payload for e in self._status_feed.drain()]

    def metrics(self, ts: float, **values: Any) -> None:
        """Publish a metrics payload at `ts`; `cpu=93` becomes {"cpu": {"percent": 93}}."""
        payload: dict[str, Any] = {"ts": ts}
        for group, value in values.items():
            payload[group] = value if isinstance(value, dict | list) else {"percent": value}
        self.publish(METRICS, payload)

    def log(self, at: float, *lines: str, source: str = "app") -> None:
        self.clock.now = at
        payload = {"source": source, "file": f"/var/log/{source}.log", "lines": list(lines)}
        self.publish(LOG, payload, source=source)

    def firing(self) -> list[dict[str, Any]]:
        """The alerts firing now, as every new client learns them from the hub."""
        return [a for a in self.hub.latest(ALERT).values() if a["state"] == "firing"]

    def states(self) -> list[tuple[str, str]]:
        return [(a["rule"], a["state"]) for a in self.alerts]


CPU_HIGH = """
[[alerts]]
name = "cpu-high"
metric = "cpu.percent > 90 for 30s"
resolve = 80
severity = "critical"
"""


def test_metric_rule_fires_once_after_holding_for_then_resolves_with_hysteresis() -> None:
    rig = Rig(CPU_HIGH)
    rig.metrics(100, cpu=93.2)
    rig.metrics(115, cpu=95)
    assert rig.alerts == []  # held 15 s of 30
    rig.metrics(130, cpu=93.2)
    assert rig.alerts == [
        {
            "rule": "cpu-high",
            "severity": "critical",
            "state": "firing",
            "message": "cpu.percent is 93.2 > 90 for 30s",
            "value": 93.2,
            "since": 100,
            "kind": "metric",
        }
    ]
    assert rig.firing() == rig.alerts
    for ts, value in [(140, 99), (150, 85), (160, 80)]:  # 85, 80: not below resolve = 80
        rig.metrics(ts, cpu=value)
    assert rig.states() == [("cpu-high", "firing")]
    rig.metrics(170, cpu=79.9)
    assert rig.alerts[-1]["state"] == "resolved"
    assert rig.alerts[-1]["since"] == 170 and rig.alerts[-1]["value"] == 79.9
    assert rig.alerts[-1]["message"] == "cpu.percent is 79.9 < 80: resolved"
    assert rig.firing() == []
    for ts in (200, 215, 230):
        rig.metrics(ts, cpu=91)
    assert rig.states() == [("cpu-high", s) for s in ("firing", "resolved", "firing")]
    assert rig.alerts[-1]["since"] == 200


def test_a_dip_during_for_restarts_the_pending_timer() -> None:
    rig = Rig(CPU_HIGH)
    rig.metrics(100, cpu=95)
    rig.metrics(120, cpu=85)  # below the threshold: the hold is broken
    rig.metrics(125, cpu=95)
    rig.metrics(150, cpu=95)  # 50 s since the first breach, 25 s since the current one
    assert rig.alerts == []
    rig.metrics(155, cpu=95)
    assert rig.states() == [("cpu-high", "firing")]
    assert rig.alerts[0]["since"] == 125


def test_below_rule_fires_and_resolves_symmetrically() -> None:
    rig = Rig("""
[[alerts]]
name = "mem-low"
metric = "memory.available < 500000000"
resolve = 800000000
""")
    mem = {"percent": 90, "available": 400_000_000}
    rig.metrics(1, memory=mem)
    assert rig.alerts[0]["message"] == "memory.available is 400000000 < 500000000"
    assert rig.alerts[0]["severity"] == "warning"
    rig.metrics(2, memory={**mem, "available": 700_000_000})  # between threshold and resolve
    rig.metrics(3, memory={**mem, "available": 800_000_000})  # not strictly above resolve
    assert rig.states() == [("mem-low", "firing")]
    rig.metrics(4, memory={**mem, "available": 900_000_000})
    assert rig.states() == [("mem-low", "firing"), ("mem-low", "resolved")]
    assert rig.alerts[-1]["message"] == "memory.available is 900000000 > 800000000: resolved"


def test_missing_or_none_metric_neither_fires_nor_resolves() -> None:
    rig = Rig(CPU_HIGH.replace(" for 30s", ""))
    rig.metrics(1, memory=50)
    rig.metrics(2, cpu={"percent": None})
    assert rig.alerts == []
    rig.metrics(3, cpu=95)
    rig.metrics(4, memory=50)
    rig.metrics(5, cpu={"percent": None})
    rig.metrics(6, cpu={"percent": "n/a"})
    assert rig.states() == [("cpu-high", "firing")]


def test_disk_rule_matches_the_mount_in_the_disks_list() -> None:
    rig = Rig("""
[[alerts]]
name = "root-full"
metric = "disks./.percent >= 95"
""")
    rig.metrics(1, disks=[{"mount": "/", "percent": 50}, {"mount": "/srv", "percent": 99}])
    assert rig.alerts == []
    rig.metrics(2, disks=[{"mount": "/srv", "percent": 99}, {"mount": "/", "percent": 95}])
    assert rig.alerts[0]["message"] == "disks./.percent is 95 >= 95"


def test_lookup_walks_nested_keys_including_keys_with_dots() -> None:
    payload = {
        "load": {"1m": 0.5},
        "net": {"interfaces": {"eth0.100": {"rx_bytes_per_s": 12.5}}},
        "disks": [{"mount": "/var/lib.d", "percent": 7}],
        "cpu": {"per_core": [10.0, 90.0]},
    }
    assert lookup(payload, "load.1m") == 0.5
    assert lookup(payload, "cpu.per_core.1") == 90.0  # as the charts and history name it
    assert lookup(payload, "cpu.per_core.2") is None
    assert lookup(payload, "cpu.per_core") is None
    assert lookup(payload, "net.interfaces.eth0.100.rx_bytes_per_s") == 12.5
    assert lookup(payload, "disks./var/lib.d.percent") == 7
    assert lookup(payload, "disks./.percent") is None
    assert lookup(payload, "net.interfaces") is None
    assert lookup(payload, "cpu.percent") is None


APP_ERRORS = """
[[alerts]]
name = "app-errors"
source = "app"
pattern = "ERROR|FATAL"
count = 3
window = "60s"
severity = "critical"
"""


def test_log_rule_with_count_1_fires_on_a_matching_line_of_its_source_only() -> None:
    rig = Rig("""
[[alerts]]
name = "db-fatal"
source = "db"
pattern = "FATAL"
""")
    rig.log(10, "FATAL: disk gone", source="app")
    rig.log(11, "all fine", source="db")
    assert rig.alerts == []
    rig.log(12, "ok", "FATAL: out of memory", source="db")
    assert rig.alerts == [
        {
            "rule": "db-fatal",
            "severity": "warning",
            "state": "firing",
            "message": "1 line matching /FATAL/ in db within 60s",
            "value": 1,
            "since": 12,
            "kind": "log",
        }
    ]


def test_log_rule_fires_on_the_third_match_within_the_window() -> None:
    rig = Rig(APP_ERRORS)
    rig.log(1000, "ERROR a")
    rig.log(1030, "INFO fine", "FATAL b")
    assert rig.alerts == []
    rig.log(1059, "ERROR c")
    assert rig.states() == [("app-errors", "firing")]
    assert rig.alerts[0]["value"] == 3 and rig.alerts[0]["since"] == 1000
    rig.log(1060, "ERROR d")  # still firing: no repeat
    assert len(rig.alerts) == 1


def test_log_rule_does_not_fire_for_matches_spread_wider_than_the_window() -> None:
    rig = Rig(APP_ERRORS)
    for at in (1000, 1061, 1122, 1183):
        rig.log(at, "ERROR again")
    assert rig.alerts == []


def test_log_rule_resolves_when_the_window_empties_on_a_metrics_tick() -> None:
    rig = Rig(APP_ERRORS)
    rig.log(1000, "ERROR a", "ERROR b", "ERROR c", "ERROR d")
    assert rig.alerts[0]["value"] == 4
    assert rig.alerts[0]["message"] == "4 lines matching /ERROR|FATAL/ in app within 60s"
    rig.log(1030, "ERROR e")
    rig.metrics(1089, cpu=5)  # the last match is 59 s old: still in the window
    assert rig.states() == [("app-errors", "firing")]
    rig.metrics(1091, cpu=5)
    assert rig.states() == [("app-errors", "firing"), ("app-errors", "resolved")]
    assert rig.alerts[-1]["since"] == 1090 and rig.alerts[-1]["value"] == 0
    assert rig.firing() == []


def test_log_rule_keeps_at_most_count_timestamps() -> None:
    rig = Rig(APP_ERRORS)
    rig.log(1000, *["ERROR"] * 2000)
    rule_states = rig.engine._log
    assert [len(state.times) for _, state in rule_states] == [3]


def test_backlog_lines_do_not_fire() -> None:
    rig = Rig(APP_ERRORS.replace("count = 3", "count = 1"))
    payload = {"source": "app", "file": "/var/log/app.log", "lines": ["ERROR"], "backlog": True}
    rig.publish(LOG, payload, source="app")
    assert rig.alerts == []


def test_firing_alert_is_sticky_in_the_hub_and_in_a_new_clients_snapshot() -> None:
    rig = Rig(CPU_HIGH.replace(" for 30s", ""))
    rig.metrics(1, cpu=99)
    for ts in range(2, 400):  # enough metrics to push the alert out of recent history
        rig.metrics(ts, cpu=85)
    assert rig.hub.latest(ALERT)["cpu-high"]["state"] == "firing"
    events = SSEParser().feed(b"".join(f.data for f in rig.hub.snapshot(Selector(), {})))
    alerts = [e.json() for e in events if e.type == ALERT]
    assert alerts == [rig.alerts[0]]
    assert len(rig.alerts) == 1  # the engine ignored its own alert event


def test_good_config_parses_to_frozen_rules() -> None:
    rules = parse_rules(tomllib.loads(CPU_HIGH + APP_ERRORS)["alerts"], SOURCES)
    assert rules == (
        MetricRule("cpu-high", "cpu.percent", ">", 90.0, 30.0, 80.0, "critical"),
        LogRule("app-errors", "app", re.compile("ERROR|FATAL"), 3, 60.0, "critical"),
    )
    with pytest.raises(AttributeError):
        rules[0].threshold = 1  # type: ignore[misc]
    durations = [("5m", 300), ("1h", 3600), ("45", 45), ("1.5s", 1.5)]
    for text, seconds in durations:
        (rule,) = parse_rules([{"name": "x", "metric": f"load.1m>=2 for {text}"}], ())
        assert isinstance(rule, MetricRule) and rule.for_s == seconds and rule.resolve == 2
    (rule,) = parse_rules([{"name": "y", "source": "db", "pattern": "x", "window": 90}], SOURCES)
    assert isinstance(rule, LogRule) and rule.window_s == 90 and rule.count == 1


def rule(**keys: Any) -> dict[str, Any]:
    return {"name": "cpu-high", "metric": "cpu.percent > 90", **keys}


def log_rule(**keys: Any) -> dict[str, Any]:
    return {"name": "app-errors", "source": "app", "pattern": "ERROR", **keys}


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        (rule(metric="cpu.percent >> 90"), 'metric: expected "<metric> <op> <number> [for'),
        (rule(metric="cpu.percent > 90 for ever"), 'metric: "for ever": expected a duration'),
        (rule(metric="cpu..percent > 9"), 'metric: "cpu..percent" is not a dotted path'),
        (rule(metric="disks./ > 9"), "metric: expected disks.<mount>.<key>"),
        (rule(resolve=95), "resolve: 95 is on the wrong side of the threshold; for > 90"),
        (rule(metric="cpu.percent < 10", resolve=5), "must be at least 10"),
        (rule(resolve="80"), "resolve: must be a number, got '80'"),
        (rule(severity="page"), "severity: must be one of info, warning, critical, got 'page'"),
        (rule(count=3), "count: unknown key (known: name, metric, resolve, severity)"),
        (rule(pattern="x"), "has both metric and pattern"),
        (log_rule(resolve=3), "resolve: unknown key (known: name, source, pattern, count, wi"),
        (log_rule(pattern="ERROR("), "pattern: invalid regex 'ERROR(': missing ), unterminated"),
        (log_rule(source="web"), "source: unknown log source 'web' (known: app, db)"),
        (log_rule(count=0), "count: must be an integer from 1 to 100000, got 0"),
        (log_rule(count=True), "count: must be an integer"),
        (log_rule(window="0s"), "window: must be longer than 0s"),
        (log_rule(window="1 week"), "window: expected a duration"),
        ({"name": "cpu-high", "severity": "info"}, "needs metric"),
    ],
)
def test_bad_rule_names_the_rule_and_the_problem(table: dict[str, Any], problem: str) -> None:
    good = {"name": "fine", "metric": "cpu.percent > 1"}
    with pytest.raises(ConfigError) as caught:
        parse_rules([good, table], SOURCES)
    message = str(caught.value)
    assert message.startswith(f"alerts[1] {table['name']!r}: "), message
    assert problem in message, message
    assert "\n" not in message


def test_rule_problems_without_a_usable_name_or_list() -> None:
    with pytest.raises(ConfigError, match=r"^alerts\[0\]: name: must be a non-empty string"):
        parse_rules([{"metric": "cpu.percent > 1"}], ())
    with pytest.raises(ConfigError, match=r"^alerts\[1\] 'a': name: already used by alerts\[0\]"):
        parse_rules([{"name": "a", "metric": "cpu.percent > 1"}, log_rule(name="a")], SOURCES)
    with pytest.raises(ConfigError, match=r"^alerts: must be an array of tables"):
        parse_rules({"name": "a"}, ())
    with pytest.raises(ConfigError, match=r"known: none are configured; add one under \[logs\]"):
        parse_rules([log_rule()], ())


async def test_configured_rule_fires_through_the_server_and_reaches_new_clients(
    aiohttp_client: AiohttpClient,
) -> None:
    # cpu.percent >= 0 holds on every sample: the real sampler fires it at once.
    rule = {"name": "always", "metric": "cpu.percent >= 0", "severity": "info"}
    config = Config(port=0, metrics=MetricsConfig(interval_s=0.05), alerts=parse_rules([rule], ()))
    client = await aiohttp_client(create_app(config))
    await wait_until(lambda: "always" in client.app[HUB].latest(ALERT))
    async with client.get("/events?types=alert") as resp:
        alert = (await StreamReader(resp).until("alert"))[-1].json()
    assert alert["rule"] == "always" and alert["state"] == "firing"
    assert alert["severity"] == "info" and alert["kind"] == "metric"
    assert {"message", "value", "since"} <= alert.keys()


def test_a_rule_on_a_metric_that_never_appears_is_reported_by_name(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rig = Rig(CPU_HIGH.replace("cpu.percent", "cpu.pcent") + CPU_HIGH.replace("-high", "-ok"))
    for ts in (1, 2):
        rig.metrics(ts, cpu=50)
    assert rig.statuses == []  # two samples are not yet enough to tell
    rig.metrics(3, cpu=50)
    (status,) = rig.statuses
    assert status["source"] == "alerts" and status["state"] == "error"
    assert "rule 'cpu-high': metric cpu.pcent is in none of the first 3 samples" in status["detail"]
    assert "did you mean cpu.percent?" in status["detail"]
    assert "cpu-ok" not in status["detail"]
    assert "cpu.pcent" in caplog.text
    for ts in range(4, 10):
        rig.metrics(ts, cpu=50)
    assert len(rig.statuses) == 1  # said once


def test_rules_whose_metrics_all_appear_publish_no_status() -> None:
    rig = Rig(CPU_HIGH)
    for ts in range(1, 6):
        rig.metrics(ts, cpu=50)
    assert rig.statuses == []


async def test_a_typo_in_a_rule_reaches_the_dashboard_stream(aiohttp_client: AiohttpClient) -> None:
    rule = {"name": "typo", "metric": "memory.precent > 90"}
    config = Config(port=0, metrics=MetricsConfig(interval_s=0.05), alerts=parse_rules([rule], ()))
    client = await aiohttp_client(create_app(config))
    await wait_until(lambda: "alerts" in client.app[HUB].latest(STATUS))
    async with client.get("/events?types=status") as resp:
        stream, status = StreamReader(resp), dict[str, Any]()
        while status.get("source") != "alerts":  # in the new client's state
            status = (await stream.until("status"))[-1].json()
    assert "memory.precent" in status["detail"] and "memory.percent" in status["detail"]


TIMEOUTS = """
[[alerts]]
name = "timeouts"
source = "app"
pattern = "ERROR.*timeout"
"""


def test_a_costly_pattern_on_hostile_lines_is_bounded() -> None:
    rig = Rig(TIMEOUTS)
    hostile = ("ERROR " * 11_000)[:65_536]  # a match attempt at every ERROR, none succeeds
    started = time.process_time()
    rig.log(1000, *[hostile] * 5)
    # Unbounded, this took 3.4 s of the event loop; bounded it is milliseconds.
    assert time.process_time() - started < 0.5
    assert rig.alerts == []


def test_a_pattern_sees_the_start_of_a_line_and_a_budget_of_each_event() -> None:
    rig = Rig(TIMEOUTS)
    late = "x" * 3000 + " ERROR timeout"  # past the 2,048 characters a pattern sees
    rig.log(1000, late)
    assert rig.alerts == []
    long_lines = ["y" * 4096] * 300  # 2,048 searched of each, 256 KiB per event: 128 lines
    rig.log(1001, *long_lines, "ERROR timeout")
    assert rig.engine.lines_skipped == 300 + 1 - 128
    rig.log(1002, "ERROR timeout")
    assert rig.states() == [("timeouts", "firing")]
