"""Shared fixtures: configs, the in-process server, stream readers, and polling with a deadline."""

from __future__ import annotations

import asyncio
import queue
import re
import shutil
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from aiohttp import ClientResponse
from playwright.async_api import Browser, ConsoleMessage, Page, Request, async_playwright

from monitor.client.printer import SSEEvent, SSEParser
from monitor.config import Config

LISTENING = re.compile(r"listening on (https?://\S+)")
MONITOR = [sys.executable, "-m", "monitor"]


async def wait_until(check: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Poll `check` until it is true; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout_s}s")
        await asyncio.sleep(0.02)


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
        seen = []
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
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no 'listening on' after {timeout_s}s") from None
            assert line is not None, f"stderr ended before 'listening on': {self.stderr}"
            if match := LISTENING.search(line):
                return match.group(1)

    def all_stderr(self) -> str:
        """Everything the process wrote to stderr; call once it has exited."""
        assert self.proc.poll() is not None
        self.pump.join(timeout=5)
        return "".join(self.stderr)


def base_path(flags: tuple[str, ...]) -> str:
    """The --base-path among serve flags (the last one wins, as in argparse), or ""."""
    paths = [flags[i + 1] for i, flag in enumerate(flags[:-1]) if flag == "--base-path"]
    return paths[-1].rstrip("/") if paths else ""


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Starts `serve --port 0 <flags>` and waits until it answers; kills leftovers at the end."""
    started: list[Server] = []

    def start(*flags: str, ssl_context: ssl.SSLContext | None = None) -> Server:
        proc = subprocess.Popen(
            [*MONITOR, "serve", "--port", "0", *flags],
            cwd=tmp_path,
            stderr=subprocess.PIPE,
            text=True,
        )
        server = Server(proc)
        started.append(server)
        server.url = server.wait_for_url()
        # An answered request means serve() reached stop.wait(): its signal handlers are in place
        # (the log line alone does not; see test_sigterm_once_accepting_exits_0).
        healthz = f"{server.url}{base_path(flags)}/healthz"
        with urllib.request.urlopen(healthz, timeout=5, context=ssl_context) as resp:
            assert resp.status == 200
        return server

    yield start
    for server in started:
        if server.proc.poll() is None:
            server.proc.kill()
        server.proc.wait(timeout=10)
        server.all_stderr()


@pytest.fixture
def config() -> Config:
    """A config with two log sources and a short heartbeat, for in-process servers."""
    from monitor.config import LogSource

    return Config(
        port=0,
        logs=(LogSource("app", "/nonexistent/app.log"), LogSource("db", "/nonexistent/db.log")),
        heartbeat_s=0.2,
        buffer_events=1000,
        buffer_bytes=1024 * 1024,
        history_events=5,
    )


# Real Chromium (Debian's /usr/bin/chromium) driven by Playwright, for tests/browser.
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps dialling Google on a closed network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class Watched:
    """A page and what it did that a user would not want: console errors, foreign requests."""

    page: Page
    origin: str
    errors: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def on_request(self, request: Request) -> None:
        parts = urlsplit(request.url)
        if parts.scheme in ("http", "https") and f"{parts.scheme}://{parts.netloc}" != self.origin:
            self.foreign.append(request.url)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is missing: `make test` installs it (apt, as root)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


@pytest.fixture
async def open_page(browser: Browser) -> AsyncIterator[Callable[..., object]]:
    """Opens the dashboard of `url` in a new page, watching console and requests."""
    opened: list[Watched] = []

    async def open_(url: str, *, width: int = 1366, height: int = 768) -> Watched:
        context = await browser.new_context(viewport={"width": width, "height": height})
        page = await context.new_page()
        parts = urlsplit(url)
        watched = Watched(page, f"{parts.scheme}://{parts.netloc}")
        page.on("console", watched.on_console)
        page.on("pageerror", lambda exc: watched.errors.append(str(exc)))
        page.on("request", watched.on_request)
        await page.goto(url)
        opened.append(watched)
        return watched

    yield open_
    for watched in opened:
        await watched.page.context.close()
