"""Which host a request is about. A server without --redis watches one host: `?host=` may
name it, nothing else. A fleet server (--redis) answers for any host in Redis, named by
`?host=`; without it, the endpoints that need one answer 400 with the hosts known."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from monitor.http.errors import json_error, one_param
from monitor.http.keys import CONFIG, FLEET, HUB, WATCH
from monitor.hub.interface import Subscriptions


@dataclass(frozen=True, slots=True)
class HostTarget:
    """The host a request reads: its events (a hub's Subscriptions), what a client learns
    first about it, and its log sources' names."""

    name: str
    hub: Subscriptions
    hello: dict[str, Any]
    log_names: list[str]
    is_local: bool  # this server's own hub (its sources, its history); False: from Redis


def host_target(request: web.Request) -> HostTarget:
    """The request's host, from `?host=`; 400 (or 404) with a JSON body listing the hosts."""
    app = request.app
    name = one_param(request, "host")
    fleet = app.get(FLEET)
    if fleet is None:
        own = app[WATCH].host
        if name is not None and name != own:
            raise json_error(404, f"unknown host {name!r}: this server watches {own}", hosts=[own])
        hello = app[WATCH].hello | {"run_id": app[HUB].run_id}
        return HostTarget(own, app[HUB], hello, app[CONFIG].log_names(), True)
    known = fleet.names()
    if name is None:
        raise json_error(400, "host: give ?host=NAME, one of the fleet's hosts", hosts=known)
    view = fleet.view(name)
    if view is None:
        raise json_error(404, f"unknown host {name!r}", hosts=known)
    hello = dict(fleet.hosts[name].hello) | {"host": name, "run_id": view.run_id}
    hello.setdefault("sources", [])
    names = [s["name"] for s in hello["sources"] if isinstance(s, dict) and "name" in s]
    return HostTarget(name, view, hello, names, False)
