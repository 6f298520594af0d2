"""JournalHistory: a journal source's events read again by cursor, for clients that fell
behind the hub's buffer (and for scrolling back through the hub's records).

The hub keeps, for each journal event, its first entry's place (seqnum id, seqnum, time),
how many entries it had and a CRC of their lines. Reading it again is journalctl from that
cursor; the CRC decides, so entries the journal no longer holds (vacuumed, rotated away) are
never served as the old lines. A catch-up asks for one event after another: one journalctl
is kept reading on while the events asked for follow each other, and let go when idle.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from monitor.hub.interface import BadEventId, Older, Origin
from monitor.sources.journal_entries import (
    cursor_of,
    entry_line,
    is_at,
    lines_crc,
    parse_entry,
    payload_of,
    place,
)

REREAD_TIMEOUT_S = 5.0  # one event read again, at most; past it the event counts as gone
IDLE_S = 10.0  # a reader nobody asked anything of for this long is let go
SKIP_AHEAD = 1000  # entries the kept reader may pass to reach the one asked for


class JournalHistory:
    """Reads events of one journal source again (`argv`: its journalctl without a start)."""

    def __init__(self, name: str, argv: list[str], max_line_bytes: int) -> None:
        self.name = name
        self._argv = argv
        self._limit = max_line_bytes
        self._lock = asyncio.Lock()
        self._process: asyncio.subprocess.Process | None = None
        self._idle: asyncio.TimerHandle | None = None
        self._closing: asyncio.Task[None] | None = None

    async def reread(self, origin: Origin) -> dict[str, Any] | None:
        """The event again, if the journal still holds its entries exactly; else None."""
        async with self._lock:
            if self._idle is not None:
                self._idle.cancel()
            try:
                async with asyncio.timeout(REREAD_TIMEOUT_S):
                    return await self._reread(origin)
            except (TimeoutError, OSError):
                await self._stop()
                return None
            finally:
                self._idle = asyncio.get_running_loop().call_later(IDLE_S, self._let_go)

    async def older(self, before: Origin | str | None, limit: int) -> Older:
        """The journal is scrolled back through the hub's records only (no position of
        its own is ever given out)."""
        if isinstance(before, str):
            raise BadEventId("not an event id (RUN-SEQ, ASCII digits)")
        return Older([], None)

    async def aclose(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        async with self._lock:
            await self._stop()

    async def _reread(self, origin: Origin) -> dict[str, Any] | None:
        first = await self._find(origin)
        if first is None:
            return None
        entries = [first]
        while len(entries) < origin.lines:
            if (entry := await self._next()) is None:
                return None
            entries.append(entry)
        if lines_crc([entry_line(e) for e in entries]) != origin.crc:
            return None
        return payload_of(self.name, entries, origin.is_backlog)

    async def _find(self, origin: Origin) -> dict[str, Any] | None:
        """The origin's first entry: from the kept reader if it is on its way there, else
        from a new journalctl at its cursor."""
        if self._process is not None:
            for _ in range(SKIP_AHEAD):
                entry = await self._next()
                if entry is None:
                    break
                if is_at(entry, origin):
                    return entry
                at = place(entry)
                if at is None or at[0] != origin.key or at[1] > origin.start:
                    break  # past it: start again from its cursor
        await self._stop()
        self._process = await asyncio.create_subprocess_exec(
            *self._argv,
            f"--cursor={cursor_of(origin)}",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            limit=self._limit,
        )
        entry = await self._next()
        return entry if entry is not None and is_at(entry, origin) else None

    async def _next(self) -> dict[str, Any] | None:
        """The reader's next entry (lines over the limit skipped as the source skips them);
        None at the journal's end."""
        if self._process is None or self._process.stdout is None:
            return None
        while True:
            try:
                line = await self._process.stdout.readline()
            except ValueError:
                continue  # over the limit: dropped, as the source drops it
            if not line:
                return None
            if (entry := parse_entry(line)) is not None:
                return entry

    def _let_go(self) -> None:
        self._closing = asyncio.ensure_future(self.aclose())

    async def _stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await asyncio.shield(process.wait())
