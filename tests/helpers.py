"""What tests share that is not a fixture: waiting on a condition, reading a stream, and the
`serve` subprocess. Fixtures are in conftest.py (browser ones in browser/conftest.py)."""

from __future__ import annotations

import asyncio
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trustme
from aiohttp import ClientResponse

from monitor.hub.events import LOG, STATUS
from monitor.hub.memory import MemoryHub
from monitor.hub.sse import SSEEvent, SSEParser

LISTENING = re.compile(r"listening on (https?://\S+)")
MONITOR = [sys.executable, "-m", "monitor"]


async def wait_until(check: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Poll `check` until it is true; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout_s}s")
        await asyncio.sleep(0.02)


def wait_until_sync(check: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    """wait_until for tests that are not coroutines: True once `check` is; fail after
    `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout_s}s")
        time.sleep(0.02)
    return True


class Published:
    """What a source published (log and status payloads), read from the hub as the server's
    consumers read it: in publish order, never more than the test holds."""

    def __init__(self, hub: MemoryHub, wait_s: float = 5.0) -> None:
        self.hub = hub
        self.events: list[dict[str, Any]] = []
        self.statuses: list[dict[str, Any]] = []
        self._wait_s = wait_s
        self._feed = hub.feed(frozenset({LOG, STATUS}), max_pending=10_000_000)

    def poll(self) -> None:
        """Take in what was published since the last poll."""
        for event in self._feed.drain():
            (self.events if event.type == LOG else self.statuses).append(event.payload)

    def lines(self) -> list[str]:
        """Every line published so far."""
        self.poll()
        return [line for e in self.events for line in e["lines"]]

    async def wait_lines(self, n: int, timeout_s: float | None = None) -> list[str]:
        """Every line, once there are at least `n`."""
        await wait_until(lambda: len(self.lines()) >= n, timeout_s or self._wait_s)
        return self.lines()


class StreamReader:
    """Reads typed events off an open SSE response, with a deadline per call."""

    def __init__(self, resp: ClientResponse) -> None:
        self.resp = resp
        self.parser = SSEParser()
        self._pending: list[SSEEvent] = []

    async def next(self, timeout_s: float = 5.0) -> SSEEvent:
        """The next event (heartbeat comments are counted, not returned)."""
        async with asyncio.timeout(timeout_s):
            while not self._pending:
                chunk = await self.resp.content.readany()
                if not chunk:
                    raise EOFError("stream ended")
                self._pending.extend(self.parser.feed(chunk))
        return self._pending.pop(0)

    async def take(self, n: int, timeout_s: float = 5.0) -> list[SSEEvent]:
        """The next `n` events."""
        return [await self.next(timeout_s) for _ in range(n)]

    async def until(self, event_type: str, timeout_s: float = 5.0) -> list[SSEEvent]:
        """Events up to and including the first of `event_type`."""
        seen: list[SSEEvent] = []
        while not seen or seen[-1].type != event_type:
            seen.append(await self.next(timeout_s))
        return seen


@dataclass
class Server:
    """A running `serve` subprocess; a thread drains its stderr into `lines` and `stderr`."""

    proc: subprocess.Popen[str]
    lines: queue.Queue[str | None] = field(default_factory=queue.Queue)
    stderr: list[str] = field(default_factory=list)
    pump: threading.Thread = field(init=False)
    url: str = ""

    def __post_init__(self) -> None:
        self.pump = threading.Thread(target=self._drain, daemon=True)
        self.pump.start()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        with self.proc.stderr:
            for line in self.proc.stderr:
                self.stderr.append(line)
                self.lines.put(line)
        self.lines.put(None)

    def wait_for_url(self, timeout_s: float = 15.0) -> str:
        """The URL of the first `listening on` line; fail at EOF or after `timeout_s`."""
        match = LISTENING.search(self.wait_for_line("listening on", timeout_s))
        assert match is not None
        return match.group(1)

    def wait_for_line(self, text: str, timeout_s: float = 15.0) -> str:
        """The first stderr line (from here on) containing `text`; fail at EOF or after
        `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {text!r} after {timeout_s}s: {self.stderr}") from None
            assert line is not None, f"stderr ended before {text!r}: {self.stderr}"
            if text in line:
                return line

    def all_stderr(self) -> str:
        """Everything the process wrote to stderr; call once it has exited."""
        assert self.proc.poll() is not None
        self.pump.join(timeout=5)
        return "".join(self.stderr)


def stop_all(started: list[Server]) -> None:
    """Kill what is still running of these subprocesses, and collect their stderr."""
    for server in started:
        if server.proc.poll() is None:
            server.proc.kill()
        server.proc.wait(timeout=10)
        server.all_stderr()


def base_path(flags: tuple[str, ...]) -> str:
    """The --base-path among serve flags (the last one wins, as in argparse), or ""."""
    paths = [flags[i + 1] for i, flag in enumerate(flags[:-1]) if flag == "--base-path"]
    return paths[-1].rstrip("/") if paths else ""


def tls_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A certificate for 127.0.0.1 from a throwaway CA: cert chain, key and CA files."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    certfile, keyfile, cafile = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    certfile.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(keyfile))
    ca.cert_pem.write_to_path(str(cafile))
    return certfile, keyfile, cafile


def hash_pw(password: str, cost: int = 4) -> str:
    """A bcrypt hash for a users-file line (cost 4: fast, and enough for tests)."""
    import bcrypt  # here: only the tests of users and sign-in need it

    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost)).decode()


JOURNAL_REMOTE = "/lib/systemd/systemd-journal-remote"
# journalctl 252's --follow shows the current boot only: entries must claim to be from it.
BOOT_ID = Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")


def has_journal_tools() -> bool:
    return os.access(JOURNAL_REMOTE, os.X_OK) and shutil.which("journalctl") is not None


def write_journal(path: Path, *entries: dict[str, str]) -> None:
    """Append entries (export format) to the journal file `path` (must end in .journal)."""
    now_us = int(time.time() * 1_000_000)
    blocks = []
    for entry in entries:
        fields = {"_BOOT_ID": BOOT_ID, "__REALTIME_TIMESTAMP": str(now_us), **entry}
        blocks.append("".join(f"{k}={v}\n" for k, v in fields.items()) + "\n")
    subprocess.run(
        [JOURNAL_REMOTE, f"--output={path}", "-"],
        input="".join(blocks).encode(),
        check=True,
        capture_output=True,
    )


class Relay:
    """A TCP relay on 127.0.0.1 to a server's port, which a test can cut: its connections
    close, and new ones are closed at once, until it is joined again. To the server that is
    its clients gone; to a browser, a network that dropped and came back."""

    def __init__(self, port: int) -> None:
        self.port = 0
        self._to = port
        self._is_cut = False
        self._open: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> Relay:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def cut(self) -> None:
        self._is_cut = True
        for writer in list(self._open):
            writer.close()

    def join(self) -> None:
        self._is_cut = False

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._is_cut:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._to)
        self._open |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                self._open.discard(dst)
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
