"""GET /tail/{name}: one log source as plain text, its last lines then live, for `curl -N`."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from monitor.http.errors import count_param, json_error, reject_unknown_params
from monitor.http.hosts import HostTarget, host_target
from monitor.http.stream import StreamSlot, direct_writer, socket_writer, write_batches
from monitor.hub.events import LOG, Frame
from monitor.hub.interface import Selector

TAIL_PARAMS = ("lines", "host")
DEFAULT_LINES = 10
MAX_LINES = 10_000


def parse_tail_query(request: web.Request, target: HostTarget) -> tuple[str, int]:
    """The source name and line count; 404 or 400 with a JSON body before the stream starts."""
    reject_unknown_params(request, TAIL_PARAMS)
    known = target.log_names
    # The name only picks a configured source: it is never part of a path.
    name = request.match_info["name"]
    if name not in known:
        raise json_error(404, f"unknown source {name!r}", known=known)
    return name, count_param(request, "lines", DEFAULT_LINES, MAX_LINES)


class LineBudget:
    """Keeps the first snapshot (and start-up backlog that comes later) to the last N lines."""

    def __init__(self, count: int) -> None:
        self.left = count
        self.is_snapshot = True  # the hub's first chunk is the hello plus recent history

    def lines(self, frames: list[Frame]) -> list[str]:
        """The lines of a batch's log events that are due."""
        is_snapshot, self.is_snapshot = self.is_snapshot, False
        due: list[str] = []
        for frame in frames:
            payload: Any = json.loads(frame.json) if frame.type == LOG else None
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


class _TailText:
    """The plain text of the frame being fanned out, made once for all /tail clients:
    publish() hands every sink the same frame in turn. None for a frame the client's own task
    must see (start-up backlog: its line budget applies)."""

    def __init__(self) -> None:
        self._frame: Frame | None = None
        self._text: bytes | None = None

    def __call__(self, frame: Frame) -> bytes | None:
        if frame is not self._frame:
            self._frame, self._text = frame, None
            payload: Any = json.loads(frame.json)
            lines = payload.get("lines") if isinstance(payload, dict) else None
            if isinstance(lines, list) and not payload.get("backlog"):
                self._text = "".join(f"{line}\n" for line in lines).encode("utf-8", "replace")
        return self._text


_tail_text = _TailText()


async def tail_source(request: web.Request) -> web.StreamResponse:
    """GET /tail/{name}?lines=N: text/plain, one log line per line; ends at shutdown."""
    target = host_target(request)
    name, count = parse_tail_query(request, target)
    with StreamSlot(request):
        return await _tail(request, target, name, count)


async def _tail(
    request: web.Request, target: HostTarget, name: str, count: int
) -> web.StreamResponse:
    resp = web.StreamResponse()
    resp.content_type = "text/plain"
    resp.charset = "utf-8"
    # Proxies must neither cache, compress nor buffer it; nginx reads X-Accel-Buffering.
    resp.headers["Cache-Control"] = "no-cache, no-transform"
    resp.headers["X-Accel-Buffering"] = "no"
    await resp.prepare(request)
    budget = LineBudget(count)
    selector = Selector(frozenset({LOG}), frozenset({name}))
    sink = direct_writer(socket_writer(request, resp), _tail_text)

    def encode(frames: list[Frame]) -> bytes:
        return "".join(f"{line}\n" for line in budget.lines(frames)).encode("utf-8", "replace")

    async with target.hub.subscribe(selector, sink=sink) as batches:
        await write_batches(request, resp, batches, encode)  # ends when the hub closes
    return resp
