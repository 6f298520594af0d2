"""What every request passes through: JSON errors, security headers (CSP), HTTP Basic
authentication when a users file is configured, and without one a check of the Host header
against DNS rebinding."""

from __future__ import annotations

import asyncio
import ipaddress
import math
from collections.abc import Awaitable, Callable, Collection

from aiohttp import hdrs, web

from monitor.http.errors import json_error
from monitor.http.headers import SECURITY_HEADERS, SERVER
from monitor.http.keys import AUTH

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

AUTH_CHALLENGE = 'Basic realm="sse-monitor", charset="UTF-8"'
OPEN_ROUTES = frozenset({"healthz"})  # answered without credentials


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Headers every response carries, streams and static files included."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    response.headers["Server"] = SERVER


def send_deadline(timeout_s: float) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Cut the connection of a client that has not taken a response within `timeout_s` of
    its handler returning it: one that never reads would otherwise pin the body (and the
    connection) for as long as it likes. Streams, prepared by their handlers, keep their own
    deadline per write."""

    @web.middleware
    async def send_in_time(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        transport, task = request.transport, asyncio.current_task()
        if not response.prepared and transport is not None and task is not None:
            # aiohttp sends the response in this same task, after the middlewares return.
            deadline = asyncio.get_running_loop().call_later(timeout_s, transport.abort)
            task.add_done_callback(lambda _: deadline.cancel())
        return response

    return send_in_time


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
    """HTTP Basic on everything but OPEN_ROUTES; 429 for an address with too many failures or
    checks in progress, 503 while the password checks are all busy. A request (a stream) is
    cut off if its user is removed or given a new password while it runs."""
    if request.match_info.route.name in OPEN_ROUTES:
        return await handler(request)
    auth = request.app[AUTH]
    verdict = await auth.authenticate(request.headers.get(hdrs.AUTHORIZATION), request.remote or "")
    if verdict.ok:
        transport = request.transport
        done = auth.open_request(verdict.user, transport.abort if transport else lambda: None)
        try:
            return await handler(request)
        finally:
            done()
    if verdict.retry_after_s > 0:
        retry = str(math.ceil(verdict.retry_after_s))
        raise json_error(verdict.status, verdict.message, headers={"Retry-After": retry})
    raise json_error(401, verdict.message, headers={"WWW-Authenticate": AUTH_CHALLENGE})


def host_check(allowed: Collection[str]) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Refuse (403) a request whose Host is not loopback, the address it came in on, or one of
    `allowed`: without authentication, a page on a domain that resolves to 127.0.0.1 (DNS
    rebinding, an ssh -L tunnel) could otherwise read every log through the browser."""

    @web.middleware
    async def check_host(request: web.Request, handler: Handler) -> web.StreamResponse:
        host = request.headers.get(hdrs.HOST)
        if request.match_info.route.name in OPEN_ROUTES or is_allowed_host(host, request, allowed):
            return await handler(request)
        shown = (host or "")[:100]
        raise json_error(
            403,
            f"host {shown!r} is not one this server answers without authentication; "
            "serve with --allowed-host NAME (or a users file) to reach it by that name",
        )

    return check_host


def is_allowed_host(host: str | None, request: web.Request, allowed: Collection[str]) -> bool:
    """True for no Host at all (no browser sends that), a loopback name or address, the local
    address the connection came in on, or a name in `allowed`; port ignored."""
    if host is None:
        return True
    name = host_name(host)
    if name is None:
        return False
    if name == "localhost" or name in allowed:
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False  # a name: only a configured one is trusted
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    local = sockname[0] if isinstance(sockname, tuple) else None
    return address.is_loopback or (local is not None and name == local.lower())


def host_name(host: str) -> str | None:
    """The name in a Host header, lowercase, without port or brackets; None if malformed."""
    host = host.strip().lower()
    if host.startswith("["):  # an IPv6 address: [::1]:8765
        name, sep, rest = host[1:].partition("]")
        port = rest.removeprefix(":")
        if not sep or (rest and (rest == port or not port.isdigit())):
            return None
        return name or None
    name, _, port = host.partition(":")
    if port and not port.isdigit():
        return None
    return name.rstrip(".") or None
