"""GET /tail/{name}: one log source as plain text, its last lines then live, for `curl -N`."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from monitor.client.printer import SSEEvent, SSEParser
from monitor.http.keys import CONFIG, HUB, json_error, reject_unknown_params
from monitor.http.stream import write_chunk
from monitor.hub.events import LOG
from monitor.hub.memory import Selector

TAIL_PARAMS = ("lines",)
DEFAULT_LINES = 10
MAX_LINES = 10_000
LINES_VALUE = re.compile(r"[0-9]{1,6}")


def parse_tail_query(request: web.Request) -> tuple[str, int]:
    """The source name and line count; 404 or 400 with a JSON body before the stream starts."""
    reject_unknown_params(request, TAIL_PARAMS)
    known = request.app[CONFIG].log_names()
    # The name only picks a configured source: it is never part of a path.
    name = request.match_info["name"]
    if name not in known:
        raise json_error(404, f"unknown source {name!r}", known=known)
    values = request.query.getall("lines", [str(DEFAULT_LINES)])
    if len(values) > 1:
        raise json_error(400, "lines: given more than once")
    raw = values[0]
    if not LINES_VALUE.fullmatch(raw) or int(raw) > MAX_LINES:
        raise json_error(400, f"lines: expected a whole number from 0 to {MAX_LINES}, got {raw!r}")
    return name, int(raw)


class LineBudget:
    """Keeps the first snapshot (and start-up backlog that comes later) to the last N lines."""

    def __init__(self, count: int) -> None:
        self.left = count
        self.is_snapshot = True  # the hub's first chunk is the hello plus recent history

    def lines(self, events: list[SSEEvent]) -> list[str]:
        """The lines of a chunk's log events that are due."""
        is_snapshot, self.is_snapshot = self.is_snapshot, False
        due: list[str] = []
        for event in events:
            payload: Any = event.json() if event.type == LOG else None
            if not isinstance(payload, dict) or not isinstance(payload.get("lines"), list):
                continue
            lines = [str(line) for line in payload["lines"]]
            if is_snapshot or payload.get("backlog"):
                lines = lines[len(lines) - self.left :] if self.left else []
                if not is_snapshot:
                    self.left -= len(lines)
            due += lines
        if is_snapshot:
            due = due[len(due) - self.left :] if self.left else []
            self.left -= len(due)
        return due


async def tail_source(request: web.Request) -> web.StreamResponse:
    """GET /tail/{name}?lines=N: text/plain, one log line per line; ends at shutdown."""
    name, count = parse_tail_query(request)
    resp = web.StreamResponse()
    resp.content_type = "text/plain"
    resp.charset = "utf-8"
    # Proxies must neither cache, compress nor buffer it; nginx reads X-Accel-Buffering.
    resp.headers["Cache-Control"] = "no-cache, no-transform"
    resp.headers["X-Accel-Buffering"] = "no"
    await resp.prepare(request)
    parser, budget = SSEParser(), LineBudget(count)
    selector = Selector(frozenset({LOG}), frozenset({name}))
    async with request.app[HUB].subscribe(selector) as chunks:
        async for chunk in chunks:  # ends when the hub closes at shutdown
            lines = budget.lines(parser.feed(chunk))
            text = "".join(f"{line}\n" for line in lines)
            if text and not await write_chunk(request, resp, text.encode("utf-8", "replace")):
                break
    return resp
