"""ProcessTable: the busiest processes by CPU and by memory, for the `processes` payload."""

from __future__ import annotations

import heapq
import time
from typing import Any

import psutil

ATTRS = ["pid", "name", "username", "cpu_percent", "memory_info"]


class ProcessTable:
    """Walks the process list; blocking and costly (~10 ms per 70 processes), so call rarely."""

    def __init__(self, top_n: int = 5) -> None:
        self.top_n = top_n

    def snapshot(self) -> dict[str, Any]:
        """`count`, `sampled_at`, and the top `top_n` processes by CPU and by resident memory.

        `cpu_percent` is of one CPU, like top: a process busy on two cores shows 200. A
        process seen for the first time shows 0.0, as it has no earlier reading to compare.
        """
        # process_iter keeps Process objects between calls (so cpu_percent has a previous
        # reading), skips pids that vanish mid-walk (NoSuchProcess), and turns AccessDenied
        # and ZombieProcess into None values (ad_value), so there is nothing left to catch.
        rows = [_row(proc.info) for proc in psutil.process_iter(ATTRS)]
        return {
            "count": len(rows),
            "sampled_at": time.time(),
            "top_cpu": heapq.nlargest(self.top_n, rows, key=lambda r: (r["cpu_percent"], r["rss"])),
            "top_memory": heapq.nlargest(self.top_n, rows, key=lambda r: r["rss"]),
        }


def _row(info: dict[str, Any]) -> dict[str, Any]:
    memory = info["memory_info"]
    return {
        "pid": int(info["pid"]),
        "name": info["name"] or "",
        "user": info["username"],
        "cpu_percent": float(info["cpu_percent"] or 0.0),
        "rss": int(memory.rss) if memory is not None else 0,
    }
