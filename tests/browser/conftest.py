"""Fixtures for tests/browser: real Chromium (Debian's /usr/bin/chromium) driven by
Playwright, and pages watched for what a user would not want."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from pages import CHROMIUM, CHROMIUM_ARGS, OpenPage, Watched
from playwright.async_api import Browser, async_playwright


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is missing: `make test` installs it (apt, as root)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


@pytest.fixture
async def open_page(browser: Browser) -> AsyncIterator[OpenPage]:
    """Opens the dashboard of `url` in a new page, watching console and requests."""
    opened: list[Watched] = []

    async def open_(url: str, *, width: int = 1366, height: int = 768) -> Watched:
        context = await browser.new_context(viewport={"width": width, "height": height})
        page = await context.new_page()
        parts = urlsplit(url)
        watched = Watched(page, f"{parts.scheme}://{parts.netloc}")
        page.on("console", watched.on_console)
        page.on("pageerror", watched.on_pageerror)
        page.on("request", watched.on_request)
        await page.goto(url)
        opened.append(watched)
        return watched

    yield open_
    for watched in opened:
        await watched.page.context.close()
