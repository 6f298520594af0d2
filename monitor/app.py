"""The web layer: create_app() wires the hub and sources to routes, pages and the SSE stream."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web
from aiohttp_sse import EventSourceResponse
from prometheus_client import CollectorRegistry

from monitor import __version__
from monitor.alerts import AlertEngine, parse_rules
from monitor.config import Config
from monitor.events import STREAM_TYPES
from monitor.exporter import build_registry, render
from monitor.hub import EventHub, Selector
from monitor.sampler import MetricsSampler
from monitor.sources import Source, supervise
from monitor.tailer import FileTailer, TailOptions

HUB = web.AppKey("hub", EventHub)
CONFIG = web.AppKey("config", Config)
SOURCES = web.AppKey("sources", list[Source])
TEMPLATES = web.AppKey("templates", jinja2.Environment)
STARTED = web.AppKey("started", float)
PROMETHEUS = web.AppKey("prometheus", CollectorRegistry)
ALERTS = web.AppKey("alerts", AlertEngine)

# A client whose socket accepts nothing for this long is cut off (and TCP_USER_TIMEOUT is set
# to it), so a vanished peer does not hold a handler forever.
SEND_TIMEOUT_S = 60.0
EVENTS_PARAMS = ("types", "sources", "last_event_id")
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


def find_web_dir() -> Path:
    """The templates and static assets: inside the installed package, or the checkout's web/."""
    here = Path(__file__).resolve().parent
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
    sampler = MetricsSampler(config.interval_s, process_interval_s=config.process_interval_s)
    return [sampler, *tailers]


