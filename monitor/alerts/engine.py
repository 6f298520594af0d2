"""The alert engine: a hub consumer that evaluates rules (parsed in monitor.alerts.rules) on
every metrics and log event.

It publishes an `alert` event on each transition (firing -> resolved and back), never while a
state holds; the hub keeps the latest one per rule sticky. It runs in its own task, on the
hub's feed: never inside publish(). With a state directory, the rules firing are kept in
`alerts.json`: a restarted server goes on with them firing (said again with "restored": true,
which is no transition), so it neither fires them twice nor forgets to resolve them.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from monitor.alerts.rules import OPS, LogRule, MetricRule, Rule
from monitor.hub.events import ALERT, LOG, METRICS, STATUS, Event
from monitor.hub.interface import Consumable, Publisher
from monitor.metrics.paths import as_float, flatten
from monitor.state import StateDir
from monitor.tasks import consume

log = logging.getLogger(__name__)

# A metric rule whose path is in none of the first this many samples is reported: it would
# never fire (a typo, a disk that is not mounted here).
FIRST_SAMPLES = 3
STATUS_SOURCE = "alerts"  # the name the engine's own status events carry
# What a log rule's pattern sees (see AlertEngine._bounded): 2,048 characters of a line
# (`ERROR.*timeout` on that: 0.3 ms at worst) and 256 KiB of an event's text (~40 ms).
MATCH_CHARS = 2048
MATCH_BUDGET_CHARS = 256 * 1024
FILE = "alerts.json"  # in the state directory: the rules firing, with their last payloads


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
        self,
        hub: Publisher,
        rules: Sequence[Rule],
        *,
        clock: Callable[[], float] = time.time,
        state: StateDir | None = None,
    ) -> None:
        self.hub = hub
        self.clock = clock
        self._state = state
        self._firing: dict[str, dict[str, Any]] = {}  # rule -> its firing payload (saved)
        self._metric = [(r, _MetricState()) for r in rules if isinstance(r, MetricRule)]
        self._log = [(r, _LogState(deque(maxlen=r.count))) for r in rules if isinstance(r, LogRule)]
        self.lines_skipped = 0  # log lines past an event's match budget (on /metrics)
        self._samples = 0  # metrics events seen, until FIRST_SAMPLES
        self._seen_paths: set[str] = set()  # rules' paths that had a value in the first samples

    async def run(self, hub: Consumable) -> None:
        """Evaluate the events its rules need (log events only with log rules; metrics with
        any rule: they are also its clock) from now on, until the hub closes."""
        if not self._metric and not self._log:
            return  # no rules: publish() hands nothing to a consumer that would do nothing
        self._restore()
        types = frozenset({METRICS, LOG}) if self._log else frozenset({METRICS})
        await consume(hub, types, self.handle, "alerts")

    def _restore(self) -> None:
        """Rules the last run left firing fire on (and are said again, as restored)."""
        saved = self._state.read_json(FILE) if self._state else None
        firing = saved.get("firing") if saved else None
        if not isinstance(firing, dict):
            return

        def restored(rule: Rule) -> dict[str, Any] | None:
            payload = firing.get(rule.name)
            if not isinstance(payload, dict) or not isinstance(payload.get("since"), int | float):
                return None
            self._firing[rule.name] = payload
            self.hub.publish(ALERT, {**payload, "restored": True})
            return payload

        for metric_rule, metric_state in self._metric:
            if (payload := restored(metric_rule)) is not None:
                metric_state.is_firing, metric_state.pending_since = True, payload["since"]
        for log_rule, log_state in self._log:
            if restored(log_rule) is not None:  # resolves after a window without a match
                log_state.is_firing = True
                log_state.times.append(self.clock())

    def handle(self, event: Event) -> None:
        """Evaluate the rules on one event; other types than metrics and log are ignored."""
        payload = event.payload
        if event.type == METRICS:
            ts = as_float(payload.get("ts"))
            now = self.clock() if ts is None else ts
            values = flatten(payload) if self._metric else {}
            for metric_rule, metric_state in self._metric:
                value = values.get(metric_rule.metric)
                self._check_metric(metric_rule, metric_state, value, now)
            if self._metric and self._samples < FIRST_SAMPLES:
                self._note_paths(values)
            self._expire_logs(now)
        # Start-up backlog lines were written before we started: old news, not alerts.
        elif event.type == LOG and not payload.get("backlog"):
            now = self.clock()
            self._expire_logs(now)
            lines = payload.get("lines")
            name = event.source or payload.get("source")
            rules = [(r, s) for r, s in self._log if r.source == name]
            if isinstance(lines, Sequence) and not isinstance(lines, str) and rules:
                seen = self._bounded(lines)
                for rule, state in rules:
                    self._check_log(rule, state, seen, now)

    def _bounded(self, lines: Sequence[Any]) -> list[str]:
        """What log rules see of an event's lines: a regex costs up to quadratic time in the
        text it searches (`ERROR.*timeout` on a 64 KiB line: 0.3 s), and runs on the event
        loop, so each line is cut at MATCH_CHARS and an event gives at most MATCH_BUDGET_CHARS
        of text; lines past the budget are counted in lines_skipped, not searched."""
        seen: list[str] = []
        budget = MATCH_BUDGET_CHARS
        for i, line in enumerate(lines):
            if budget <= 0:
                self.lines_skipped += len(lines) - i
                break
            if not isinstance(line, str):
                continue
            seen.append(line[:MATCH_CHARS])
            budget -= len(seen[-1])
        return seen

    def _note_paths(self, values: dict[str, float | None]) -> None:
        """After the first samples, report every rule whose metric none of them had."""
        self._samples += 1
        self._seen_paths.update(
            r.metric for r, _ in self._metric if values.get(r.metric) is not None
        )
        if self._samples < FIRST_SAMPLES:
            return
        problems = []
        for rule, _ in self._metric:
            if rule.metric not in self._seen_paths:
                import difflib  # here: only a mistyped rule needs it, at most once per run

                close = difflib.get_close_matches(rule.metric, values, n=3)
                hint = f" (did you mean {', '.join(close)}?)" if close else ""
                problems.append(
                    f"rule {rule.name!r}: metric {rule.metric} is in none of the first "
                    f"{FIRST_SAMPLES} samples, so it cannot fire{hint}"
                )
        for problem in problems:
            log.warning("alerts: %s", problem)
        if problems:
            detail = "; ".join(problems)
            status = {"source": STATUS_SOURCE, "kind": "alerts", "state": "error", "detail": detail}
            self.hub.publish(STATUS, status | {"ts": self.clock()})

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

    def _check_log(self, rule: LogRule, state: _LogState, lines: list[str], now: float) -> None:
        matched = sum(1 for line in lines if rule.pattern.search(line))
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
        self.hub.publish(ALERT, payload)
        if state == "firing":
            self._firing[rule.name] = payload
        else:
            self._firing.pop(rule.name, None)
        if self._state is not None:
            self._state.write_json(FILE, {"firing": self._firing})


def _fmt(value: float) -> str:
    """A number for a message: 93.2, 90, 1250000, 0.0123; never 1.25e+06."""
    if isinstance(value, int) or value.is_integer():
        return str(int(value))
    return f"{value:.2f}".rstrip("0").rstrip(".") if abs(value) >= 1 else f"{value:.3g}"
