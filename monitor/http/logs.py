"""GET /api/logs: a source's earlier lines, a page at a time, or the lines around a moment.

    /api/logs?source=app&before=ID&limit=N     N lines before event ID (no ID: the newest)
    /api/logs?source=app&at=TS&before=N&after=N   N lines before the time TS and N from it on

The client names a source, an event id or a time, never a file: the lines come from the
hub's records of that source's events (read again from the files they came from, checked by
CRC), then from its files alone (sources/older.py), continued by a position the source gave
out and honours only in its own files, at a line's start. A forged or stale id or position
reaches nothing else. Bad parameters are a 400 with JSON.
"""

from __future__ import annotations

import re

from aiohttp import web

from monitor.http.errors import count_param, json_error, one_param, reject_unknown_params
from monitor.http.hosts import host_target
from monitor.hub.interface import BadEventId, LogPage

LOGS_PARAMS = ("source", "before", "after", "limit", "at", "host")
MAX_LINES = 5000
DEFAULT_LINES = 500
TIME = re.compile(r"[0-9]{1,12}(\.[0-9]{1,9})?")


async def api_logs(request: web.Request) -> web.Response:
    """GET /api/logs: see the module's docstring; JSON {"source", "events": [{"id", "ts",
    "lines"}], "before": id or null, and with at=: "at", "after"}."""
    reject_unknown_params(request, LOGS_PARAMS)
    target = host_target(request)
    known = target.log_names
    source = one_param(request, "source")
    if source not in known:
        raise json_error(400, f"source: expected a log source, got {source!r}", known=known)
    hub = target.hub
    raw_at = one_param(request, "at")
    if raw_at is None:
        if one_param(request, "after") is not None:
            raise json_error(400, "after: only with at=")
        limit = max(1, count_param(request, "limit", DEFAULT_LINES, MAX_LINES))
        try:
            page = await hub.log_before(source, one_param(request, "before"), limit)
        except BadEventId as exc:
            raise json_error(400, f"before: {exc}") from None
    else:
        if one_param(request, "limit") is not None:
            raise json_error(400, "limit: not with at= (give before= and after= counts)")
        if not TIME.fullmatch(raw_at):  # digits only: never nan or inf
            raise json_error(400, f"at: expected a Unix time in seconds, got {raw_at!r}")
        half = DEFAULT_LINES // 2
        before, after = (
            count_param(request, "before", half, MAX_LINES),
            count_param(request, "after", half, MAX_LINES),
        )
        page = await hub.log_around(source, float(raw_at), before, after)
    return web.json_response(_shaped(source, page, with_at=raw_at is not None))


def _shaped(source: str, page: LogPage, *, with_at: bool) -> dict[str, object]:
    body: dict[str, object] = {
        "source": source,
        "events": [
            {"id": e.id, "ts": None if e.ts is None else round(e.ts, 3), "lines": e.lines}
            for e in page.events
        ],
        "before": page.before,
    }
    if with_at:
        body["at"], body["after"] = page.at, page.after
    return body
