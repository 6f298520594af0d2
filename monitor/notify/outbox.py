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
    def id(self) -> str:
        return str(self.body.get("id"))


@dataclass(slots=True)
class Outbox:
    """What is pending, per target, and what was delivered; saved if there is a state
    directory (else it lives as long as the process)."""

    state: StateDir | None = None
    delivered: dict[str, deque[str]] = field(default_factory=dict)

    def load(self, targets: Iterable[str]) -> list[Delivery]:
        """The deliveries the last run left pending, for targets that still exist."""
        names = set(targets)
        data = self.state.read_json(FILE) if self.state else None
        if data is None:
            return []
        pending: list[Delivery] = []
        try:
            for target, ids in data.get("delivered", {}).items():
                if target in names:
                    self.delivered[target] = deque(map(str, ids), maxlen=DELIVERED_KEPT)
            for item in data.get("pending", []):
                delivery = Delivery(**item)
                if delivery.target in names and isinstance(delivery.body, dict):
                    pending.append(delivery)
        except (TypeError, AttributeError):
            log.warning("state %s: not usable; pending notifications are lost", FILE)
            return []
        return pending

    def was_delivered(self, delivery: Delivery) -> bool:
        return delivery.id in self.delivered.get(delivery.target, ())

    def mark_delivered(self, delivery: Delivery) -> None:
        seen = self.delivered.setdefault(delivery.target, deque(maxlen=DELIVERED_KEPT))
        seen.append(delivery.id)

    def save(self, pending: Iterable[Delivery]) -> None:
        if self.state is None:
            return
        self.state.write_json(
            FILE,
            {
                "pending": [asdict(d) for d in pending],
                "delivered": {t: list(ids) for t, ids in self.delivered.items()},
            },
        )
