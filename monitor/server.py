"""Running the app: listen, log where, stop cleanly and fast on SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import ssl
from collections.abc import Callable

from monitor.config import Config, ConfigError, exposure_problem
from monitor.http.app import create_root, reload_users
from monitor.http.keys import CONNECTIONS, HUB
from monitor.http.runner import make_runner, start_site
from monitor.hub.interface import Hub
from monitor.systemd import notify, run_status, run_watchdog, watchdog_interval_s
from monitor.tasks import cancel_and_wait

log = logging.getLogger("monitor")

# Every stream ends as soon as the hub closes, so handlers still running after this are stuck
# on a client that reads nothing: don't let them hold up `systemctl stop` (aiohttp waits 60 s).
SHUTDOWN_TIMEOUT_S = 0.5
LISTEN_FDS_START = 3  # sd_listen_fds(3): passed sockets start at fd 3


class StartupError(Exception):
    """The server could not start; the message says why and what to do."""


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


def inherited_socket() -> socket.socket | None:
    """The listening socket systemd passed as fd 3 (LISTEN_PID/LISTEN_FDS), or None."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return None  # unset, or meant for a parent that exec'd us without clearing it
    try:
        count = int(os.environ.get("LISTEN_FDS", "0"))
    except ValueError:
        count = 0
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)  # children of ours must not adopt the socket too
    if count < 1:
        return None
    sock = socket.socket(fileno=LISTEN_FDS_START)
    sock.set_inheritable(False)
    return sock


def status_of(config: Config, hub: Hub) -> Callable[[], str]:
    """The STATUS= summary for systemctl status: clients and log sources."""
    logs = len(config.log_names())
    return lambda: f"{hub.stats().subscribers} clients, {logs} log sources"


def check_passed_socket(config: Config, sock: socket.socket) -> None:
    """The exposure rule for the socket systemd passed: its real address, not --host (which
    socket activation ignores)."""
    address = sock.getsockname()
    host = address[0] if isinstance(address, tuple) else "localhost"  # a unix socket
    if problem := exposure_problem(config, host, "the socket systemd passed, on"):
        raise StartupError(problem)


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
    runner = make_runner(
        app,
        shutdown_timeout_s=SHUTDOWN_TIMEOUT_S,
        idle_timeout_s=config.stream.idle_timeout_s,
        guard=app[CONNECTIONS],
        tls=context,
    )
    # Handle SIGTERM before accepting anyone: a stop right after start must still be clean.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # logrotate's postrotate habit is `kill -HUP`: by default that would end the server with
    # status 129, which Restart=on-failure does not restart. Reload the users file instead.
    loop.add_signal_handler(signal.SIGHUP, reload_users, app)
    await runner.setup()
    tasks: list[asyncio.Task[None]] = []
    try:
        sock = inherited_socket()
        if sock is not None:
            check_passed_socket(config, sock)
        try:
            urls = await start_site(runner, config.host, config.port, sock)
        except OSError as exc:
            raise StartupError(
                f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}"
            ) from None
        how = " (socket activation)" if sock is not None else ""
        for url in urls:
            log.info("listening on %s%s", url, how)
        notify("READY=1")
        tasks.append(asyncio.create_task(run_status(status_of(config, app[HUB]))))
        if (interval_s := watchdog_interval_s()) is not None:
            tasks.append(asyncio.create_task(run_watchdog(interval_s)))
        await stop.wait()
        notify("STOPPING=1")
        log.info("stopping")
    finally:
        await cancel_and_wait(tasks)
        await runner.cleanup()
