"""Metric paths: the one grammar by which history, the charts and alert rules name a number in
a metrics payload.

A path is the dotted chain of keys to a numeric leaf (`cpu.percent`, `load.1m`,
`net.interfaces.eth0.rx_bytes_per_s`); a list of numbers is indexed (`cpu.per_core.0`); the
`disks` table is keyed by mount point (`disks./.percent`, `disks./var/lib.percent`). Other
tables (the top processes) change identity every sample and have no paths. Keys may hold dots
(`eth0.100`): a path is looked up as a whole name, never split and walked.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def flatten(payload: Mapping[str, Any]) -> dict[str, float | None]:
    """Every numeric leaf of a metrics payload by its path (`ts` left out); None for a value
    that is missing, not finite, or beyond float range."""
    out: dict[str, float | None] = {}
    _flatten_mapping("", {k: v for k, v in payload.items() if k not in ("ts", "disks")}, out)
    disks = payload.get("disks")
    # Disks are a table, but a mount point is a stable identity worth a name of its own.
    for disk in disks if isinstance(disks, list | tuple) else ():
        if isinstance(disk, Mapping) and isinstance(disk.get("mount"), str):
            fields = {k: v for k, v in disk.items() if k != "mount"}
            _flatten_mapping(f"disks.{disk['mount']}.", fields, out)
    return out


def lookup(payload: Mapping[str, Any], path: str) -> float | None:
    """The number at `path` in a metrics payload; None if absent or not a number."""
    return flatten(payload).get(path)


def _flatten_mapping(prefix: str, mapping: Mapping[Any, Any], out: dict[str, float | None]) -> None:
    # Runs for every leaf of every sample, so the common exact types are tested first.
    for key, value in mapping.items():
        kind = type(value)
        if kind is float:
            out[f"{prefix}{key}"] = value if math.isfinite(value) else None
        elif kind is int:
            out[f"{prefix}{key}"] = as_float(value)
        elif kind is dict or isinstance(value, Mapping):
            _flatten_mapping(f"{prefix}{key}.", value, out)
        elif kind is list or kind is tuple:
            # Numbers in a list keep their meaning by index (per core). Rows of a table (top
            # processes) change identity every sample, so a name per index would mean nothing.
            for i, item in enumerate(value):
                if type(item) is not dict and (item is None or is_number(item)):
                    out[f"{prefix}{key}.{i}"] = as_float(item)
        elif value is None or is_number(value):
            out[f"{prefix}{key}"] = as_float(value)


def is_number(value: Any) -> bool:
    """True for an int or float (not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def as_float(value: Any) -> float | None:
    """A finite float, or None (not a number, NaN, infinite, an int beyond float range)."""
    if not is_number(value):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    # NaN and inf are not JSON; a chart shows them as a gap anyway
    return number if math.isfinite(number) else None
