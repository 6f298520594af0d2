"""JournalSource: follows the systemd journal through `journalctl --follow --output=json`.

No compiled dependency: journalctl does the reading, we parse its JSON lines. The last
`__CURSOR` seen is kept, so a restarted journalctl continues exactly where the last one
stopped (`--after-cursor`), neither losing nor repeating an entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from monitor.hub.events import LOG, MAX_LINES_PER_EVENT
from monitor.hub.interface import Publisher
from monitor.sources.supervisor import SourceStats, SourceStopped, report

log = logging.getLogger(__name__)

BATCH_WAIT_S = 0.02  # after one entry, gather those that follow this closely into one event


def entry_line(entry: dict[str, Any]) -> str:
    """`unit[pid]: MESSAGE`, like syslog; binary messages arrive as byte lists."""
    ident = entry.get("_SYSTEMD_UNIT") or entry.get("SYSLOG_IDENTIFIER") or entry.get("_COMM")
    pid = entry.get("_PID") or entry.get("SYSLOG_PID")
    message = _message_text(entry.get("MESSAGE"))
    if not ident:
        return message
    return f"{ident}[{pid}]: {message}" if pid else f"{ident}: {message}"


def _message_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(b, int) for b in value):
        return bytes(b & 0xFF for b in value).decode("utf-8", "replace")
    if isinstance(value, list):  # a field given more than once: each value in turn
        return " ".join(_message_text(v) for v in value)
    # journalctl prints null for a field over its size threshold (4096 bytes without --all)
    return "" if value is None else str(value)


def _priority(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 6  # journald's default: info


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

    def command(self) -> list[str]:
        """journalctl's argv: the backlog on the first start, after the cursor on restarts."""
        argv = [self.journalctl, "--follow", "--output=json", "--no-pager"]
        # With a cursor, --lines would cap the catch-up (journalctl 252): leave it out.
        argv.append(
            f"--after-cursor={self.cursor}" if self.cursor else f"--lines={self.backlog_lines}"
        )
        if self.directory:
            argv.append(f"--directory={self.directory}")
        return [*argv, *self.matches]

    async def run(self, hub: Publisher) -> None:
        """Follow the journal with one journalctl, until cancelled or it exits (SourceStopped);
        supervise() starts the next one, which continues after the last cursor."""
        # Entries older than the first start are the backlog.
        self._started_us = self._started_us or int(time.time() * 1_000_000)
        raise SourceStopped(await self._follow(hub))

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
        try:
            entry = json.loads(line)
        except ValueError:
            self._skip(hub, "skipped a line that is not a JSON entry")
            return None
        if not isinstance(entry, dict):
            return None
        if isinstance(cursor := entry.get("__CURSOR"), str):
            self.cursor = cursor
        return entry

    def _skip(self, hub: Publisher, change: str) -> None:
        self.stats.skipped += 1
        self._report(hub, "following", self._describe(), change=change, skipped=self.stats.skipped)

    def _publish(self, hub: Publisher, entries: list[dict[str, Any]]) -> None:
        # Backlog entries come first (older than our start): split the batch once.
        groups: list[tuple[bool, list[dict[str, Any]]]] = []
        for entry in entries:
            ts_us = _realtime_us(entry)
            is_backlog = ts_us < self._started_us
            if not groups or groups[-1][0] != is_backlog:
                groups.append((is_backlog, []))
            groups[-1][1].append(entry)
        for is_backlog, group in groups:
            payload: dict[str, Any] = {
                "source": self.name,
                "file": "journal",
                "lines": [entry_line(e) for e in group],
                "entries": [
                    {
                        "priority": _priority(e.get("PRIORITY")),
                        "unit": e.get("_SYSTEMD_UNIT") or None,
                        "ts": _realtime_us(e) / 1_000_000,
                    }
                    for e in group
                ],
            }
            if is_backlog:
                payload["backlog"] = True
            self.stats.lines_read += len(group)
            hub.publish(LOG, payload, source=self.name)

    def _describe(self) -> str:
        where = f"journal in {self.directory}" if self.directory else "journal"
        return f"{where}: {' '.join(self.matches)}" if self.matches else where

    def _report(self, hub: Publisher, state: str, detail: str, **extra: Any) -> None:
        report(hub, self, state, detail, mode="journalctl", matches=list(self.matches), **extra)


def _realtime_us(entry: dict[str, Any]) -> int:
    """__REALTIME_TIMESTAMP in µs; 0 if missing."""
    try:
        return int(entry.get("__REALTIME_TIMESTAMP", 0))
    except (TypeError, ValueError):
        return 0
