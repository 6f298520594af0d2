"""Running the app: listen, log where, stop cleanly and fast on SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl

from aiohttp import web

from monitor.app import create_root
from monitor.config import Config, ConfigError

log = logging.getLogger("monitor")

# Every stream ends as soon as the hub closes, so handlers still running after this are stuck
# on a client that reads nothing: don't let them hold up `systemctl stop` (aiohttp waits 60 s).
SHUTDOWN_TIMEOUT_S = 0.5


class StartupError(Exception):
    """The server could not start; the message says why and what to do."""


def url_of(address: object, scheme: str = "http") -> str:
    """scheme://host:port for a socket address (IPv6 in brackets)."""
    host, port = address[0], address[1]  # type: ignore[index]
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def _no_passphrase() -> bytes:
    # Without this, OpenSSL would prompt on the terminal for an encrypted key.
    raise StartupError("--keyfile: the key is encrypted; give an unencrypted PEM key")


def make_ssl_context(certfile: str, keyfile: str) -> ssl.SSLContext:
    """A server context for the PEM chain and key; any problem is one StartupError line."""
    for flag, path in (("--certfile", certfile), ("--keyfile", keyfile)):
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise StartupError(f"{flag} {path}: {exc.strerror or exc}") from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certfile, keyfile, password=_no_passphrase)
    except ssl.SSLError as exc:
        detail = f" ({exc.reason})" if exc.reason else ""
        raise StartupError(
            f"--certfile {certfile} --keyfile {keyfile}: "
            f"not a PEM certificate chain and its matching private key{detail}"
        ) from None
    return context


async def serve(config: Config) -> None:
    """Run the server until SIGTERM or SIGINT, then shut down and return."""
    context = (
        make_ssl_context(config.certfile, config.keyfile)
        if config.certfile and config.keyfile
        else None
    )
    try:
        app = create_root(config)
    except ConfigError as exc:  # cli checks the users file first; this covers a later edit
        raise StartupError(str(exc)) from None
    runner = web.AppRunner(
        app,
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
        site = web.TCPSite(runner, config.host, config.port, ssl_context=context)
        try:
            await site.start()
        except OSError as exc:
            raise StartupError(
                f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}"
            ) from None
        for address in runner.addresses:
            log.info("listening on %s", url_of(address, "https" if context else "http"))
        await stop.wait()
        log.info("stopping")
    finally:
        await runner.cleanup()
