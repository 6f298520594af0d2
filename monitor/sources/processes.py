"""ProcessTable: the busiest processes by CPU and by memory, for the `processes` payload.

Read from /proc directly: one read of /proc/PID/stat (name, CPU ticks, start time, resident
pages) and one stat of /proc/PID (its owner) per process. psutil's process_iter with the
same attributes opened four to five files per process and cost 12.7 ms a walk against 1.7
for 70 processes here (#17): the walk was a third of an idle server's CPU.
"""

from __future__ import annotations

import asyncio
import heapq
import os
import pwd
import time
from collections.abc import Iterator
from typing import Any

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
COMM_CHARS = 15  # the kernel cuts a process's name (comm) to this many characters
# walk() holds the loop at most about this long at a time (a process costs ~50 us).
SLICE_S = 0.0005


class ProcessTable:
    """Walks the process list, keeping each process's CPU ticks for the next walk's
    percentages; blocking and costly (~1.7 ms per 70 processes), so call rarely."""

    def __init__(self, top_n: int = 5) -> None:
        self.top_n = top_n
        # (pid, start time) -> CPU ticks at the last walk: a reused pid is a new process.
        self._ticks: dict[tuple[int, int], int] = {}
        self._walked_at: float | None = None
        self._users: dict[int, str] = {}

    def snapshot(self) -> dict[str, Any]:
        """`count`, `sampled_at`, and the top `top_n` processes by CPU and by resident memory.

        `cpu_percent` is of one CPU since the previous walk, like top: a process busy on two
        cores shows 200. A process seen for the first time shows 0.0, as it has no earlier
        reading to compare.
        """
        return self._summary(list(self._rows()))

    async def walk(self, slice_s: float = SLICE_S) -> dict[str, Any]:
        """snapshot(), on the event loop `slice_s` at a time. In a thread, the walk held the
        GIL for ~10 ms every few seconds, and a log line arriving meanwhile waited up to the
        interpreter's 5 ms switch interval for it (#17); here it waits one slice at most."""
        rows = []
        until = time.perf_counter() + slice_s
        for row in self._rows():
            rows.append(row)
            if time.perf_counter() >= until:
                await asyncio.sleep(0)
                until = time.perf_counter() + slice_s
        return self._summary(rows)

    def _rows(self) -> Iterator[dict[str, Any]]:
        """One pass over /proc, a row per process; once through, each process's ticks are
        kept for the next pass (those gone since are forgotten)."""
        now = time.monotonic()
        elapsed_s = now - self._walked_at if self._walked_at is not None else None
        self._walked_at = now
        before, ticks_now = self._ticks, {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:  # os.open, not open(): no buffering's lseek and isatty ioctl per process
                fd = os.open(f"/proc/{entry}/stat", os.O_RDONLY | os.O_CLOEXEC)
                try:
                    stat = os.read(fd, 4096)
                finally:
                    os.close(fd)
                uid = os.stat(f"/proc/{entry}").st_uid
            except OSError:  # gone since the listing
                continue
            # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
            left, right = stat.find(b"("), stat.rfind(b")")
            fields = stat[right + 2 :].split()
            key = (int(entry), int(fields[19]))  # the pid, its start time
            ticks = ticks_now[key] = int(fields[11]) + int(fields[12])  # utime + stime
            was = before.get(key)
            cpu = 0.0
            if was is not None and elapsed_s:
                cpu = round((ticks - was) / CLOCK_TICKS / elapsed_s * 100, 1)
            yield {
                "pid": key[0],
                "name": stat[left + 1 : right].decode("utf-8", "replace"),
                "user": self._user(uid),
                "cpu_percent": cpu,
                "rss": int(fields[21]) * PAGE_BYTES,
            }
        self._ticks = ticks_now

    def _summary(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        top_cpu = heapq.nlargest(self.top_n, rows, key=lambda r: (r["cpu_percent"], r["rss"]))
        top_memory = heapq.nlargest(self.top_n, rows, key=lambda r: r["rss"])
        for row in {id(r): r for r in top_cpu + top_memory}.values():
            row["name"] = full_name(row["pid"], row["name"])
        return {
            "count": len(rows),
            "sampled_at": time.time(),
            "top_cpu": top_cpu,
            "top_memory": top_memory,
        }

    def _user(self, uid: int) -> str:
        """The name of `uid` (its number if it has none, as psutil says); looked up once."""
        if uid not in self._users:
            try:
                self._users[uid] = pwd.getpwuid(uid).pw_name
            except KeyError:
                self._users[uid] = str(uid)
        return self._users[uid]


def full_name(pid: int, comm: str) -> str:
    """The kernel keeps 15 characters of a name; like psutil, take the whole one from the
    command line when it starts with them."""
    if len(comm) < COMM_CHARS:
        return comm
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv0 = f.read().split(b"\0", 1)[0].decode("utf-8", "replace")
    except OSError:
        return comm
    base = os.path.basename(argv0)
    return base if base.startswith(comm) else comm
