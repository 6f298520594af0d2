"""Alert rules: parsed and checked from the config's [[alerts]] tables. Evaluation is
monitor.alerts.engine's; metric paths are monitor.metrics.paths'."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from monitor.duration import parse_duration
from monitor.values import ConfigError, named_tables, require_text

SEVERITIES = ("info", "warning", "critical")
# The fleet's own rule: a host that stops sending (fleet/leader.py); [[notify]] may name it.
HOST_DOWN = "host down"
OPS: dict[str, Callable[[float, float], bool]] = {
    ">": lambda v, t: v > t,
    ">=": lambda v, t: v >= t,
    "<": lambda v, t: v < t,
    "<=": lambda v, t: v <= t,
}
METRIC_KEYS = ("name", "metric", "resolve", "severity")
LOG_KEYS = ("name", "source", "pattern", "count", "window", "severity")
METRIC_FORMAT = '"<metric> <op> <number> [for <duration>]"'
# The path stops at the first space or operator character, so "cpu.percent>90" parses too.
METRIC_RE = re.compile(
    r"\s*(?P<path>[^\s<>=]+)\s*(?P<op>>=|<=|>|<)\s*(?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?)"
    r"(?:\s+for\s+(?P<duration>.+?))?\s*",
    re.IGNORECASE,
)
DEFAULT_WINDOW_S = 60.0
# A log rule keeps `count` timestamps; the cap keeps that memory small whatever the config says.
MAX_COUNT = 100_000


@dataclass(frozen=True, slots=True)
class MetricRule:
    """Fires when `metric <op> threshold` holds for `for_s`; resolves past `resolve`."""

    name: str
    metric: str
    op: str
    threshold: float
    for_s: float
    resolve: float
    severity: str = "warning"


@dataclass(frozen=True, slots=True)
class LogRule:
    """Fires when `count` lines of `source` match `pattern` within `window_s`."""

    name: str
    source: str
    pattern: re.Pattern[str]
    count: int = 1
    window_s: float = DEFAULT_WINDOW_S
    severity: str = "warning"


Rule = MetricRule | LogRule


def parse_rules(raw: Any, log_sources: Collection[str]) -> tuple[Rule, ...]:
    """Check the TOML `alerts` array and build its rules; any problem is a ConfigError."""
    return named_tables("alerts", raw, lambda table: _parse_rule(table, log_sources))


def _parse_rule(table: dict[str, Any], log_sources: Collection[str]) -> Rule:
    if "metric" in table and "pattern" in table:
        raise ConfigError("has both metric and pattern: a rule watches one; split it in two")
    if "metric" not in table and "pattern" not in table:
        raise ConfigError('needs metric = "..." (a metric rule) or pattern = "..." (a log rule)')
    keys = METRIC_KEYS if "metric" in table else LOG_KEYS
    for key in table:
        if key not in keys:
            raise ConfigError(f"{key}: unknown key (known: {', '.join(keys)})")
    name = require_text("name", table.get("name"))
    severity = table.get("severity", "warning")
    if severity not in SEVERITIES:
        raise ConfigError(f"severity: must be one of {', '.join(SEVERITIES)}, got {severity!r}")
    if "metric" in table:
        return _metric_rule(name, severity, table)
    return _log_rule(name, severity, table, log_sources)


def _metric_rule(name: str, severity: str, table: dict[str, Any]) -> MetricRule:
    text = table["metric"]
    match = METRIC_RE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        ops = ", ".join(OPS)
        raise ConfigError(f'metric: expected {METRIC_FORMAT} (op: {ops}), got "{text}"')
    path, op = match["path"], match["op"]
    _check_path(path)
    threshold = float(match["number"])
    if not math.isfinite(threshold):
        raise ConfigError(f"metric: threshold {match['number']} is not a finite number")
    duration = match["duration"]
    for_s = _duration(f'metric: "for {duration}"', duration, allow_zero=True) if duration else 0.0
    resolve = table.get("resolve", threshold)
    if (
        isinstance(resolve, bool)
        or not isinstance(resolve, int | float)
        or not math.isfinite(resolve)
    ):
        raise ConfigError(f"resolve: must be a number, got {resolve!r}")
    if (op in (">", ">=") and resolve > threshold) or (op in ("<", "<=") and resolve < threshold):
        bound = f"{'at most' if op.startswith('>') else 'at least'} {match['number']}"
        raise ConfigError(
            f"resolve: {resolve!r} is on the wrong side of the threshold; "
            f"for {op} {match['number']} it must be {bound}"
        )
    return MetricRule(name, path, op, threshold, for_s, float(resolve), severity)


def _check_path(path: str) -> None:
    if path.startswith("disks."):
        mount, sep, key = path.removeprefix("disks.").rpartition(".")
        if not sep or not mount or not key:
            raise ConfigError(
                f'metric: expected disks.<mount>.<key> such as "disks./.percent", got "{path}"'
            )
    elif "" in path.split("."):
        raise ConfigError(f'metric: "{path}" is not a dotted path such as "cpu.percent"')


def _log_rule(
    name: str, severity: str, table: dict[str, Any], log_sources: Collection[str]
) -> LogRule:
    source = require_text("source", table.get("source"))
    if source not in log_sources:
        known = ", ".join(sorted(log_sources)) or "none are configured; add one under [logs]"
        raise ConfigError(f"source: unknown log source {source!r} (known: {known})")
    text = require_text("pattern", table.get("pattern"))
    try:
        pattern = re.compile(text)
    except re.error as exc:
        raise ConfigError(f"pattern: invalid regex {text!r}: {exc}") from None
    count = table.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
        raise ConfigError(f"count: must be an integer from 1 to {MAX_COUNT}, got {count!r}")
    window_s = _duration("window", table.get("window", DEFAULT_WINDOW_S), allow_zero=False)
    return LogRule(name, source, pattern, count, window_s, severity)


def _duration(key: str, value: Any, *, allow_zero: bool) -> float:
    try:
        return parse_duration(value, allow_zero=allow_zero)
    except ValueError as exc:
        raise ConfigError(f"{key}: {exc}") from None
