"""GET /api/logs: a source's earlier lines, a page at a time, or the lines around a moment.

    /api/logs?source=app&before=ID&limit=N     N lines before event ID (no ID: the newest)
    /api/logs?source=app&at=TS&before=N&after=N   N lines before the time TS and N from it on

The client names a source, an event id or a time, never a file: the lines come from the
hub's records of that source's events (read again from the files they came from, checked by
CRC), so a forged or stale id can reach nothing else. Bad parameters are a 400 with JSON.
"""

from __future__ import annotations

import math
import re

from aiohttp import web

from monitor.http.errors import json_error, reject_unknown_params
from monitor.http.keys import CONFIG, HUB
from monitor.hub.interface import BadEventId, LogPage

LOGS_PARAMS = ("source", "before", "after", "limit", "at")
MAX_LINES = 5000
DEFAULT_LINES = 500
COUNT = re.compile(r"[0-9]{1,6}")
TIME = re.compile(r"[0-9]{1,12}(\.[0-9]{1,9})?")


def _one(request: web.Request, key: str) -> str | None:
    values = request.query.getall(key, [])
    if len(values) > 1:
        raise json_error(400, f"{key}: given more than once")
    return values[0] if values else None


def _count(request: web.Request, key: str, default: int) -> int:
    raw = _one(request, key)
    if raw is None:
        return default
    if not COUNT.fullmatch(raw) or int(raw) > MAX_LINES:
        raise json_error(400, f"{key}: expected a whole number from 0 to {MAX_LINES}, got {raw!r}")
    return int(raw)


async def api_logs(request: web.Request) -> web.Response:
    """GET /api/logs: see the module's docstring; JSON {"source", "events": [{"id", "ts",
    "lines"}], "before": id or null, and with at=: "at", "after"}."""
    reject_unknown_params(request, LOGS_PARAMS)
    known = request.app[CONFIG].log_names()
    source = _one(request, "source")
    if source not in known:
        raise json_error(400, f"source: expected a log source, got {source!r}", known=known)
    hub = request.app[HUB]
    raw_at = _one(request, "at")
    if raw_at is None:
        if _one(request, "after") is not None:
            raise json_error(400, "after: only with at=")
        limit = max(1, _count(request, "limit", DEFAULT_LINES))
        try:
            page = hub.log_before(source, _one(request, "before"), limit)
        except BadEventId as exc:
            raise json_error(400, f"before: {exc}") from None
    else:
        if _one(request, "limit") is not None:
            raise json_error(400, "limit: not with at= (give before= and after= counts)")
        if not TIME.fullmatch(raw_at) or not math.isfinite(float(raw_at)):
            raise json_error(400, f"at: expected a Unix time in seconds, got {raw_at!r}")
        half = DEFAULT_LINES // 2
        before, after = _count(request, "before", half), _count(request, "after", half)
        page = hub.log_around(source, float(raw_at), before, after)
    return web.json_response(_shaped(source, page, with_at=raw_at is not None))


def _shaped(source: str, page: LogPage, *, with_at: bool) -> dict[str, object]:
    body: dict[str, object] = {
        "source": source,
        "events": [{"id": e.id, "ts": round(e.ts, 3), "lines": e.lines} for e in page.events],
        "before": page.before,
    }
    if with_at:
        body["at"], body["after"] = page.at, page.after
    return body
