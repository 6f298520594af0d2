"""Serving an app: aiohttp's runner, and the site it listens on (a bound port, or the socket
systemd handed over)."""

from __future__ import annotations

import logging
import socket
import ssl
import time

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from monitor.http.connections import ConnectionGuard, GuardedRunner


class BadRequestLog(logging.Filter):
    """aiohttp logs a request it cannot parse as an ERROR with a traceback and the offending
    bytes (an Authorization header's credentials, megabytes of an oversized one): make it one
    WARNING line with only the reason, at most one every RATE_S seconds, counting the rest."""

    RATE_S = 10.0

    def __init__(self) -> None:
        super().__init__()
        self._last = -self.RATE_S
        self._dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        now = time.monotonic()
        if now - self._last < self.RATE_S:
            self._dropped += 1
            return False
        # The reason is the message up to its first colon; what follows quotes the bytes.
        reason = (str(exc.message or "").split(":", 1)[0].splitlines() or ["?"])[0][:100]
        more = f" ({self._dropped} more since the last such line)" if self._dropped else ""
        self._last, self._dropped = now, 0
        peer = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
        record.msg, record.args = "bad request from %s: %s%s", (peer, reason, more)
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info = record.exc_text = None
        return True


def make_runner(
    app: web.Application,
    *,
    shutdown_timeout_s: float,
    idle_timeout_s: float,
    guard: ConnectionGuard,
    tls: ssl.SSLContext | None = None,
) -> GuardedRunner:
    """A runner that leaves signals to the caller, admits connections through `guard`, ends
    handlers of gone clients, and closes a connection idle for idle_timeout_s (aiohttp's
    default is an hour; its clock also runs while a request's headers trickle in, so it is
    the header deadline too; with `tls`, it is also the handshake's deadline)."""
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, BadRequestLog) for f in server_log.filters):
        server_log.addFilter(BadRequestLog())
    return GuardedRunner(
        app,
        guard,
        tls=tls,
        handshake_timeout_s=idle_timeout_s,
        handle_signals=False,
        shutdown_timeout=shutdown_timeout_s,
        # Cancel a handler when its client disconnects: an idle stream would otherwise
        # hold its subscription until its next write.
        handler_cancellation=True,
        keepalive_timeout=idle_timeout_s,
    )


def url_of(address: object, scheme: str = "http") -> str:
    """scheme://host:port for a socket address (IPv6 in brackets)."""
    host, port = address[0], address[1]  # type: ignore[index]
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


async def start_site(
    runner: GuardedRunner, host: str, port: int, sock: socket.socket | None
) -> list[str]:
    """Listen on `sock` if given, else bind host:port; the URLs it is reachable at. OSError
    if it cannot listen. (The runner does TLS, if any: the site listens in plain TCP.)"""
    site: web.BaseSite
    if sock is not None:
        site = web.SockSite(runner, sock)
    else:
        site = web.TCPSite(runner, host, port)
    await site.start()
    scheme = "https" if runner.tls else "http"
    return [
        url_of(address, scheme) if isinstance(address, tuple) else str(address)
        for address in runner.addresses
    ]
