"""Alert rules: parsed and checked from the config's [[alerts]] tables, and the metric-path
lookup they use. Evaluation is monitor.alerts.engine'."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from monitor.config import ConfigError

SEVERITIES = ("info", "warning", "critical")
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
DURATION_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([smh]?)")
UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600}
MAX_DURATION_S = 86400.0
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
    if not isinstance(raw, list | tuple) or not all(isinstance(t, dict) for t in raw):
        raise ConfigError("alerts: must be an array of tables ([[alerts]] ...)")
    rules: list[Rule] = []
    seen: dict[str, int] = {}
    for i, table in enumerate(raw):
        name = table.get("name")
        where = (
            f"alerts[{i}] {name!r}" if isinstance(name, str) and name.strip() else f"alerts[{i}]"
        )
        try:
            rule = _parse_rule(table, log_sources)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        if rule.name in seen:
            raise ConfigError(
                f"{where}: name: already used by alerts[{seen[rule.name]}]; names must be unique"
            )
        seen[rule.name] = i
        rules.append(rule)
    return tuple(rules)


def _parse_rule(table: dict[str, Any], log_sources: Collection[str]) -> Rule:
    if "metric" in table and "pattern" in table:
        raise ConfigError("has both metric and pattern: a rule watches one; split it in two")
    if "metric" not in table and "pattern" not in table:
        raise ConfigError('needs metric = "..." (a metric rule) or pattern = "..." (a log rule)')
    keys = METRIC_KEYS if "metric" in table else LOG_KEYS
    for key in table:
        if key not in keys:
            raise ConfigError(f"{key}: unknown key (known: {', '.join(keys)})")
    name = _text("name", table.get("name"))
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
    source = _text("source", table.get("source"))
    if source not in log_sources:
        known = ", ".join(sorted(log_sources)) or "none are configured; add one under [logs]"
        raise ConfigError(f"source: unknown log source {source!r} (known: {known})")
    text = _text("pattern", table.get("pattern"))
    try:
        pattern = re.compile(text)
    except re.error as exc:
        raise ConfigError(f"pattern: invalid regex {text!r}: {exc}") from None
    count = table.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
        raise ConfigError(f"count: must be an integer from 1 to {MAX_COUNT}, got {count!r}")
    window_s = _duration("window", table.get("window", DEFAULT_WINDOW_S), allow_zero=False)
    return LogRule(name, source, pattern, count, window_s, severity)


def _text(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key}: must be a non-empty string, got {value!r}")
    return value.strip()


def _duration(key: str, value: Any, *, allow_zero: bool) -> float:
    """Seconds from "30s", "5m", "1h", "90" or a plain number."""
    seconds: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (match := DURATION_RE.fullmatch(value.strip())):
        seconds = float(match[1]) * UNIT_S[match[2]]
    lo = 0.0 if allow_zero else 0.001
    if seconds is None or not lo <= seconds <= MAX_DURATION_S:
        raise ConfigError(
            f'{key}: expected a duration such as "30s", "5m", "1h" or plain seconds '
            f"({'up to' if allow_zero else 'more than 0, up to'} 24h), got {value!r}"
        )
    return seconds


def lookup(payload: Mapping[str, Any], path: str) -> float | None:
    """The number at a dotted metric path in a metrics payload; None if absent or not a number.

    `disks.<mount>.<key>` picks the entry of the `disks` list whose mount matches (mounts hold
    slashes and dots, so the key is the last segment and the mount is everything between).
    Other lists are indexed by number, as the charts name them (`cpu.per_core.0`).
    """
    if path.startswith("disks.") and isinstance(payload.get("disks"), list):
        mount, _, key = path.removeprefix("disks.").rpartition(".")
        for disk in payload["disks"]:
            if isinstance(disk, Mapping) and disk.get("mount") == mount:
                return as_number(disk.get(key))
        return None
    node: Any = payload
    rest = path
    while rest:
        if isinstance(node, list):
            index, _, rest = rest.partition(".")
            if not index.isdigit() or int(index) >= len(node):
                return None
            node = node[int(index)]
        elif isinstance(node, Mapping):
            if rest in node:
                return as_number(node[rest])
            # Longest key first: keys such as interface names ("eth0.100") may hold dots.
            dots = [i for i, c in enumerate(rest) if c == "."]
            head = next((rest[:i] for i in reversed(dots) if rest[:i] in node), None)
            if head is None:
                return None
            node, rest = node[head], rest[len(head) + 1 :]
        else:
            return None
    return as_number(node)


def as_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return value
