"""The JSON endpoints (/healthz, /api/...) and Prometheus' /metrics."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp import web

from monitor import __version__
from monitor.client.printer import SSEParser
from monitor.http.keys import (
    CONFIG,
    HISTORY,
    HUB,
    PROMETHEUS,
    SOURCES,
    STARTED,
    json_error,
    reject_unknown_params,
)
from monitor.http.stream import hello_payload
from monitor.hub.memory import Selector
from monitor.metrics.history import parse_window


async def healthz(request: web.Request) -> web.Response:
    """GET /healthz: liveness, with a few figures."""
    hub = request.app[HUB]
    return web.json_response(
        {
            "status": "ok",
            "version": __version__,
            "run_id": hub.run_id,
            "uptime_s": round(time.time() - request.app[STARTED], 3),
            "clients": hub.subscribers,
            "events_published": hub.published,
        }
    )


async def api_sources(request: web.Request) -> web.Response:
    """GET /api/sources: every configured source with its latest status."""
    statuses = request.app[HUB].statuses()
    paths = {s.name: s.path for s in request.app[CONFIG].logs}
    listed: list[dict[str, Any]] = [{"name": s.name, "kind": s.kind} for s in request.app[SOURCES]]
    names = request.app[CONFIG].log_names()
    listed += [{"name": n, "kind": "log"} for n in names if n not in {x["name"] for x in listed}]
    for item in listed:
        if item["name"] in paths:
            item["path"] = paths[item["name"]]
    for item in listed:
        item["status"] = statuses.get(item["name"], {"state": "starting", "detail": ""})
    return web.json_response(listed)


async def prometheus_metrics(request: web.Request) -> web.Response:
    """GET /metrics: Prometheus text format; psutil reads take a millisecond, so off the loop."""
    from monitor.http.prometheus import render  # with prometheus-client, at the first scrape

    body, content_type = await asyncio.to_thread(render, request.app[PROMETHEUS]())
    # web.Response(content_type=...) refuses a value with a charset: set the header itself.
    return web.Response(body=body, headers={"Content-Type": content_type})


async def api_history(request: web.Request) -> web.Response:
    """GET /api/history?window=15m&keys=a,b: chart data, full resolution up to the history's
    full_s, per-bucket min/avg/max beyond."""
    reject_unknown_params(request, ("window", "keys"))
    try:
        window_s = parse_window(request.query.get("window", "15m"))
    except ValueError as exc:
        raise json_error(400, str(exc)) from None
    keys = [k.strip() for k in request.query.get("keys", "").split(",") if k.strip()]
    data = request.app[HISTORY].query(window_s, keys or None)
    # A day of every series is ~1 MB of JSON: encode it off the loop.
    body = await asyncio.to_thread(json.dumps, data, separators=(",", ":"))
    return web.Response(text=body, content_type="application/json")


async def api_state(request: web.Request) -> web.Response:
    """GET /api/state: what a new stream starts with (hello, then recent history), as JSON.

    A dashboard tab that shares another tab's stream starts from this, then applies the
    forwarded events newer than its last id.
    """
    snapshot = request.app[HUB].snapshot(Selector(), hello_payload(request.app), None)
    # Hundreds of metrics events are ~1 MB: parse and encode off the loop.
    body = await asyncio.to_thread(_state_json, snapshot)
    return web.Response(text=body, content_type="application/json")


def _state_json(snapshot: bytes) -> str:
    # Each frame's data line is already one line of JSON, encoded once at publish: splice it
    # in rather than decode and encode it again.
    events = ",".join(
        f'{{"type":{json.dumps(e.type)},"id":{json.dumps(e.id)},"data":{e.data}}}'
        for e in SSEParser().feed(snapshot)
    )
    return f'{{"events":[{events}]}}'
