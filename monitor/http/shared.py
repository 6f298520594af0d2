"""Bodies many clients ask for (/api/state, /api/history): built once per change, one build
at a time, shared by every request that asks meanwhile."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Hashable

KEEP = 8  # results kept: a few windows of /api/history beside /api/state


class SharedBodies:
    """Builds a body per key off the event loop, at most one build at a time in all (so eight
    clients cannot take both cores); requests for a key being built wait for that build."""

    def __init__(self, keep: int = KEEP) -> None:
        self._keep = keep
        self._done: OrderedDict[Hashable, bytes] = OrderedDict()
        self._pending: dict[Hashable, asyncio.Future[bytes]] = {}
        self._gate = asyncio.Semaphore(1)
        self.builds = 0  # bodies built (on /metrics: requests beyond it were shared)

    async def get(self, key: Hashable, build: Callable[[], bytes]) -> bytes:
        """The body for `key`, built by `build` (in a thread) if nobody has it yet."""
        if (body := self._done.get(key)) is not None:
            self._done.move_to_end(key)
            return body
        future = self._pending.get(key)
        if future is None:
            future = asyncio.ensure_future(self._build(key, build))
            self._pending[key] = future
        # Shielded: one client leaving must not cancel the build the others wait for.
        return await asyncio.shield(future)

    async def _build(self, key: Hashable, build: Callable[[], bytes]) -> bytes:
        try:
            async with self._gate:
                body = await asyncio.to_thread(build)
            self.builds += 1
            self._done[key] = body
            while len(self._done) > self._keep:
                self._done.popitem(last=False)
            return body
        finally:
            del self._pending[key]
