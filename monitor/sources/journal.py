"""JournalSource: follows the systemd journal through `journalctl --follow --output=json`.

No compiled dependency: journalctl does the reading, we parse its JSON lines. The last
`__CURSOR` seen is kept, so a restarted journalctl continues exactly where the last one
stopped (`--after-cursor`), neither losing nor repeating an entry. Each event's first entry's
place goes to the hub as its origin: clients behind the hub's buffer get the event again by
cursor (journal_history.py), and a restarted server goes on after the last event it sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from monitor.hub.events import LOG, MAX_LINES_PER_EVENT
from monitor.hub.interface import Origin, Publisher
from monitor.sources.journal_entries import (
    cursor_of,
    entry_line,
    is_at,
    lines_crc,
    origin_of,
    parse_entry,
    payload_of,
    realtime_us,
)
from monitor.sources.journal_history import JournalHistory
from monitor.sources.supervisor import SourceStats, SourceStopped, report

log = logging.getLogger(__name__)

BATCH_WAIT_S = 0.02  # after one entry, gather those that follow this closely into one event
GONE = "the journal no longer holds the last entries sent before the restart; going on from there"


class JournalSource:
    """One log source: the journal, optionally narrowed by `FIELD=value` matches."""

    kind = "log"

    def __init__(
        self,
        name: str,
        matches: tuple[str, ...] = (),
        directory: str | None = None,
        backlog_lines: int = 100,
        *,
        max_line_bytes: int = 64 * 1024,
        journalctl: str = "journalctl",
    ) -> None:
        self.name = name
        self.matches = matches
        self.directory = directory
        self.backlog_lines = backlog_lines
        self.max_line_bytes = max_line_bytes
        self.journalctl = journalctl
        self.process: asyncio.subprocess.Process | None = None
        self.cursor: str | None = None
        self.stats = SourceStats()
        self._started_us = 0
        self._history = JournalHistory(name, self._reading(), max_line_bytes)
        # Where the previous run of the server left off (its last event's origin): the
        # first journalctl starts at that event's first entry and passes over its entries.
        self._resume: Origin | None = None
        self._passing: list[dict[str, Any]] = []  # entries of that event, passed over

    def _reading(self) -> list[str]:
        """journalctl's argv to read this source's entries, without where to start."""
        argv = [self.journalctl, "--output=json", "--no-pager"]
        if self.directory:
            argv.append(f"--directory={self.directory}")
        return [*argv, *self.matches]

    def command(self) -> list[str]:
        """journalctl's argv: the backlog on the first start, after the cursor on restarts,
        and on the first start after a server restart, from the last event sent."""
        # From a cursor, every entry after it: --follow alone would show 10 (journalctl 252).
        if self.cursor:
            start = [f"--after-cursor={self.cursor}", "--lines=all"]
        elif self._resume is not None:
            start = [f"--cursor={cursor_of(self._resume)}", "--lines=all"]
        else:
            start = [f"--lines={self.backlog_lines}"]
        journalctl, *reading = self._reading()
        return [journalctl, "--follow", *start, *reading]

    async def run(self, hub: Publisher) -> None:
        """Follow the journal with one journalctl, until cancelled or it exits (SourceStopped);
        supervise() starts the next one, which continues after the last cursor."""
        if not self._started_us:
            resumed = hub.keep_history(self.name, self._history)
            if resumed and resumed.files:  # the newest event the last run recorded
                self._resume = max(resumed.files.values(), key=lambda o: o.end)
            # Entries older than the first start are the backlog (none, when resuming).
            self._started_us = 1 if self._resume else int(time.time() * 1_000_000)
        try:
            raise SourceStopped(await self._follow(hub))
        finally:
            await self._history.aclose()

    async def _follow(self, hub: Publisher) -> str:
        """Run journalctl once; returns why it stopped."""
        try:
            self.process = await asyncio.create_subprocess_exec(
                *self.command(),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                limit=self.max_line_bytes,
            )
        except FileNotFoundError:
            return f"{self.journalctl} not found"
        except OSError as exc:
            return f"{self.journalctl}: {exc.strerror or exc}"
        process = self.process
        assert process.stdout is not None and process.stderr is not None
        errors: list[str] = []
        stderr_task = asyncio.create_task(self._read_stderr(process.stderr, errors))
        try:
            self._report(hub, "following", self._describe())
            await self._read_entries(hub, process.stdout)
            code = await process.wait()
            await stderr_task
            detail = errors[-1] if errors else "no message"
            return f"journalctl exited with code {code}: {detail}"
        finally:
            stderr_task.cancel()
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                # Shielded: a cancelled run must still reap its child.
                await asyncio.shield(process.wait())

    async def _read_stderr(self, stream: asyncio.StreamReader, errors: list[str]) -> None:
        while True:
            try:
                line = await stream.readline()
            except ValueError:
                continue  # an over-long line: the next one will do
            if not line:
                return
            if text := line.decode("utf-8", "replace").strip():
                errors[:] = [text]

    async def _read_entries(self, hub: Publisher, stdout: asyncio.StreamReader) -> None:
        """Read until EOF, one event per burst of entries."""
        while True:
            batch: list[dict[str, Any]] = []
            line: bytes | None = await self._readline(hub, stdout)
            while line:
                if (entry := self._parse(hub, line)) is not None:
                    batch.append(entry)
                if len(batch) >= MAX_LINES_PER_EVENT:
                    break
                try:
                    async with asyncio.timeout(BATCH_WAIT_S):
                        line = await self._readline(hub, stdout)
                except TimeoutError:  # the StreamReader keeps what it had buffered
                    line = None
            self._publish(hub, batch)
            if line == b"":
                return

    async def _readline(self, hub: Publisher, stdout: asyncio.StreamReader) -> bytes:
        while True:
            try:
                return await stdout.readline()
            except ValueError:
                # Over the limit: the StreamReader dropped it (the rest fails to parse).
                self._skip(hub, f"skipped an entry over {self.max_line_bytes} bytes")

    def _parse(self, hub: Publisher, line: bytes) -> dict[str, Any] | None:
        entry = parse_entry(line)
        if entry is None:
            self._skip(hub, "skipped a line that is not a JSON entry")
            return None
        if isinstance(cursor := entry.get("__CURSOR"), str):
            self.cursor = cursor
        return self._pass_over(hub, entry)

    def _pass_over(self, hub: Publisher, entry: dict[str, Any]) -> dict[str, Any] | None:
        """After a server restart: the entries of the last event sent are passed over (the
        clients have them); if the journal holds other entries there, they are news."""
        was = self._resume
        if was is None:
            return entry
        if not self._passing and not is_at(entry, was):
            self._resume = None  # that event is gone from the journal: start here
            self._report(hub, "following", self._describe(), change=GONE)
            return entry
        self._passing.append(entry)
        if len(self._passing) < was.lines:
            return None
        passed, self._passing, self._resume = self._passing, [], None
        if lines_crc([entry_line(e) for e in passed]) != was.crc:
            self._report(hub, "following", self._describe(), change=GONE)
            self._publish(hub, passed)
        return None

    def _skip(self, hub: Publisher, change: str) -> None:
        self.stats.skipped += 1
        self._report(hub, "following", self._describe(), change=change, skipped=self.stats.skipped)

    def _publish(self, hub: Publisher, entries: list[dict[str, Any]]) -> None:
        # Backlog entries come first (older than our start): split the batch once.
        groups: list[tuple[bool, list[dict[str, Any]]]] = []
        for entry in entries:
            is_backlog = realtime_us(entry) < self._started_us
            if not groups or groups[-1][0] != is_backlog:
                groups.append((is_backlog, []))
            groups[-1][1].append(entry)
        for is_backlog, group in groups:
            payload = payload_of(self.name, group, is_backlog)
            origin = origin_of(group, payload["lines"], is_backlog)
            self.stats.lines_read += len(group)
            hub.publish(LOG, payload, self.name, origin)

    def _describe(self) -> str:
        where = f"journal in {self.directory}" if self.directory else "journal"
        return f"{where}: {' '.join(self.matches)}" if self.matches else where

    def _report(self, hub: Publisher, state: str, detail: str, **extra: Any) -> None:
        report(hub, self, state, detail, mode="journalctl", matches=list(self.matches), **extra)
