"""What browser tests share that is not a fixture: Chromium's path and flags, and a page
watched for console errors and requests to other origins."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit

from playwright.async_api import ConsoleMessage, Error, Locator, Page, Request

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


# Every line a log pane holds, top to bottom, read as a reader would: by scrolling through it,
# from the bottom up, since only the rows in view are in the DOM (logpane.js). Each row's
# data-seq gives its place. It stops short of the top, where the pane would load earlier lines
# (the rows drawn above the view include the first), then scrolls back to where it was: a
# pane that was following follows again, one that was paused stays paused.
PANE_LINES = """async (box) => {
  const frame = () => new Promise((done) => {
    requestAnimationFrame(() => requestAnimationFrame(done));
  });
  const seen = new Map();
  const read = () => {
    for (const row of box.querySelectorAll(".line")) {
      seen.set(Number(row.dataset.seq), row.textContent);
    }
  };
  const stop = 60;
  const was = box.scrollTop;
  let y = box.scrollHeight - box.clientHeight;
  for (;;) {
    if (y >= stop && Math.abs(y - box.scrollTop) >= 1) {
      box.scrollTop = y;
      await frame();
    }
    read();
    if (y <= stop) break;
    y = Math.max(stop, y - box.clientHeight / 2);
  }
  if (Math.abs(was - box.scrollTop) >= 1) {
    box.scrollTop = was;
    await frame();
  }
  return [...seen.entries()].sort((a, b) => a[0] - b[0]).map(([, text]) => text);
}"""


async def pane_lines(pane: Locator) -> list[str]:
    """Every line of a log pane (`section.log-pane`), top to bottom, gap marks and notes too."""
    return list(await pane.locator(".log-lines").evaluate(PANE_LINES))
