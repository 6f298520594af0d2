"""?batch_ms=N on /events: at most one write to the client every N ms while events come fast.

A browser dispatches each SSE event as a task of its own: at 10,000 log lines/s into one pane,
Chrome's own cost per `EventSource` message kept the page's main thread from 60 frames/s,
whatever the page did with the lines (#17). A page cannot show more than one frame's worth of
lines per frame anyway, so it asks for them a frame at a time: the events that arrive within
N ms of the last write wait for the window to end and go as one `batch` event, one event per
`data:` line. An event after a quiet window is written at once, as itself. curl and the CLI do
not ask, and keep each line's latency.
"""

from __future__ import annotations

import asyncio
import math

from monitor.hub.events import Frame
from monitor.hub.interface import Sink

BATCH = "batch"
MAX_BATCH_MS = 1000


class Batcher:
    """One client's window: its sink refuses a frame within `window_s` of the last write (the
    hub then leaves the frame for the client's task), and the task rests out the window after
    each write, so what arrives meanwhile is read as one batch."""

    __slots__ = ("window_s", "_last")

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._last = -math.inf

    def sink(self, write_now: Sink) -> Sink:
        """`write_now`, for frames outside the window."""
        loop = asyncio.get_running_loop()

        def sink(frame: Frame) -> bool:
            now = loop.time()
            if now - self._last < self.window_s or not write_now(frame):
                return False
            self._last = now
            return True

        return sink

    async def rest(self) -> None:
        """After the task wrote a batch: let the window pass before it reads the next."""
        self._last = asyncio.get_running_loop().time()
        await asyncio.sleep(self.window_s)


def batch_frames(frames: list[Frame]) -> bytes:
    """A lone frame as itself; more as one `batch` event, its `id:` the last frame's (a
    reconnect resumes after the whole batch), a `data:` line per frame: its type, its id and
    its payload's JSON, separated by spaces (JSON escapes every newline, so it is one line)."""
    if len(frames) == 1:
        return frames[0].data
    lines = [b"data: %s %s %b\n" % (f.type.encode(), f.id.encode(), f.json) for f in frames]
    return b"event: %s\nid: %s\n%b\n" % (BATCH.encode(), frames[-1].id.encode(), b"".join(lines))
