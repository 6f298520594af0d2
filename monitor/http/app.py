"""The web layer: create_app() wires the hub and sources to routes, pages and the SSE stream."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import cache, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
from aiohttp import hdrs, web

from monitor import __version__
from monitor.alerts.engine import AlertEngine
from monitor.alerts.rules import parse_rules
from monitor.config import Config
from monitor.http.api import api_history, api_sources, api_state, healthz, prometheus_metrics
from monitor.http.auth import Authenticator, UsersFile
from monitor.http.keys import (
    ALERTS,
    AUTH,
    CONFIG,
    HISTORY,
    HUB,
    LIMITER,
    PROMETHEUS,
    SOURCES,
    STARTED,
    TEMPLATES,
    json_error,
)
from monitor.http.limits import StreamLimiter
from monitor.http.proxy import forwarded_middleware, parse_networks
from monitor.http.stream import events
from monitor.http.tail import tail_source
from monitor.hub.events import METRICS
from monitor.hub.memory import EventHub
from monitor.metrics.history import MetricsHistory
from monitor.sources.files import FileTailer, TailOptions
from monitor.sources.journal import JournalSource
from monitor.sources.sampler import MetricsSampler
from monitor.sources.supervisor import Source, cancel_and_wait, supervise

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

log = logging.getLogger(__name__)

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


def find_web_dir() -> Path:
    """The templates and static assets: inside the installed package, or the checkout's web/."""
    here = Path(__file__).resolve().parent.parent  # the monitor package
    for candidate in (here / "web", here.parent / "web"):
        if (candidate / "templates").is_dir():
            return candidate
    raise RuntimeError(f"web assets not found next to {here}; reinstall sse-monitor")


def make_sources(config: Config) -> list[Source]:
    """The sources a config asks for."""
    options = TailOptions(
        backlog_lines=config.backlog_lines,
        max_line_bytes=config.max_line_bytes,
        partial_flush_s=config.partial_flush_s,
        poll_interval_s=config.poll_interval_s,
        use_inotify=config.use_inotify,
    )
    tailers: list[Source] = [FileTailer(s.name, s.path, options) for s in config.logs]
    tailers += [
        JournalSource(
            j.name,
            j.matches,
            j.directory,
            config.backlog_lines,
            max_line_bytes=config.max_line_bytes,
        )
        for j in config.journals
    ]
    sampler = MetricsSampler(config.interval_s, process_interval_s=config.process_interval_s)
    return [sampler, *tailers]


def lazy_registry(app: web.Application) -> Callable[[], CollectorRegistry]:
    """The app's Prometheus registry, built at the first scrape: a server nobody scrapes does
    not load prometheus-client at all (about 0.7 MB of its 45 MB)."""

    @cache
    def registry() -> CollectorRegistry:
        from monitor.http.prometheus import build_registry

        # Read at scrape time: SOURCES holds the sampler too; only tailers have log counters.
        return build_registry(
            app[HUB], lambda: [s for s in app[SOURCES] if isinstance(s, FileTailer)]
        )

    return registry


