"""What every request passes through: JSON errors, security headers (CSP), and HTTP Basic
authentication when a users file is configured."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

from aiohttp import hdrs, web

from monitor.http.errors import json_error
from monitor.http.keys import AUTH

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
AUTH_CHALLENGE = 'Basic realm="sse-monitor", charset="UTF-8"'
OPEN_ROUTES = frozenset({"healthz"})  # answered without credentials


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Headers every response carries, streams and static files included."""
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Frame-Options", "DENY")


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Make aiohttp's own errors (404, 405, ...) JSON too, never text with details."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        raise json_error(exc.status, exc.reason) from None


@web.middleware
async def require_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
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
