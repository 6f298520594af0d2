"""What the web modules share: the typed application keys, and JSON errors."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import jinja2
from aiohttp import web

from monitor.alerts.engine import AlertEngine
from monitor.config import Config
from monitor.http.auth import Authenticator
from monitor.http.limits import StreamLimiter
from monitor.hub.memory import EventHub
from monitor.metrics.history import MetricsHistory
from monitor.sources.supervisor import Source

if TYPE_CHECKING:  # prometheus-client is imported at the first scrape, not at start
    from prometheus_client import CollectorRegistry

HUB = web.AppKey("hub", EventHub)
CONFIG = web.AppKey("config", Config)
SOURCES = web.AppKey("sources", list[Source])
TEMPLATES = web.AppKey("templates", jinja2.Environment)
STARTED = web.AppKey("started", float)
PROMETHEUS = web.AppKey[Callable[[], "CollectorRegistry"]]("prometheus")
ALERTS = web.AppKey("alerts", AlertEngine)
HISTORY = web.AppKey("history", MetricsHistory)
AUTH = web.AppKey("auth", Authenticator)  # set only when a users file is configured
LIMITER = web.AppKey("limiter", StreamLimiter)
# How long a client refused for too many streams should wait before trying again.
BUSY_RETRY_S = 5


def json_error(
    status: int, message: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> web.HTTPException:
    """An HTTP error whose body is `{"error": message, ...}`, with extra response headers."""
    body = json.dumps({"error": message, **extra})
    exc_class = web.HTTPBadRequest if status == 400 else web.HTTPException
    exc = exc_class(text=body, content_type="application/json")
    exc.set_status(status)
    exc.headers.update(headers or {})
    return exc


def reject_unknown_params(request: web.Request, allowed: Sequence[str]) -> None:
    """A 400 with a JSON body for a query parameter the endpoint does not take (a typo such
    as ?type=log would otherwise be silently ignored)."""
    for key in request.query:
        if key not in allowed:
            raise json_error(400, f"unknown query parameter {key!r}", allowed=list(allowed))
