"""What a source is, and how one runs: supervised, its crashes reported and retried."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from contextlib import suppress
from typing import Any, Protocol

from monitor.hub.events import STATUS
from monitor.hub.memory import EventHub

log = logging.getLogger(__name__)

MIN_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0
# A source that ran this long before failing starts its backoff over.
HEALTHY_RUN_S = 60.0


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel every task, then await each in order: an error other than the cancellation
    (a crashed source, a client's failure) is raised here."""
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    for task in tasks:
        with suppress(asyncio.CancelledError):
            await task


class Source(Protocol):
    """A producer of events: runs until cancelled."""

    name: str
    kind: str  # "log" or "metrics"

    async def run(self, hub: EventHub) -> None: ...


def report(hub: EventHub, source: Source, state: str, detail: str = "", **extra: Any) -> None:
    """Publish a source's state (`running`, `waiting`, `error`, ...) as a status event."""
    payload: dict[str, Any] = {"source": source.name, "kind": source.kind, "state": state}
    payload.update(detail=detail, ts=time.time(), **extra)
    # Log sources' statuses follow the client's ?sources= choice; others always pass.
    hub.publish(STATUS, payload, source=source.name if source.kind == "log" else None)


async def supervise(
    source: Source,
    hub: EventHub,
    *,
    min_backoff_s: float = MIN_BACKOFF_S,
    max_backoff_s: float = MAX_BACKOFF_S,
) -> None:
    """Run `source` forever: a crash becomes an `error` status and a retry with backoff."""
    backoff_s = min_backoff_s
    while True:
        started = time.monotonic()
        try:
            await source.run(hub)
            problem = "stopped unexpectedly"
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - one source's bug must not stop the others
            log.exception("source %s crashed", source.name)
            problem = f"crashed: {type(exc).__name__}: {exc}"
        if time.monotonic() - started > HEALTHY_RUN_S:
            backoff_s = min_backoff_s
        report(hub, source, "error", f"{problem}; retrying in {backoff_s:g}s", retry_in_s=backoff_s)
        await asyncio.sleep(backoff_s)
        backoff_s = min(backoff_s * 2, max_backoff_s)
