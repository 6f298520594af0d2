"""The JSON endpoints (/healthz, /api/...) and Prometheus' /metrics."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp import web

from monitor import __version__
from monitor.duration import parse_duration
from monitor.http.errors import json_error, reject_unknown_params
from monitor.http.hosts import host_target
from monitor.http.keys import (
    BODIES,
    CONFIG,
    FLEET,
    HISTORY,
    HUB,
    NOTIFIER,
    PROMETHEUS,
    SOURCES,
    STARTED,
)
from monitor.hub.events import STATUS, Frame
from monitor.hub.interface import Selector

SLICE_BYTES = 64 * 1024


async def healthz(request: web.Request) -> web.Response:
    """GET /healthz: liveness, with a few figures."""
    hub = request.app[HUB]
    stats = hub.stats()
    return web.json_response(
        {
            "status": "ok",
            "version": __version__,
            "run_id": hub.run_id,
            "uptime_s": round(time.time() - request.app[STARTED], 3),
            "clients": stats.subscribers,
            "events_published": stats.published,
        }
    )


async def api_sources(request: web.Request) -> web.Response:
    """GET /api/sources: every configured source with its latest status."""
    reject_unknown_params(request, ("host",))
    target = host_target(request)
    statuses = target.hub.latest(STATUS)
    listed: list[dict[str, Any]] = [{"name": "metrics", "kind": "metrics"}]
    paths: dict[str, str] = {}
    if target.is_local:
        paths = {s.name: s.path for s in request.app[CONFIG].logs}
        listed = [{"name": s.name, "kind": s.kind} for s in request.app[SOURCES]]
    names = target.log_names
    listed += [{"name": n, "kind": "log"} for n in names if n not in {x["name"] for x in listed}]
    for item in listed:
        if item["name"] in paths:
            item["path"] = paths[item["name"]]
    for item in listed:
        item["status"] = statuses.get(item["name"], {"state": "starting", "detail": ""})
    return web.json_response(listed)


async def api_notify(request: web.Request) -> web.Response:
    """GET /api/notify: each notification target's state (no URL paths: they hold tokens)."""
    reject_unknown_params(request, ())
    return web.json_response({"targets": request.app[NOTIFIER].view()})


async def prometheus_metrics(request: web.Request) -> web.Response:
    """GET /metrics: Prometheus text format; psutil reads take a millisecond, so off the loop."""
    from monitor.http.prometheus import render  # with prometheus-client, at the first scrape

    body, content_type = await asyncio.to_thread(render, request.app[PROMETHEUS]())
    # web.Response(content_type=...) refuses a value with a charset: set the header itself.
    return web.Response(body=body, headers={"Content-Type": content_type})


async def api_history(request: web.Request) -> web.StreamResponse:
    """GET /api/history?window=15m&keys=a,b: chart data, full resolution up to the history's
    full_s, per-bucket min/avg/max beyond."""
    reject_unknown_params(request, ("window", "keys", "host"))
    target = host_target(request)
    try:
        window_s = parse_duration(request.query.get("window", "15m"))
    except ValueError as exc:
        raise json_error(400, f"window: {exc}") from None
    keys = tuple(k.strip() for k in request.query.get("keys", "").split(",") if k.strip())
    if not target.is_local:
        history = await request.app[FLEET].history(target.name)
    else:
        history = request.app[HISTORY]

    def build() -> bytes:  # a day of every series is ~1 MB of JSON: built off the loop, once
        return json.dumps(data, separators=(",", ":")).encode()

    # The query copies the columns on the loop, where the history changes; only then encode.
    data = history.query(window_s, keys or None)
    key = ("history", target.name, window_s, keys, history.newest_ts)
    return await send_shared(request, await request.app[BODIES].get(key, build))


async def api_state(request: web.Request) -> web.StreamResponse:
    """GET /api/state: what a new stream starts with (hello, then recent history), as JSON.

    A dashboard tab that shares another tab's stream starts from this, then applies the
    forwarded events newer than its last id.
    """
    reject_unknown_params(request, ("host",))
    target = host_target(request)
    frames = await target.hub.state(Selector(), target.hello)
    # Hundreds of metrics events are ~1 MB: joined off the loop, once per published event
    # (once per newest event of a fleet's host).
    if target.is_local:
        key: tuple[Any, ...] = ("state", target.hub.run_id, request.app[HUB].stats().published)
    else:
        key = ("state", target.name, frames[0].id, len(frames))
    body = await request.app[BODIES].get(key, lambda: _state_json(frames))
    return await send_shared(request, body)


def _state_json(frames: list[Frame]) -> bytes:
    # Each frame's payload is already one line of JSON, encoded once at publish: splice it
    # in rather than decode and encode it again.
    events = b",".join(
        b'{"type":%b,"id":%b,"data":%b}'
        % (json.dumps(f.type).encode(), json.dumps(f.id).encode(), f.json)
        for f in frames
    )
    return b'{"events":[%b]}' % events


async def send_shared(request: web.Request, body: bytes) -> web.StreamResponse:
    """A shared JSON body, sent in slices as the socket takes them, within the send deadline.

    asyncio's transport copies whatever it cannot send at once: handed the whole body, a
    client that reads nothing would hold a private copy of megabytes. In slices it holds at
    most a slice or two beyond the kernel's buffer.
    """
    resp = web.StreamResponse(headers={"Content-Type": "application/json; charset=utf-8"})
    resp.content_length = len(body)
    await resp.prepare(request)
    view = memoryview(body)
    try:
        async with asyncio.timeout(request.app[CONFIG].stream.send_timeout_s):
            for start in range(0, len(body), SLICE_BYTES):
                await resp.write(view[start : start + SLICE_BYTES])
            await resp.write_eof()
    except TimeoutError:
        if request.transport is not None:
            request.transport.abort()  # a graceful close would wait for the unread bytes
    except ConnectionResetError:
        pass
    return resp
