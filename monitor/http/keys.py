"""The application's typed keys: what the web modules share through the app."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import jinja2
from aiohttp import web

from monitor.alerts.engine import AlertEngine
from monitor.config import Config
from monitor.host import Watch
from monitor.http.connections import ConnectionGuard
from monitor.http.heartbeat import Heartbeat
from monitor.http.limits import Caps
from monitor.http.shared import SharedBodies
from monitor.hub.interface import Hub
from monitor.metrics.history import MetricsHistory
from monitor.notify.notifier import Notifier
from monitor.sources.supervisor import Source
from monitor.state import StateDir

if TYPE_CHECKING:  # imported when first used, not at start: a scrape, a users file, Redis
    from prometheus_client import CollectorRegistry

    from monitor.fleet.hosts import Fleet
    from monitor.http.auth import Authenticator

HUB = web.AppKey("hub", Hub)
CONFIG = web.AppKey("config", Config)
SOURCES = web.AppKey("sources", list[Source])
TEMPLATES = web.AppKey("templates", jinja2.Environment)
STARTED = web.AppKey("started", float)
PROMETHEUS = web.AppKey[Callable[[], "CollectorRegistry"]]("prometheus")
ALERTS = web.AppKey("alerts", AlertEngine)
HISTORY = web.AppKey("history", MetricsHistory)
AUTH: web.AppKey[Authenticator] = web.AppKey("auth")  # set only with a users file
LIMITER = web.AppKey("limiter", Caps)
CONNECTIONS = web.AppKey("connections", ConnectionGuard)
BODIES = web.AppKey("bodies", SharedBodies)
HEARTBEAT = web.AppKey("heartbeat", Heartbeat)  # pings every open SSE stream
STATE = web.AppKey("state", StateDir)  # set only with a state directory
NOTIFIER = web.AppKey("notifier", Notifier)
WATCH = web.AppKey("watch", Watch)  # what watches this host; HUB, SOURCES, ... are its parts
FLEET: web.AppKey[Fleet] = web.AppKey("fleet")  # set only with --redis: every host in Redis
