"""systemd's side channels: sd_notify datagrams (READY, STATUS, WATCHDOG, STOPPING). stdlib."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable

log = logging.getLogger("monitor.systemd")

STATUS_INTERVAL_S = 10.0

_has_failed = False  # log a broken NOTIFY_SOCKET once, not on every watchdog ping


def notify(message: str) -> None:
    """Send one datagram to $NOTIFY_SOCKET; a no-op without it. Never raises."""
    global _has_failed
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    # A leading '@' names a socket in the abstract namespace (a NUL byte on the wire).
    address = "\0" + path[1:] if path.startswith("@") else path
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError as exc:
        if not _has_failed:
            _has_failed = True
            log.warning("NOTIFY_SOCKET %s: cannot notify systemd: %s", path, exc.strerror or exc)


def watchdog_interval_s() -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WATCHDOG_USEC), or None if not asked for."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):  # meant for another process (e.g. a wrapper)
        return None
    return int(usec) / 2 / 1_000_000


async def run_watchdog(interval_s: float) -> None:
    """Ping from the event loop itself, so a stalled loop stops the pings and systemd acts."""
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(interval_s)


async def run_status(summary: Callable[[], str], interval_s: float = STATUS_INTERVAL_S) -> None:
    """Send STATUS=<summary> now and then whenever it changes (checked every interval_s)."""
    sent = None
    while True:
        text = summary()
        if text != sent:
            notify(f"STATUS={text}")
            sent = text
        await asyncio.sleep(interval_s)
