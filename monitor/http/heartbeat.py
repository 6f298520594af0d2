"""One timer that sends every open SSE stream its heartbeat comment.

aiohttp-sse gives each stream a task that sleeps `ping_interval` and writes `: ping`. With ten
thousand streams that is ten thousand tasks (~1.2 KB each) and as many timers (issue #17).
Here one timer visits one of SLOTS groups of streams per tick, so each stream still hears
from the server every `interval_s` and the pings are spread over the interval, not sent
in one burst that would delay the lines behind it. No stream, no timer; empty slots are
skipped, not visited.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

SLOTS = 16
PING = b": ping\n\n"


class Beat:
    """One stream's place on the wheel: how to write to it (http/stream.py's socket_writer:
    False while its socket is backed up) and `stalled_since`, when a ping first found it
    backed up (the peer reads nothing), None while it drains."""

    __slots__ = ("write", "transport", "slot", "stalled_since")

    def __init__(
        self, write: Callable[[bytes], bool], transport: asyncio.Transport | None, slot: int
    ) -> None:
        self.write = write
        self.transport = transport
        self.slot = slot
        self.stalled_since: float | None = None


class Heartbeat:
    """Pings every added stream each `interval_s`; aborts one whose socket stays backed up
    for `send_timeout_s` (what aiohttp-sse's own ping did, with `send_timeout`), so a peer
    that stopped reading cannot hold its connection for ever."""

    def __init__(self, interval_s: float, send_timeout_s: float) -> None:
        self.interval_s = interval_s
        self.send_timeout_s = send_timeout_s
        self._slots: list[set[Beat]] = [set() for _ in range(SLOTS)]
        self._next = 0  # the slot the next tick visits
        self._count = 0
        self._timer: asyncio.TimerHandle | None = None

    def add(self, write: Callable[[bytes], bool], transport: asyncio.Transport | None) -> Beat:
        """Ping a prepared stream with `write` from now on; first after about `interval_s`."""
        # The slot just visited comes round again last: a full interval away.
        slot = (self._next - 1) % SLOTS
        beat = Beat(write, transport, slot)
        self._slots[slot].add(beat)
        self._count += 1
        if self._timer is None:
            self._schedule()
        return beat

    def remove(self, beat: Beat) -> None:
        self._slots[beat.slot].discard(beat)
        self._count -= 1
        if self._count == 0 and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _schedule(self, steps: int = 1) -> None:
        self._timer = asyncio.get_running_loop().call_later(
            steps * self.interval_s / SLOTS, self._tick
        )

    def _tick(self) -> None:
        now = asyncio.get_running_loop().time()
        for beat in self._slots[self._next]:
            self._ping(beat, now)
        # On to the next slot with streams in it, at its time on the wheel: a dashboard's
        # one stream costs the server a wake-up per interval, not SLOTS of them (#17, idle).
        steps = next((s for s in range(1, SLOTS) if self._slots[(self._next + s) % SLOTS]), SLOTS)
        self._next = (self._next + steps) % SLOTS
        self._schedule(steps)

    def _ping(self, beat: Beat, now: float) -> None:
        if beat.write(PING):
            beat.stalled_since = None
        elif beat.stalled_since is None:
            beat.stalled_since = now
        elif now - beat.stalled_since >= self.send_timeout_s and beat.transport is not None:
            # A graceful close would wait on a buffer the peer never drains.
            beat.transport.abort()
