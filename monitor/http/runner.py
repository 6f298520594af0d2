"""Serving an app: aiohttp's runner, and the site it listens on (a bound port, or the socket
systemd handed over)."""

from __future__ import annotations

import socket
import ssl

from aiohttp import web


def make_runner(app: web.Application, *, shutdown_timeout_s: float) -> web.AppRunner:
    """A runner that leaves signals to the caller and ends handlers of gone clients."""
    return web.AppRunner(
        app,
        handle_signals=False,
        shutdown_timeout=shutdown_timeout_s,
        # Cancel a handler when its client disconnects: an idle stream would otherwise
        # hold its subscription until its next write.
        handler_cancellation=True,
    )


def url_of(address: object, scheme: str = "http") -> str:
    """scheme://host:port for a socket address (IPv6 in brackets)."""
    host, port = address[0], address[1]  # type: ignore[index]
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


async def start_site(
    runner: web.AppRunner,
    host: str,
    port: int,
    sock: socket.socket | None,
    context: ssl.SSLContext | None,
) -> list[str]:
    """Listen on `sock` if given, else bind host:port; the URLs it is reachable at. OSError
    if it cannot listen."""
    site: web.BaseSite
    if sock is not None:
        site = web.SockSite(runner, sock, ssl_context=context)
    else:
        site = web.TCPSite(runner, host, port, ssl_context=context)
    await site.start()
    scheme = "https" if context else "http"
    return [
        url_of(address, scheme) if isinstance(address, tuple) else str(address)
        for address in runner.addresses
    ]
