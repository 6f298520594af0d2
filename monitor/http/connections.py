"""Connections, before any request: caps in all and per peer address, kept below the file
descriptors the process may open, and one log line per episode of running out of them.

aiohttp accepts every connection it is offered and has no hook before the first request, so
the runner below makes aiohttp's server hand out `Connection`s: its own handler, admitted by
a `ConnectionGuard` when the connection is made. A refused connection is answered 503 and
closed without reading a byte.

With TLS, asyncio's server would call the handler only after the handshake: a client that
never finishes one would hold a descriptor for a minute, uncounted. So the site listens in
plain TCP, and a `Handshake` is admitted as the connection is accepted, then does TLS itself
(within idle_timeout_s) and hands the connection to its `Connection`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import ssl
import time
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from monitor.http.headers import SECURITY_HEADERS, SERVER
from monitor.http.limits import BUSY_RETRY_S, Caps
from monitor.sources.admission import files_fd_cap

log = logging.getLogger(__name__)

# Descriptors neither followed files nor connections may take: the listening socket, epoll,
# inotify, stdio, the journal's pipes, the users file and TLS files being re-read.
RESERVED_FDS = 32
# asyncio reports a failed accept() (EMFILE, ENFILE, ENOBUFS, ENOMEM) with this message, then
# retries the listening socket a second later, for as long as it lasts.
ACCEPT_FAILED = "socket.accept() out of system resource"
EPISODE_QUIET_S = 5.0  # without a failed accept for this long, running out of descriptors is over


def connection_budget() -> int | None:
    """Connections that fit beside followed files' share of RLIMIT_NOFILE; None if unlimited."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return None
    return max(1, soft - files_fd_cap(soft) - RESERVED_FDS)


class ConnectionGuard(Caps):
    """The caps on connections, kept within the descriptors left beside followed files, and
    the one log line per episode of running out of descriptors at accept()."""

    def __init__(self, max_total: int, max_per_address: int) -> None:
        budget = connection_budget()
        if budget is not None and budget < max_total:
            log.info(
                "connections capped at %d (max_connections %d): the limit on open files "
                "(ulimit -n, LimitNOFILE=) leaves room for no more beside followed files",
                budget,
                max_total,
            )
            max_total = budget
        super().__init__("connections", max_total, max_per_address)
        self._out_of_fds_since: float | None = None
        self._last_failure = 0.0
        self._failed_accepts = 0

    def acquire(self, address: str) -> str | None:
        self.accepted()
        return super().acquire(address)

    def accept_failed(self) -> None:
        """accept() found no file descriptor: say so once, not once a second."""
        self._failed_accepts += 1
        self._last_failure = time.monotonic()
        if self._out_of_fds_since is None:
            self._out_of_fds_since = time.monotonic()
            soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
            log.error(
                "out of file descriptors (limit %s, %d connections open): new connections "
                "wait in the listen queue until some close; raise LimitNOFILE= (ulimit -n) "
                "or lower max_connections",
                soft,
                self.total,
            )

    def accepted(self) -> None:
        """A connection got through: an episode of failed accepts, if any, is over once
        none has failed for a while (at the limit, a descriptor freed now and then lets one
        through between failures: that is still the same episode)."""
        if (
            self._out_of_fds_since is not None
            and time.monotonic() - self._last_failure >= EPISODE_QUIET_S
        ):
            log.warning(
                "accepting connections again after %.1f s out of file descriptors "
                "(%d failed accepts)",
                time.monotonic() - self._out_of_fds_since,
                self._failed_accepts,
            )
            self._out_of_fds_since, self._failed_accepts = None, 0

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        """Route asyncio's report of a failed accept() here; everything else as before."""
        previous = loop.get_exception_handler()

        def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            if context.get("message") == ACCEPT_FAILED:
                self.accept_failed()
            elif previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)

        loop.set_exception_handler(handle)


def refusal(reason: str) -> bytes:
    """A whole 503 response, written before the request is read."""
    body = json.dumps({"error": reason}).encode()
    return (
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        b"Retry-After: %d\r\nConnection: close\r\nServer: %b\r\n"
        b"Content-Length: %d\r\n\r\n%b" % (BUSY_RETRY_S, SERVER.encode(), len(body), body)
    )


