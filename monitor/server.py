"""Running the app: listen, log where, stop cleanly and fast on SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from monitor.app import create_app
from monitor.config import Config

log = logging.getLogger("monitor")

# Every stream ends as soon as the hub closes, so handlers still running after this are stuck
# on a client that reads nothing: don't let them hold up `systemctl stop` (aiohttp waits 60 s).
SHUTDOWN_TIMEOUT_S = 0.5


class StartupError(Exception):
    """The server could not start; the message says why and what to do."""


def url_of(address: object) -> str:
    """http://host:port for a socket address (IPv6 in brackets)."""
    host, port = address[0], address[1]  # type: ignore[index]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def serve(config: Config) -> None:
    """Run the server until SIGTERM or SIGINT, then shut down and return."""
    runner = web.AppRunner(
        create_app(config),
        handle_signals=False,
        shutdown_timeout=SHUTDOWN_TIMEOUT_S,
        # Cancel a handler when its client disconnects: an idle stream would otherwise
        # hold its subscription until its next write.
        handler_cancellation=True,
    )
    # Handle SIGTERM before accepting anyone: a stop right after start must still be clean.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port)
        try:
            await site.start()
        except OSError as exc:
            raise StartupError(
                f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}"
            ) from None
        for address in runner.addresses:
            log.info("listening on %s", url_of(address))
        await stop.wait()
        log.info("stopping")
    finally:
        await runner.cleanup()
