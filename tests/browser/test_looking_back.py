"""The dashboard's way back: scrolling above a pane's oldest line loads earlier lines, a click
on a chart shows every pane's lines of that moment (shareable as #t=), and one click goes
back to live. Real Chromium against the real server."""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
from helpers import Server
from pages import OpenPage, pane_lines
from playwright.async_api import Locator, Page, Route, expect


def pane(page: Page) -> Locator:
    return page.locator('section.log-pane[data-source="app"]')


async def numbers(page: Page) -> list[int]:
    """The numbers of the `app N` lines the pane shows, top to bottom."""
    texts = await pane_lines(pane(page))
    return [int(t.split()[1]) for t in texts if t.startswith("app ")]


async def write_events(server: Server, log: Path, batches: int, size: int) -> float:
    """`batches` events of `size` lines each (one write each, each seen published before the
    next); returns the time between the middle two."""
    middle = 0.0
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{server.url}/events?types=log&sources=app") as resp:
            async for raw in resp.content:
                if raw.startswith(b"event: hello"):
                    break
            for b in range(batches):
                if b == batches // 2:
                    # A quiet moment between two events, wider than the page's 1 ms of #t=.
                    await asyncio.sleep(0.005)
                    middle = time.time()
                    await asyncio.sleep(0.005)
                with log.open("a") as f:
                    f.write("".join(f"app {b * size + i}\n" for i in range(size)))
                last = f'"app {b * size + size - 1}"'.encode()
                async for raw in resp.content:
                    if last in raw:
                        break
    return math.floor(middle * 1000) / 1000  # the page's #t= has milliseconds: not later


async def test_scrolling_up_loads_earlier_lines_in_order(
    open_page: OpenPage, start_server: Callable[..., Server], tmp_path: Path
) -> None:
    log = tmp_path / "app.log"
    log.touch()
    config = tmp_path / "c.toml"
    config.write_text("[stream]\nhistory_events = 5\n")  # a new page gets 5 events: 500 lines
    server = start_server("--config", str(config), "--log", f"app={log}")
    await write_events(server, log, 30, 100)
    page = (await open_page(f"{server.url}/")).page
    await expect(pane(page).locator(".line").last).to_have_text("app 2999", timeout=10_000)
    await expect(pane(page).locator(".log-count")).to_have_text("500 lines")
    follow = pane(page).locator("button.log-follow")
    await expect(follow).to_contain_text("Live")
    lines = pane(page).locator(".log-lines")
    for oldest in (2000, 1500):
        await lines.evaluate("box => box.scrollTop = 0")
        await expect(follow).to_contain_text("Paused")  # scrolled up: no longer following
        # loaded above, the lines on screen kept in place
        await expect(pane(page).locator(".log-count")).to_have_text(f"{3000 - oldest:,} lines")
        await expect(pane(page).locator(".line").first).not_to_be_in_viewport()
    shown = await numbers(page)
    assert shown == list(range(1500, 3000))  # earlier lines above, in order, none twice


async def test_a_chart_click_shows_that_moment_and_one_click_goes_back_to_live(
    open_page: OpenPage, start_server: Callable[..., Server], tmp_path: Path
) -> None:
    log = tmp_path / "app.log"
    log.touch()
    server = start_server("--log", f"app={log}", "--interval", "0.2")
    moment = await write_events(server, log, 20, 10)
    page = (await open_page(f"{server.url}/#t={moment:.3f}")).page
    # Opened with #t=: every pane shows the lines around that moment, the first after it marked.
    mark = pane(page).locator(".line.moment")
    await expect(mark).to_have_text("app 100", timeout=10_000)
    assert (await numbers(page))[0] == 0 and (await numbers(page))[-1] == 199
    follow = pane(page).locator("button.log-follow")
    await expect(follow).to_contain_text("Back to live")
    with log.open("a") as f:
        f.write("app 200\n")
    await expect(follow).to_contain_text("1 new")
    await follow.click()
    await expect(pane(page).locator(".line").last).to_have_text("app 200")
    await expect(follow).to_contain_text("Live")
    assert "#t=" not in page.url
    # A click on a chart point: the panes jump to its time, and the URL can be shared.
    chart = page.locator('[data-chart="cpu"] .u-over')
    await expect(chart).to_be_visible()
    box = await chart.bounding_box()
    assert box is not None
    await page.mouse.move(box["x"] + box["width"] - 5, box["y"] + box["height"] / 2)
    await page.mouse.click(box["x"] + box["width"] - 5, box["y"] + box["height"] / 2)
    await expect(follow).to_contain_text("Back to live")
    await expect(page).to_have_url(re.compile(r"#t=\d+\.\d{3}$"))
    await expect(pane(page).locator(".moment-note")).to_be_visible()


async def test_back_to_live_loses_and_repeats_no_line_that_came_meanwhile(
    open_page: OpenPage, start_server: Callable[..., Server], tmp_path: Path
) -> None:
    """Lines keep coming while "Back to live" fetches the newest ones, on a slow network:
    the pane ends with every line once, in order. Those that came after the server answered
    follow its page; those it held, still on their way on the stream, are not added again."""
    log = tmp_path / "app.log"
    log.touch()
    server = start_server("--log", f"app={log}")
    moment = await write_events(server, log, 20, 10)
    page = (await open_page(f"{server.url}/#t={moment:.3f}")).page
    await expect(pane(page).locator(".line.moment")).to_have_text("app 100", timeout=10_000)

    async def slow_answer(route: Route) -> None:
        response = await route.fetch()
        await asyncio.sleep(0.5)  # the network, not a wait for anything
        await route.fulfill(response=response)

    # The "Live" page only: the newest lines of the source (no moment in the query).
    await page.route(lambda url: "/api/logs?" in url and "at=" not in url, slow_answer)

    async def write(first: int, last: int) -> None:
        for n in range(first, last):
            with log.open("a") as f:
                f.write(f"app {n}\n")
            await asyncio.sleep(0.004)  # ~250 lines/s, one write each

    writing = asyncio.create_task(write(200, 600))
    follow = pane(page).locator("button.log-follow")
    await expect(follow).to_contain_text(re.compile(r"[2-9]\d new"))
    await follow.click()
    await writing
    await expect(pane(page).locator(".line").last).to_have_text("app 599", timeout=10_000)
    shown = await numbers(page)
    assert shown == list(range(shown[0], 600))
