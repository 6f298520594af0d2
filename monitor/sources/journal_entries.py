"""Journal entries as journalctl --output=json prints them: the line shown for one, the `log`
payload of a run of them, and where a run starts (its first entry's place in the journal)
as an Origin the hub keeps, so the same run can be read again by cursor."""

from __future__ import annotations

import json
from typing import Any

from monitor.hub.interface import Origin
from monitor.sources.crc import crc32

HALF = 64  # a 128-bit seqnum id is kept as two 64-bit halves (the record's identity fields)


def entry_line(entry: dict[str, Any]) -> str:
    """`unit[pid]: MESSAGE`, like syslog; binary messages arrive as byte lists."""
    ident = entry.get("_SYSTEMD_UNIT") or entry.get("SYSLOG_IDENTIFIER") or entry.get("_COMM")
    pid = entry.get("_PID") or entry.get("SYSLOG_PID")
    message = _message_text(entry.get("MESSAGE"))
    if not ident:
        return message
    return f"{ident}[{pid}]: {message}" if pid else f"{ident}: {message}"


def _message_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(b, int) for b in value):
        return bytes(b & 0xFF for b in value).decode("utf-8", "replace")
    if isinstance(value, list):  # a field given more than once: each value in turn
        return " ".join(_message_text(v) for v in value)
    # journalctl prints null for a field over its size threshold (4096 bytes without --all)
    return "" if value is None else str(value)


def _priority(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 6  # journald's default: info


def realtime_us(entry: dict[str, Any]) -> int:
    """__REALTIME_TIMESTAMP in µs; 0 if missing."""
    try:
        return int(entry.get("__REALTIME_TIMESTAMP", 0))
    except (TypeError, ValueError):
        return 0


def payload_of(name: str, entries: list[dict[str, Any]], is_backlog: bool) -> dict[str, Any]:
    """The `log` payload of consecutive entries."""
    payload: dict[str, Any] = {
        "source": name,
        "file": "journal",
        "lines": [entry_line(e) for e in entries],
        "entries": [
            {
                "priority": _priority(e.get("PRIORITY")),
                "unit": e.get("_SYSTEMD_UNIT") or None,
                "ts": realtime_us(e) / 1_000_000,
            }
            for e in entries
        ],
    }
    if is_backlog:
        payload["backlog"] = True
    return payload


def place(entry: dict[str, Any]) -> tuple[tuple[int, int], int, int] | None:
    """The entry's place: its journal's seqnum id (as two halves), its seqnum, its time (µs),
    from its __CURSOR (`s=ID;i=SEQNUM;b=...;m=...;t=TIME;x=...`); None if it has none."""
    cursor = entry.get("__CURSOR")
    if not isinstance(cursor, str):
        return None
    fields = dict(part.split("=", 1) for part in cursor.split(";") if "=" in part)
    try:
        seqnum_id, seqnum, ts = (int(fields[k], 16) for k in "sit")
    except (KeyError, ValueError):
        return None
    if seqnum_id >> (2 * HALF) or seqnum >> 63 or ts >> 63 or seqnum > ts:
        return None  # not what journald writes: not kept (a record needs start <= end)
    return (seqnum_id >> HALF, seqnum_id & ((1 << HALF) - 1)), seqnum, ts


def origin_of(entries: list[dict[str, Any]], lines: list[str], is_backlog: bool) -> Origin | None:
    """Where these consecutive entries can be read again: the first one's place, how many,
    and a CRC of their lines."""
    first = place(entries[0]) if entries else None
    if first is None:
        return None
    key, seqnum, ts = first
    return Origin(key, seqnum, ts, lines_crc(lines), len(entries), is_backlog)


def cursor_of(origin: Origin) -> str:
    """A cursor journalctl seeks to (`--cursor`): the origin's first entry."""
    seqnum_id = (origin.key[0] << HALF) | origin.key[1]
    return f"s={seqnum_id:032x};i={origin.start:x};t={origin.end:x}"


def is_at(entry: dict[str, Any], origin: Origin) -> bool:
    """True if `entry` is the origin's first entry."""
    found = place(entry)
    return found is not None and found[:2] == (origin.key, origin.start)


def lines_crc(lines: list[str]) -> int:
    return crc32("\n".join(lines).encode("utf-8", "surrogatepass"))


def parse_entry(line: bytes) -> dict[str, Any] | None:
    """One line of journalctl's JSON output as an entry; None if it is not one."""
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    return entry if isinstance(entry, dict) else None
