"""What a source is, and how every source runs: supervised, its stops and crashes reported as
`status` events and retried with backoff. The one retry loop of every source."""

from __future__ import annotations

import asyncio
import errno
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

from monitor.hub.events import STATUS
from monitor.hub.interface import Publisher

log = logging.getLogger(__name__)

MIN_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0
# A source that ran this long before stopping starts its backoff over.
HEALTHY_RUN_S = 60.0


@dataclass(slots=True)
class SourceStats:
    """A source's running totals, exported by source name on /metrics."""

    lines_read: int = 0
    bytes_read: int = 0  # log bytes read, newlines included (files only)
    rotations: int = 0  # a followed file renamed or deleted
    truncations: int = 0  # a followed file truncated under us
    skipped: int = 0  # input that could not be read as a line (the journal's bad entries)
    restarts: int = 0  # times supervise() started the source again after it stopped


class Source(Protocol):
    """A producer of events: runs until cancelled, or stops (raising SourceStopped to say
    why, expectedly) and is started again by supervise()."""

    name: str
    kind: str  # "log" or "metrics"
    stats: SourceStats

    async def run(self, hub: Publisher) -> None:
        """Publish until cancelled or stopped."""
        ...


class SourceStopped(Exception):
    """A source's input ended in a way it expects (a child process exited): the message says
    how, for the `error` status; no traceback is logged."""


def report(hub: Publisher, source: Source, state: str, detail: str = "", **extra: Any) -> None:
    """Publish a source's state (`running`, `waiting`, `error`, ...) as a status event."""
    payload: dict[str, Any] = {"source": source.name, "kind": source.kind, "state": state}
    payload.update(detail=detail, ts=time.time(), **extra)
    # Log sources' statuses follow the client's ?sources= choice; others always pass.
    hub.publish(STATUS, payload, source=source.name if source.kind == "log" else None)


async def supervise(
    source: Source,
    hub: Publisher,
    *,
    min_backoff_s: float = MIN_BACKOFF_S,
    max_backoff_s: float = MAX_BACKOFF_S,
) -> None:
    """Run `source` forever: a stop or crash becomes an `error` status and a retry with
    backoff (doubling up to max_backoff_s, from the start again after a healthy run)."""
    backoff_s = min_backoff_s
    while True:
        started = time.monotonic()
        try:
            await source.run(hub)
            problem = "stopped unexpectedly"
        except asyncio.CancelledError:
            raise
        except SourceStopped as exc:
            problem = str(exc)
        except Exception as exc:  # noqa: BLE001 - one source's bug must not stop the others
            if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE):
                # Not a bug, and no traceback: the process is out of file descriptors.
                problem = f"stopped: {exc.strerror}"
                log.error("source %s stopped: %s", source.name, exc.strerror)
            else:
                log.exception("source %s crashed", source.name)
                problem = f"crashed: {type(exc).__name__}: {exc}"
        if time.monotonic() - started > HEALTHY_RUN_S:
            backoff_s = min_backoff_s
        report(hub, source, "error", f"{problem}; retrying in {backoff_s:g}s", retry_in_s=backoff_s)
        await asyncio.sleep(backoff_s)
        backoff_s = min(backoff_s * 2, max_backoff_s)
        source.stats.restarts += 1
