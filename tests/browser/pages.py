"""What browser tests share that is not a fixture: Chromium's path and flags, and a page
watched for console errors and requests to other origins."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit

from playwright.async_api import ConsoleMessage, Error, Page, Request

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

    def on_pageerror(self, error: Error) -> None:
        self.errors.append(str(error))

    def on_request(self, request: Request) -> None:
        parts = urlsplit(request.url)
        if parts.scheme in ("http", "https") and f"{parts.scheme}://{parts.netloc}" != self.origin:
            self.foreign.append(request.url)


class OpenPage(Protocol):
    """The open_page fixture: opens the dashboard of `url` in a new page, watched."""

    async def __call__(self, url: str, *, width: int = 1366, height: int = 768) -> Watched: ...
