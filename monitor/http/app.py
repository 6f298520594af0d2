"""The composition root: create_app() builds the hub, sources, consumers and routes from a
Config, and runs the background tasks for the app's lifetime."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from functools import cache
from typing import TYPE_CHECKING, Any

from aiohttp import web

from monitor.config import Config, ConfigError
from monitor.host import build_watch, running
from monitor.http.api import (
    api_history,
    api_notify,
    api_sources,
    api_state,
    healthz,
    prometheus_metrics,
)
from monitor.http.connections import ConnectionGuard
from monitor.http.fleet import api_hosts, fleet_events
from monitor.http.heartbeat import Heartbeat
from monitor.http.keys import (
    ALERTS,
    AUTH,
    BODIES,
    CONFIG,
    CONNECTIONS,
    FLEET,
    HEARTBEAT,
    HISTORY,
    HUB,
    LIMITER,
    NOTIFIER,
    PROMETHEUS,
    SOURCES,
    STARTED,
    STATE,
    WATCH,
)
from monitor.http.limits import Caps
from monitor.http.logs import api_logs
from monitor.http.middleware import (
    host_check,
    json_errors,
    require_auth,
    security_headers,
    send_deadline,
)
from monitor.http.page import add_page, find_web_dir
from monitor.http.proxy import forwarded_middleware, parse_networks
from monitor.http.shared import SharedBodies
from monitor.http.stream import events
from monitor.http.tail import tail_source
from monitor.hub import create_hub
from monitor.sources.supervisor import Source
from monitor.state import StateDir
from monitor.tasks import cancel_and_wait

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from monitor.fleet.hosts import Fleet

log = logging.getLogger(__name__)


def lazy_registry(app: web.Application) -> Callable[[], CollectorRegistry]:
    """The app's Prometheus registry, built at the first scrape: a server nobody scrapes does
    not load prometheus-client at all (about 0.7 MB of its 45 MB)."""

    @cache
    def registry() -> CollectorRegistry:
        from monitor.http.prometheus import Counters, build_registry

        alerts, auth, bodies = app[ALERTS], app.get(AUTH), app[BODIES]
        connections, streams = app[CONNECTIONS], app[LIMITER]
        counters: Counters = {
            "sse_monitor_connections": ("Open HTTP connections.", lambda: connections.total),
            "sse_monitor_connections_refused_total": (
                "Connections refused (503) by max_connections or max_connections_per_address.",
                lambda: connections.refused,
            ),
            "sse_monitor_streams_refused_total": (
                "Streams refused (503) by max_clients or max_clients_per_address.",
                lambda: streams.refused,
            ),
            "sse_monitor_alert_lines_skipped_total": (
                "Log lines past an event's match budget, not searched by alert rules.",
                lambda: alerts.lines_skipped,
            ),
            "sse_monitor_shared_body_builds_total": (
                "Bodies of /api/state and /api/history built (each shared by all who asked).",
                lambda: bodies.builds,
            ),
        }
        if auth is not None:
            counters["sse_monitor_password_checks_total"] = (
                "Passwords checked with bcrypt (cache misses: each costs tens of ms of CPU).",
                lambda: auth.verifications,
            )
        return build_registry(app[HUB], app[SOURCES], app[HISTORY], counters, app[NOTIFIER].view)

    return registry


def create_app(config: Config, *, sources: list[Source] | None = None) -> web.Application:
    """The aiohttp application; `sources` replaces the configured ones (tests use this)."""
    web_dir = find_web_dir()
    middlewares: list[Any] = [send_deadline(config.stream.send_timeout_s), json_errors]
    if config.trusted_proxies:
        middlewares.append(forwarded_middleware(parse_networks(config.trusted_proxies)))
    if config.users_file:
        middlewares.append(require_auth)
    else:
        middlewares.append(host_check(frozenset(config.allowed_hosts)))
    app = web.Application(middlewares=middlewares)
    app[CONFIG] = config
    if config.users_file:
        # Here, not at the top: without a users file the server does without it (~0.2 MB).
        from monitor.http.auth import Authenticator
        from monitor.http.users import UsersFile

        # A bad users file raises ConfigError here, before anything starts.
        app[AUTH] = Authenticator(UsersFile(config.users_file))
        app.on_cleanup.append(close_auth)
    app[LIMITER] = Caps("streams", config.stream.max_clients, config.stream.max_clients_per_address)
    stream = config.stream
    state = StateDir.open(config.state_dir) if config.state_dir else None
    if state is not None:
        app[STATE] = state
        app.on_cleanup.append(close_state)
    app[CONNECTIONS] = ConnectionGuard(
        max(stream.max_connections, stream.max_clients),
        max(stream.max_connections_per_address, stream.max_clients_per_address),
    )
    app[BODIES] = SharedBodies()
    app[HEARTBEAT] = Heartbeat(stream.heartbeat_s, stream.send_timeout_s)
    watch = app[WATCH] = build_watch(config, state=state, sources=sources)
    app[HUB], app[ALERTS], app[NOTIFIER] = watch.hub, watch.alerts, watch.notifier
    assert watch.history is not None  # a server keeps the charts' columns itself
    app[HISTORY], app[SOURCES] = watch.history, watch.sources
    if config.redis.url:
        app[FLEET] = make_fleet(config)
    app[STARTED] = time.time()
    app[PROMETHEUS] = lazy_registry(app)
    app.cleanup_ctx.append(run_background)
    app.on_shutdown.append(close_hub)
    app.on_response_prepare.append(security_headers)
    add_routes(app)
    add_page(app, web_dir)
    return app


def add_routes(app: web.Application) -> None:
    """The streams and the JSON and Prometheus endpoints (the page is page.py's)."""
    # No HEAD on streams: headers, then log lines on a kept-alive connection, would make a log
    # line the next response for whoever reuses it (a proxy's pool).
    app.router.add_get("/events", events, name="events", allow_head=False)
    app.router.add_get("/tail/{name}", tail_source, allow_head=False)
    app.router.add_get("/healthz", healthz, name="healthz")
    app.router.add_get("/api/sources", api_sources)
    app.router.add_get("/api/history", api_history, name="history")
    app.router.add_get("/api/state", api_state, name="state")
    app.router.add_get("/api/logs", api_logs, name="logs")
    app.router.add_get("/api/notify", api_notify, name="notify")
    app.router.add_get("/metrics", prometheus_metrics)
    if FLEET in app:
        app.router.add_get("/api/hosts", api_hosts, name="hosts")
        app.router.add_get("/fleet/events", fleet_events, name="fleet_events", allow_head=False)


def create_root(config: Config) -> web.Application:
    """The application to serve: create_app(), mounted under config.base_path if one is set."""
    app = create_app(config)
    if not config.base_path:
        return app
    # Outside the base path too: errors are JSON and every response carries the headers.
    root = web.Application(middlewares=[send_deadline(config.stream.send_timeout_s), json_errors])
    root.on_response_prepare.append(security_headers)
    root[HUB] = app[HUB]  # the server reports its clients (systemd STATUS=) from it
    root[CONNECTIONS] = app[CONNECTIONS]  # and admits connections by it
    if AUTH in app:
        root[AUTH] = app[AUTH]  # and reloads the users file on SIGHUP
    location = config.base_path + "/"

    async def to_page(request: web.Request) -> web.StreamResponse:
        raise web.HTTPPermanentRedirect(location)

    # Before the sub-app, which would otherwise claim "/monitor" and answer 404.
    root.router.add_get(config.base_path, to_page)
    root.add_subapp(config.base_path, app)
    return root


async def close_state(app: web.Application) -> None:
    """Let another server have the state directory once this one is done with it."""
    app[STATE].close()


def reload_users(app: web.Application) -> None:
    """SIGHUP: read the users file again now; without one there is nothing to reload."""
    auth = app.get(AUTH)
    if auth is None:
        log.info("SIGHUP: no users file to reload; carrying on")
    else:
        auth.reload()


def make_fleet(config: Config) -> Fleet:
    """Every host in Redis, for a fleet server; a ConfigError without the redis extra."""
    try:
        from monitor.fleet.hosts import Fleet
    except ImportError:
        raise ConfigError("--redis needs redis-py: pip install 'sse-monitor[redis]'") from None
    # The fleet page's stream: each host's latest state is in the hello (see fleet_events).
    hub = create_hub(max_events=4096, max_bytes=4 * 1024 * 1024, history_events=0)
    return Fleet(config, hub)


async def run_background(app: web.Application) -> AsyncIterator[None]:
    """Run what watches this host (history, alert rules, notifications, sources) and, with
    --redis, what follows the fleet, for the app's lifetime."""
    async with running(app[WATCH]):
        fleet = app.get(FLEET)
        tasks = [asyncio.create_task(fleet.run(), name="fleet")] if fleet else []
        try:
            yield
        finally:
            await cancel_and_wait(tasks)


async def close_auth(app: web.Application) -> None:
    """Stop the password checks' own threads."""
    await app[AUTH].close()


async def close_hub(app: web.Application) -> None:
    """End every open stream, so shutdown does not wait on long-lived handlers."""
    app[HUB].close()
    if (fleet := app.get(FLEET)) is not None:
        fleet.close()