class Connection(RequestHandler):
    """aiohttp's handler for one connection, admitted by the guard first; its 400 for a
    request it cannot parse names the reason, not the offending bytes (which may be a
    password), and like every error is JSON."""

    __slots__ = ("_guard", "_peer")

    def __init__(self, manager: web.Server, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = guard
        self._peer: str | None = None  # set once admitted

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._peer is None:  # else admitted before its TLS handshake
            address = peer_address(transport)
            if (why := self._guard.acquire(address)) is not None:
                assert isinstance(transport, asyncio.WriteTransport)
                transport.write(refusal(why))
                transport.close()
                return
            self._peer = address
        super().connection_made(transport)

    def admitted(self, address: str) -> None:
        """Admitted by a Handshake already: this connection's slot is the handler's to free."""
        self._peer = address

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._peer is not None:
            self._guard.release(self._peer)
            self._peer = None
        super().connection_lost(exc)

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """aiohttp's answer to a request it could not parse (400) or a handler's crash
        (500), as JSON with our headers like every other error."""
        super().handle_error(request, status, exc, message)  # logs it; raises if sent already
        reason = HTTPStatus(status).phrase
        if message and status == 400:
            # The parser's message quotes the bytes it choked on after its first colon.
            reason += ": " + (message.split(":", 1)[0].splitlines() or [""])[0][:100]
        resp = web.Response(
            status=status,
            text=json.dumps({"error": reason}),
            content_type="application/json",
            headers={**SECURITY_HEADERS, "Server": SERVER},
        )
        resp.force_close()
        return resp


def peer_address(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    return (peer[0] if isinstance(peer, tuple) else "") or "localhost"  # a unix socket: local


class Handshake(asyncio.Protocol):
    """A TLS connection from its accept(): admitted by the guard at once (refused ones are
    closed: a 503 in plain text means nothing to a TLS client), then its handshake, at most
    `timeout_s`; then its `Connection` takes over, with what arrived meanwhile."""

    def __init__(
        self,
        handler: Connection,
        guard: ConnectionGuard,
        context: ssl.SSLContext,
        timeout_s: float,
        pending: set[asyncio.Task[None]],
    ) -> None:
        self._handler, self._guard, self._context = handler, guard, context
        self._timeout_s, self._pending = timeout_s, pending
        self._early: list[bytes] = []  # data decrypted before the handler took over
        self._is_lost = self._is_handed_over = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        address = peer_address(transport)
        if self._guard.acquire(address) is not None:
            transport.abort()
            return
        transport.pause_reading()  # the ClientHello is for TLS (start_tls reads on)
        task = asyncio.get_running_loop().create_task(self._handshake(transport))
        self._pending.add(task)
        # Done, failed or cancelled (even before it ran): a slot not handed over is freed.
        task.add_done_callback(lambda task: self._done(task, transport, address))

    async def _handshake(self, raw: asyncio.Transport) -> None:
        loop = asyncio.get_running_loop()
        try:
            tls = await loop.start_tls(
                raw, self, self._context, server_side=True, ssl_handshake_timeout=self._timeout_s
            )
        except Exception:  # noqa: BLE001 - a failed or timed-out handshake, a reset
            return
        if tls is None or self._is_lost:
            return
        self._is_handed_over = True
        self._handler.admitted(peer_address(raw))
        tls.set_protocol(self._handler)
        self._handler.connection_made(tls)
        for data in self._early:
            self._handler.data_received(data)
        self._early.clear()

    def _done(self, task: asyncio.Task[None], raw: asyncio.Transport, address: str) -> None:
        self._pending.discard(task)
        if not self._is_handed_over:
            raw.abort()
            self._guard.release(address)

    def data_received(self, data: bytes) -> None:
        self._early.append(data)  # after the handshake, before the handler took over

    def eof_received(self) -> bool | None:
        self._is_lost = True
        return None

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._is_handed_over:  # told just before the handler took over
            self._handler.connection_lost(exc)
        self._is_lost = True


class GuardedServer(web.Server):
    """aiohttp's server for an app, handing out guarded `Connection`s (behind a
    `Handshake` for TLS)."""

    def __init__(
        self,
        made: web.Server,
        guard: ConnectionGuard,
        tls: ssl.SSLContext | None,
        handshake_timeout_s: float,
    ) -> None:
        # Take over the server aiohttp built for the app, with all its settings.
        vars(self).update(vars(made))
        self.guard, self.tls, self.handshake_timeout_s = guard, tls, handshake_timeout_s
        self.handshakes: set[asyncio.Task[None]] = set()

    def __call__(self) -> asyncio.Protocol:  # type: ignore[override] # asyncio takes any
        handler = Connection(self, self.guard, loop=self._loop, **self._kwargs)
        if self.tls is None:
            return handler
        return Handshake(handler, self.guard, self.tls, self.handshake_timeout_s, self.handshakes)


class GuardedRunner(web.AppRunner):
    """An AppRunner whose server admits connections through `guard`, and does TLS itself
    with `tls` (its sites listen in plain TCP)."""

    def __init__(
        self,
        app: web.Application,
        guard: ConnectionGuard,
        *,
        tls: ssl.SSLContext | None = None,
        handshake_timeout_s: float = 15.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(app, **kwargs)
        self.guard, self.tls, self.handshake_timeout_s = guard, tls, handshake_timeout_s
        self._guarded: GuardedServer | None = None

    async def _make_server(self) -> web.Server:
        self.guard.install(asyncio.get_running_loop())
        made = await super()._make_server()
        self._guarded = GuardedServer(made, self.guard, self.tls, self.handshake_timeout_s)
        return self._guarded

    async def cleanup(self) -> None:
        for site in list(self.sites):  # accept no more: no handshake starts after this
            await site.stop()
        if self._guarded is not None:  # handshakes under way end with the server
            handshakes = list(self._guarded.handshakes)
            for task in handshakes:
                task.cancel()
            await asyncio.gather(*handshakes, return_exceptions=True)
        await super().cleanup()