def create_app(config: Config, *, sources: list[Source] | None = None) -> web.Application:
    """The aiohttp application; `sources` replaces the configured ones (tests use this)."""
    web_dir = find_web_dir()
    app = web.Application(middlewares=[json_errors])
    app[CONFIG] = config
    app[HUB] = EventHub(
        max_events=config.buffer_events,
        max_bytes=config.buffer_bytes,
        history_events=config.history_events,
    )
    # Rules observe every publish, so they are in place before any source starts.
    app[ALERTS] = AlertEngine(app[HUB], parse_rules(config.alerts, [s.name for s in config.logs]))
    app[HUB].add_observer(app[ALERTS].observe)
    app[SOURCES] = make_sources(config) if sources is None else sources
    app[STARTED] = time.time()
    # Read at scrape time: SOURCES holds the sampler too, and only tailers have log counters.
    app[PROMETHEUS] = build_registry(
        app[HUB], lambda: [s for s in app[SOURCES] if isinstance(s, FileTailer)]
    )
    app[TEMPLATES] = jinja2.Environment(
        loader=jinja2.FileSystemLoader(web_dir / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    app.cleanup_ctx.append(run_sources)
    app.on_shutdown.append(close_hub)
    app.on_response_prepare.append(security_headers)
    app.router.add_get("/", index)
    app.router.add_get("/events", events)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/sources", api_sources)
    app.router.add_get("/metrics", prometheus_metrics)
    # follow_symlinks stays off: the handler cannot reach outside web/static.
    app.router.add_static("/static", web_dir / "static", name="static", append_version=True)
    return app


async def run_sources(app: web.Application) -> AsyncIterator[None]:
    """Start every source under supervision; cancel them all at cleanup."""
    hub = app[HUB]
    tasks = [asyncio.create_task(supervise(s, hub), name=s.name) for s in app[SOURCES]]
    yield
    for task in tasks:
        task.cancel()
    for task in tasks:
        with suppress(asyncio.CancelledError):
            await task


async def close_hub(app: web.Application) -> None:
    """End every open stream, so shutdown does not wait on long-lived handlers."""
    app[HUB].close()


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Headers every response carries, streams and static files included."""
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Frame-Options", "DENY")


def json_error(status: int, message: str, **extra: Any) -> web.HTTPException:
    """An HTTP error whose body is `{"error": message, ...}`."""
    body = json.dumps({"error": message, **extra})
    exc_class = web.HTTPBadRequest if status == 400 else web.HTTPException
    exc = exc_class(text=body, content_type="application/json")
    exc.set_status(status)
    return exc


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


def _names(request: web.Request, key: str, known: list[str]) -> frozenset[str] | None:
    raw = request.query.getall(key, [])
    if not raw:
        return None
    if len(raw) > 1:
        raise json_error(400, f"{key}: given more than once; separate values with commas")
    names = [n.strip() for n in raw[0].split(",") if n.strip()]
    if not names:
        raise json_error(400, f"{key}: empty; give one or more of {', '.join(known)}", known=known)
    for name in names:
        if name not in known:
            what = "event type" if key == "types" else "source"
            raise json_error(400, f"unknown {what} {name!r}", known=known)
    return frozenset(names)


def parse_events_query(request: web.Request) -> tuple[Selector, str | None]:
    """The client's selection and resume point; a 400 with a JSON body if it makes no sense."""
    for key in request.query:
        if key not in EVENTS_PARAMS:
            raise json_error(400, f"unknown query parameter {key!r}", allowed=list(EVENTS_PARAMS))
    types = _names(request, "types", sorted(STREAM_TYPES))
    sources = _names(request, "sources", [s.name for s in request.app[CONFIG].logs])
    last_id = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
    return Selector(types or STREAM_TYPES, sources), last_id


def hello_payload(app: web.Application) -> dict[str, Any]:
    """What a client needs to know about this server before its first event."""
    config = app[CONFIG]
    return {
        "host": socket.gethostname(),
        "version": __version__,
        "run_id": app[HUB].run_id,
        "interval_s": config.interval_s,
        "sources": [{"name": s.name, "kind": "log"} for s in config.logs],
    }


async def events(request: web.Request) -> web.StreamResponse:
    """GET /events: the typed SSE stream, resumable by Last-Event-ID."""
    selector, last_id = parse_events_query(request)  # 400s happen before the stream starts
    config = request.app[CONFIG]
    resp = EventSourceResponse(ping_interval=config.heartbeat_s, send_timeout=SEND_TIMEOUT_S)
    # Proxies must neither cache nor transform (compress, buffer) the stream.
    resp.headers["Cache-Control"] = "no-cache, no-transform"
    await resp.prepare(request)
    async with resp:  # stops aiohttp-sse's heartbeat task on the way out
        hub = request.app[HUB]
        if await _write(request, resp, f"retry: {config.retry_ms}\n\n".encode()):
            hello = hello_payload(request.app)
            async with hub.subscribe(selector, last_event_id=last_id, hello=hello) as chunks:
                async for chunk in chunks:  # ends when the hub closes at shutdown
                    if not await _write(request, resp, chunk):
                        break
    return resp


async def _write(request: web.Request, resp: web.StreamResponse, data: bytes) -> bool:
    """Write one chunk; False if the client is gone or stopped reading."""
    try:
        async with asyncio.timeout(SEND_TIMEOUT_S):
            await resp.write(data)
        return True
    except ConnectionResetError:
        return False
    except TimeoutError:
        # A peer that reads nothing never drains the buffer; a graceful close would block too.
        if request.transport is not None:
            request.transport.abort()
        return False


async def index(request: web.Request) -> web.Response:
    """GET /: the dashboard page."""
    app = request.app
    static = app.router["static"]
    page_config = {"events_url": "/events", "version": __version__}
    html = (
        app[TEMPLATES]
        .get_template("dashboard.html")
        .render(
            title=f"sse-monitor · {socket.gethostname()}",
            host=socket.gethostname(),
            static=lambda name: str(static.url_for(filename=name)),
            page_config=json.dumps(page_config),
        )
    )
    return web.Response(text=html, content_type="text/html")


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
    listed += [{"name": n, "kind": "log"} for n in paths if n not in {x["name"] for x in listed}]
    for item in listed:
        if item["name"] in paths:
            item["path"] = paths[item["name"]]
    for item in listed:
        item["status"] = statuses.get(item["name"], {"state": "starting", "detail": ""})
    return web.json_response(listed)


async def prometheus_metrics(request: web.Request) -> web.Response:
    """GET /metrics: Prometheus text format; psutil reads take a millisecond, so off the loop."""
    body, content_type = await asyncio.to_thread(render, request.app[PROMETHEUS])
    # web.Response(content_type=...) refuses a value with a charset: set the header itself.
    return web.Response(body=body, headers={"Content-Type": content_type})
