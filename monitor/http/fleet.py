"""A fleet server's own endpoints: GET /api/hosts (every host, its state and figures) and
GET /fleet/events (the fleet page's stream: every host's latest state in its `hello`, then
a `host` event whenever one changes). Per-host endpoints are the single host's, with
`?host=` (hosts.py)."""

from __future__ import annotations

from aiohttp import web

from monitor.http.errors import reject_unknown_params
from monitor.http.hosts import HostTarget
from monitor.http.keys import FLEET
from monitor.http.stream import StreamSlot, stream_events
from monitor.hub.interface import Selector


async def api_hosts(request: web.Request) -> web.Response:
    """GET /api/hosts: {"hosts": [{name, state, last_seen, cpu, memory, load, disk,
    alerts, spark}]}, by name."""
    reject_unknown_params(request, ())
    return web.json_response({"hosts": request.app[FLEET].listing()})


async def fleet_events(request: web.Request) -> web.StreamResponse:
    """GET /fleet/events: SSE; a reconnect starts again from a fresh `hello` (the state of
    every host is the whole history a fleet page needs)."""
    reject_unknown_params(request, ())
    fleet = request.app[FLEET]
    target = HostTarget("", fleet.hub, {}, [], is_local=False)
    selector = Selector(frozenset({"host"}))
    with StreamSlot(request):
        return await stream_events(
            request, target, selector, None, lambda: {"hosts": fleet.listing()}
        )
