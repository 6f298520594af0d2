"""The charts' history across restarts: loaded from the state directory at start, saved to it
every minute and once more at stop. A kill -9 loses at most the last minute of the charts."""

from __future__ import annotations

import asyncio
import logging

from monitor.metrics.history import MetricsHistory
from monitor.state import StateDir

log = logging.getLogger(__name__)

HISTORY_FILE = "history"
SAVE_EVERY_S = 60.0


def restore(history: MetricsHistory, state: StateDir) -> None:
    """Take back the saved history, if there is one this history can use."""
    data = state.read_bytes(HISTORY_FILE)
    if data is None:
        return
    try:
        history.load(data)
    except ValueError as exc:
        log.warning("state file %s not used (%s); charts start empty", HISTORY_FILE, exc)


async def keep_saved(
    history: MetricsHistory, state: StateDir, every_s: float = SAVE_EVERY_S
) -> None:
    """Save the history every `every_s` and when cancelled (at stop)."""
    try:
        while True:
            await asyncio.sleep(every_s)
            state.write_bytes(HISTORY_FILE, history.dump())
    finally:
        state.write_bytes(HISTORY_FILE, history.dump())
