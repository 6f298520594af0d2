"""Durations: the one grammar for every span a user writes (a rule's `for 5m` and `window`,
a history `?window=`): a number of seconds, or a number with a unit s, m or h ("90", "1.5m",
"24h"). Callers name the key; the message says what was wrong."""

from __future__ import annotations

import math
import re
from typing import Any

DURATION_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([smh]?)", re.IGNORECASE)
UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600}
EXAMPLES = "30s, 5m, 1h or 24h"


def parse_duration(value: Any, *, max_s: float = 86400.0, allow_zero: bool = False) -> float:
    """Seconds in `value` (a string as above, or a plain number of seconds); ValueError with
    a message that quotes the value and says what a duration looks like."""
    seconds: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (match := DURATION_RE.fullmatch(value.strip())):
        seconds = float(match[1]) * UNIT_S[match[2].lower()]
    shown = _shown(value)
    if seconds is None or not seconds >= 0 or not math.isfinite(seconds):
        raise ValueError(f"expected a duration such as {EXAMPLES}, got {shown}")
    if seconds == 0 and not allow_zero:
        raise ValueError(f"must be longer than 0s, got {shown}")
    if seconds > max_s:
        raise ValueError(f"at most {format_duration(max_s)}, got {shown}")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest of "24h", "15m", "90s" that says exactly `seconds`."""
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return repr(text if len(text) <= 40 else text[:40] + "...") if isinstance(value, str) else text