def create_app(config: Config, *, sources: list[Source] | None = None) -> web.Application:
    """The aiohttp application; `sources` replaces the configured ones (tests use this)."""
    web_dir = find_web_dir()
    # A bad users file raises ConfigError here, before anything starts.
    users = UsersFile(config.users_file) if config.users_file else None
    middlewares: list[Any] = [json_errors]
    if config.trusted_proxies:
        middlewares.append(forwarded_middleware(parse_networks(config.trusted_proxies)))
    if users:
        middlewares.append(require_auth)
    app = web.Application(middlewares=middlewares)
    app[CONFIG] = config
    if users is not None:
        app[AUTH] = Authenticator(users)
    app[LIMITER] = StreamLimiter(config.max_clients, config.max_clients_per_address)
    app[HUB] = EventHub(
        max_events=config.buffer_events,
        max_bytes=config.buffer_bytes,
        history_events=config.history_events,
    )
    # Rules observe every publish, so they are in place before any source starts.
    app[ALERTS] = AlertEngine(app[HUB], parse_rules(config.alerts, config.log_names()))
    app[HUB].add_observer(app[ALERTS].observe)
    app[HISTORY] = MetricsHistory(
        full_s=config.history_full_s,
        interval_s=config.interval_s,
        bucket_s=config.history_bucket_s,
        downsampled_s=config.history_downsampled_s,
    )
    app[HUB].add_observer(partial(record_history, app[HISTORY]))
    app[SOURCES] = make_sources(config) if sources is None else sources
    app[STARTED] = time.time()
    app[PROMETHEUS] = lazy_registry(app)
    app[TEMPLATES] = jinja2.Environment(
        loader=jinja2.FileSystemLoader(web_dir / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    app.cleanup_ctx.append(run_sources)
    app.on_shutdown.append(close_hub)
    app.on_response_prepare.append(security_headers)
    app.router.add_get("/", index)
    app.router.add_get("/events", events, name="events")
    app.router.add_get("/tail/{name}", tail_source)
    app.router.add_get("/healthz", healthz, name="healthz")
    app.router.add_get("/api/sources", api_sources)
    app.router.add_get("/api/history", api_history, name="history")
    app.router.add_get("/api/state", api_state, name="state")
    app.router.add_get("/metrics", prometheus_metrics)
    # follow_symlinks stays off: the handler cannot reach outside web/static.
    app.router.add_static("/static", web_dir / "static", name="static", append_version=True)
    return app


def record_history(
    history: MetricsHistory, event_type: str, payload: dict[str, Any], _: Any
) -> None:
    """Hub observer: every metrics event goes into the charts' history."""
    if event_type == METRICS:
        try:
            history.add(payload)
        except ValueError:
            log.warning("metrics event without a usable ts; not kept in history")


def create_root(config: Config) -> web.Application:
    """The application to serve: create_app(), mounted under config.base_path if one is set."""
    app = create_app(config)
    if not config.base_path:
        return app
    root = web.Application()
    root[HUB] = app[HUB]  # the server reports its clients (systemd STATUS=) from it
    location = config.base_path + "/"

    async def to_page(request: web.Request) -> web.StreamResponse:
        raise web.HTTPPermanentRedirect(location)

    # Before the sub-app, which would otherwise claim "/monitor" and answer 404.
    root.router.add_get(config.base_path, to_page)
    root.add_subapp(config.base_path, app)
    return root


async def run_sources(app: web.Application) -> AsyncIterator[None]:
    """Start every source under supervision; cancel them all at cleanup."""
    hub = app[HUB]
    tasks = [asyncio.create_task(supervise(s, hub), name=s.name) for s in app[SOURCES]]
    yield
    await cancel_and_wait(tasks)


async def close_hub(app: web.Application) -> None:
    """End every open stream, so shutdown does not wait on long-lived handlers."""
    app[HUB].close()


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Headers every response carries, streams and static files included."""
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Frame-Options", "DENY")


@web.middleware
async def json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Make aiohttp's own errors (404, 405, ...) JSON too, never text with details."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        raise json_error(exc.status, exc.reason) from None


AUTH_CHALLENGE = 'Basic realm="sse-monitor", charset="UTF-8"'
OPEN_ROUTES = frozenset({"healthz"})  # answered without credentials


@web.middleware
async def require_auth(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """HTTP Basic on everything but OPEN_ROUTES; 429 for an address with too many failures."""
    if request.match_info.route.name in OPEN_ROUTES:
        return await handler(request)
    verdict = await request.app[AUTH].authenticate(
        request.headers.get(hdrs.AUTHORIZATION), request.remote or ""
    )
    if verdict.retry_after_s > 0:
        retry = str(math.ceil(verdict.retry_after_s))
        raise json_error(429, verdict.message, headers={"Retry-After": retry})
    if not verdict.ok:
        raise json_error(401, verdict.message, headers={"WWW-Authenticate": AUTH_CHALLENGE})
    return await handler(request)


async def index(request: web.Request) -> web.Response:
    """GET /: the dashboard page."""
    app = request.app
    static = app.router["static"]
    urls = {name: str(app.router[name].url_for()) for name in ("events", "history", "state")}
    page_config = {f"{name}_url": url for name, url in urls.items()} | {"version": __version__}
    host = socket.gethostname()
    html = (
        app[TEMPLATES]
        .get_template("dashboard.html")
        .render(
            title=f"sse-monitor · {host}",
            host=host,
            static=lambda name: str(static.url_for(filename=name)),
            page_config=json.dumps(page_config),
        )
    )
    return web.Response(text=html, content_type="text/html")
