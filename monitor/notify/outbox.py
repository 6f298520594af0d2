"""The outbox: notifications not yet delivered, and the ids of the last ones that were, kept in
the state directory (`notify.json`, replaced whole on each change: alerts are rare). A
restarted server sends what was pending and nothing it had delivered already."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from monitor.state import StateDir

log = logging.getLogger(__name__)

FILE = "notify.json"
DELIVERED_KEPT = 256  # per target: ids of the last deliveries, so none is sent twice


@dataclass(slots=True)
class Delivery:
    """One notification for one target: the alert's webhook body (the other kinds are made
    from it), when it was first tried (wall clock; retries stop `retry_for` after), tries."""

    target: str
    body: dict[str, Any]
    first_try: float | None = None
    attempts: int = 0

    @property
    def key(self) -> str:
        """What makes it the same notification: its id, and the change it tells (an id alone
        could come again if the position log lost records)."""
        b = self.body
        return f"{b.get('id')} {b.get('rule')} {b.get('state')} {b.get('started')}"

    @staticmethod
    def of(item: Any) -> Delivery | None:
        """A delivery from its saved form; None if it is not one."""
        if not isinstance(item, dict):
            return None
        target, body = item.get("target"), item.get("body")
        first_try, attempts = item.get("first_try"), item.get("attempts", 0)
        if (
            not isinstance(target, str)
            or not isinstance(body, dict)
            or not (first_try is None or isinstance(first_try, int | float))
            or not isinstance(attempts, int)
        ):
            return None
        return Delivery(target, body, first_try, attempts)


@dataclass(slots=True)
class Outbox:
    """What is pending, per target, and what was delivered; saved if there is a state
    directory (else it lives as long as the process)."""

    state: StateDir | None = None
    delivered: dict[str, deque[str]] = field(default_factory=dict)
    # The last state each target was told of each rule ("firing", "resolved"), so a rule
    # found firing at start is told to a target that missed its change.
    states: dict[str, dict[str, str]] = field(default_factory=dict)

    def load(self, targets: Iterable[str]) -> list[Delivery]:
        """The deliveries the last run left pending, for targets that still exist."""
        names = set(targets)
        data = self.state.read_json(FILE) if self.state else None
        if data is None:
            return []
        pending: list[Delivery] = []
        delivered, states, items = data.get("delivered"), data.get("states"), data.get("pending")
        for target, keys in (delivered if isinstance(delivered, dict) else {}).items():
            if target in names and isinstance(keys, list):
                self.delivered[target] = deque(map(str, keys), maxlen=DELIVERED_KEPT)
        for target, told in (states if isinstance(states, dict) else {}).items():
            if target in names and isinstance(told, dict):
                self.states[target] = {str(k): str(v) for k, v in told.items()}
        skipped = 0
        for item in items if isinstance(items, list) else []:
            delivery = Delivery.of(item)
            if delivery is None:
                skipped += 1
            elif delivery.target in names:
                pending.append(delivery)
        if skipped:
            log.warning("state %s: %d pending notifications not usable; skipped", FILE, skipped)
        return pending

    def was_delivered(self, delivery: Delivery) -> bool:
        return delivery.key in self.delivered.get(delivery.target, ())

    def mark_delivered(self, delivery: Delivery) -> None:
        seen = self.delivered.setdefault(delivery.target, deque(maxlen=DELIVERED_KEPT))
        seen.append(delivery.key)

    def told(self, delivery: Delivery) -> None:
        """The target is being told of its rule's state (saved with the next save)."""
        rule, state = delivery.body.get("rule"), delivery.body.get("state")
        if isinstance(rule, str) and isinstance(state, str):
            self.states.setdefault(delivery.target, {})[rule] = state

    def last_state(self, target: str, rule: str) -> str | None:
        return self.states.get(target, {}).get(rule)

    def save(self, pending: Iterable[Delivery]) -> None:
        if self.state is None:
            return
        self.state.write_json(
            FILE,
            {
                "pending": [asdict(d) for d in pending],
                "delivered": {t: list(keys) for t, keys in self.delivered.items()},
                "states": self.states,
            },
        )
