"""Alert rules over metrics and log lines: parsed from [[alerts]], evaluated as events pass the hub.

The engine is a hub observer. It publishes an `alert` event on each transition (firing ->
resolved and back), never while a state holds; the hub keeps the latest one per rule sticky.
"""

from __future__ import annotations

import math
import re
import time
from collections import deque
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from monitor.config import ConfigError
from monitor.events import ALERT, LOG, METRICS
from monitor.hub import EventHub

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
    """
    if path.startswith("disks.") and isinstance(payload.get("disks"), list):
        mount, _, key = path.removeprefix("disks.").rpartition(".")
        for disk in payload["disks"]:
            if isinstance(disk, Mapping) and disk.get("mount") == mount:
                return _number(disk.get(key))
        return None
    node: Any = payload
    rest = path
    while isinstance(node, Mapping):
        if rest in node:
            return _number(node[rest])
        # Longest key first: keys such as interface names ("eth0.100") may hold dots.
        dots = [i for i, c in enumerate(rest) if c == "."]
        head = next((rest[:i] for i in reversed(dots) if rest[:i] in node), None)
        if head is None:
            return None
        node, rest = node[head], rest[len(head) + 1 :]
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return value


@dataclass(slots=True)
class _MetricState:
    pending_since: float | None = None  # when the condition began to hold, if it does
    is_firing: bool = False


@dataclass(slots=True)
class _LogState:
    times: deque[float]  # the last `count` matching lines' times: enough to decide
    is_firing: bool = False


class AlertEngine:
    """Evaluates rules on every metrics and log event; publishes `alert` on transitions.

    Metric rules run on the metrics payload's `ts`. Log events carry no time, so log rules use
    `clock`. A firing log rule resolves once its window holds no matching line; with no new
    lines that is noticed on the next metrics event (the engine's tick) or log event.
    """

    def __init__(
        self, hub: EventHub, rules: Sequence[Rule], *, clock: Callable[[], float] = time.time
    ) -> None:
        self.hub = hub
        self.clock = clock
        self._metric = [(r, _MetricState()) for r in rules if isinstance(r, MetricRule)]
        self._log = [(r, _LogState(deque(maxlen=r.count))) for r in rules if isinstance(r, LogRule)]
        self._active: dict[str, dict[str, Any]] = {}  # rule name -> firing payload

    def active(self) -> list[dict[str, Any]]:
        """The payloads of the alerts firing now, in the order they fired."""
        return list(self._active.values())

    def observe(self, event_type: str, payload: dict[str, Any], source: str | None) -> None:
        """Hub observer: `hub.add_observer(engine.observe)`. Ignores `alert` (its own) events."""
        if event_type == METRICS:
            ts = _number(payload.get("ts"))
            now = self.clock() if ts is None else ts
            for metric_rule, metric_state in self._metric:
                self._check_metric(
                    metric_rule, metric_state, lookup(payload, metric_rule.metric), now
                )
            self._expire_logs(now)
        # Start-up backlog lines were written before we started: old news, not alerts.
        elif event_type == LOG and not payload.get("backlog"):
            now = self.clock()
            self._expire_logs(now)
            lines = payload.get("lines")
            name = source or payload.get("source")
            if isinstance(lines, list):
                for rule, state in self._log:
                    if rule.source == name:
                        self._check_log(rule, state, lines, now)

    def _check_metric(
        self, rule: MetricRule, state: _MetricState, value: float | None, now: float
    ) -> None:
        if value is None:
            return  # no data: neither fires nor resolves, and a pending timer keeps running
        if not state.is_firing:
            if not OPS[rule.op](value, rule.threshold):
                state.pending_since = None
                return
            if state.pending_since is None:
                state.pending_since = now
            if now - state.pending_since >= rule.for_s:
                state.is_firing = True
                held = f" for {_fmt(rule.for_s)}s" if rule.for_s else ""
                message = f"{rule.metric} is {_fmt(value)} {rule.op} {_fmt(rule.threshold)}{held}"
                self._publish(rule, "metric", "firing", value, state.pending_since, message)
            return
        is_above_rule = rule.op.startswith(">")
        if (value < rule.resolve) if is_above_rule else (value > rule.resolve):
            state.is_firing, state.pending_since = False, None
            back = f"{'<' if is_above_rule else '>'} {_fmt(rule.resolve)}"
            message = f"{rule.metric} is {_fmt(value)} {back}: resolved"
            self._publish(rule, "metric", "resolved", value, now, message)

    def _check_log(self, rule: LogRule, state: _LogState, lines: list[Any], now: float) -> None:
        matched = sum(1 for line in lines if isinstance(line, str) and rule.pattern.search(line))
        if not matched:
            return
        # Counted before appending: while not firing, fewer than `count` of these are in the
        # window, so this is exact although the deque forgets older times.
        in_window = sum(1 for t in state.times if now - t <= rule.window_s) + matched
        state.times.extend([now] * min(matched, rule.count))
        if state.is_firing or in_window < rule.count:
            return
        state.is_firing = True
        lines_text = f"{in_window} line{'' if in_window == 1 else 's'}"
        message = (
            f"{lines_text} matching /{rule.pattern.pattern}/ in {rule.source}"
            f" within {_fmt(rule.window_s)}s"
        )
        self._publish(rule, "log", "firing", in_window, state.times[0], message)

    def _expire_logs(self, now: float) -> None:
        for rule, state in self._log:
            if state.is_firing and now - state.times[-1] > rule.window_s:
                state.is_firing = False
                message = (
                    f"no lines matching /{rule.pattern.pattern}/ in {rule.source}"
                    f" within {_fmt(rule.window_s)}s: resolved"
                )
                # It resolved when the last matching line left the window, not when we noticed.
                self._publish(rule, "log", "resolved", 0, state.times[-1] + rule.window_s, message)

    def _publish(
        self, rule: Rule, kind: str, state: str, value: float, since: float, message: str
    ) -> None:
        payload: dict[str, Any] = {
            "rule": rule.name,
            "severity": rule.severity,
            "state": state,
            "message": message,
            "value": value,
            "since": since,
            "kind": kind,
        }
        # Before publishing: other observers of this alert may ask for active().
        if state == "firing":
            self._active[rule.name] = payload
        else:
            self._active.pop(rule.name, None)
        self.hub.publish(ALERT, payload)


def _fmt(value: float) -> str:
    """A number for a message: 93.2, 90, 1250000, 0.0123; never 1.25e+06."""
    if isinstance(value, int) or value.is_integer():
        return str(int(value))
    return f"{value:.2f}".rstrip("0").rstrip(".") if abs(value) >= 1 else f"{value:.3g}"
