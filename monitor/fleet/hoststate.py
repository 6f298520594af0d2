"""HostState: what a dashboard knows of one host of the fleet (its hello, latest sticky
values, newest sample's time and figures, a minute of CPU for the sparkline), and the fleet
page's view of it."""

from __future__ import annotations

import json
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from monitor.alerts.rules import HOST_DOWN
from monitor.hub.events import ALERT

SPARK_POINTS = 60


@dataclass(slots=True)
class HostState:
    """What the fleet knows of one host."""

    name: str
    hello: dict[str, Any] = field(default_factory=dict)
    sticky: dict[str, bytes] = field(default_factory=dict)
    last_ms: int = 0  # the newest metrics entry's id, in Redis's milliseconds
    is_stopped: bool = False
    is_down_announced: bool = False  # a `host down` firing, as smon-fleet:alerts says
    state: str = "down"
    summary: dict[str, Any] = field(default_factory=dict)
    spark: deque[float] = field(default_factory=lambda: deque(maxlen=SPARK_POINTS))

    def firing(self) -> list[str]:
        """The rules firing on this host, by its agent's latest alerts."""
        names = []
        for key, body in self.sticky.items():
            if key.startswith(f"{ALERT}:") and b'"state":"firing"' in body:
                names.append(key.partition(":")[2])
        return sorted(names)

    def view(self) -> dict[str, Any]:
        """The host as /api/hosts and the fleet page show it."""
        return {
            "name": self.name,
            "state": self.state,
            "last_seen": self.last_ms / 1000 if self.last_ms else None,
            **self.summary,
            "alerts": self.firing() + ([HOST_DOWN] if self.is_down_announced else []),
            "spark": list(self.spark),
        }


def number(value: Any) -> float | None:
    """A finite number from an agent's JSON, else None (NaN or a string would break the
    page's JSON and arithmetic)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def summarize(sample: dict[str, Any]) -> dict[str, Any]:
    """The figures the fleet page shows of one metrics sample (TypeError, AttributeError
    or KeyError for what is not a sample)."""
    disks = [d for d in sample.get("disks") or [] if number(d.get("percent")) is not None]
    fullest = max(disks, key=lambda d: d["percent"], default=None)
    return {
        "cpu": number((sample.get("cpu") or {}).get("percent")),
        "memory": number((sample.get("memory") or {}).get("percent")),
        "load": number((sample.get("load") or {}).get("1m")),
        "disk": {"mount": str(fullest["mount"]), "percent": float(fullest["percent"])}
        if fullest
        else None,
    }


def read_hello(value: bytes) -> dict[str, Any]:
    """A host's hello from its sticky hash, checked: a dict, a positive `interval_s` (else
    1 s), sources with string names; {} for anything else."""
    try:
        hello = json.loads(value)
    except ValueError:
        return {}
    if not isinstance(hello, dict):
        return {}
    interval_s = number(hello.get("interval_s"))
    hello["interval_s"] = interval_s if interval_s and interval_s > 0 else 1.0
    sources = hello.get("sources")
    hello["sources"] = [
        {"name": s["name"], "kind": "log"}
        for s in (sources if isinstance(sources, list) else [])
        if isinstance(s, dict) and isinstance(s.get("name"), str)
    ]
    return hello
