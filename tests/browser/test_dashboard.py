"""The dashboard in real Chromium against a real server writing real log files."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import bcrypt
import pytest
from helpers import Relay, Server
from pages import OpenPage, Watched, pane_lines
from playwright.async_api import Browser, BrowserContext, Locator, Page, expect

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parents[2]
CHARTS = ("cpu", "cores", "load", "memory", "diskio", "netio")
# A hash of the canvas pixels, or null while it is blank (one colour everywhere).
CANVAS_PIXELS = """(selector) => {
  const canvas = document.querySelector(selector);
  if (!canvas || !canvas.width || !canvas.height) return null;
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let hash = 0, differs = false;
  for (let i = 0; i < data.length; i += 4) {
    if (!differs && (data[i] !== data[0] || data[i + 1] !== data[1] || data[i + 2] !== data[2]
        || data[i + 3] !== data[3])) differs = true;
    hash = (hash * 31 + data[i] + data[i + 1] * 7 + data[i + 2] * 13 + data[i + 3]) | 0;
  }
  return differs ? hash : null;
}"""


async def canvas_pixels(page: Page, chart: str, *, other_than: int | None = None) -> int:
    """Wait (up to 10 s) until the chart's canvas is drawn (and differs from `other_than`).

    Polled with page.evaluate: the page's CSP forbids the string eval wait_for_function uses.
    """
    deadline = time.monotonic() + 10
    while True:
        pixels = await page.evaluate(CANVAS_PIXELS, f'[data-chart="{chart}"] canvas')
        if pixels is not None and pixels != other_than:
            return int(pixels)
        assert time.monotonic() < deadline, f"{chart} chart not drawn (or not moving) after 10s"
        await asyncio.sleep(0.05)


def append(path: Path, *lines: str) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))


@pytest.fixture
def app_log(tmp_path: Path) -> Path:
    log = tmp_path / "app.log"
    append(log, "2026-11-25 12:00:00 INFO service started", "2026-11-25 12:00:01 WARN disk 85%")
    return log


@pytest.fixture
def server(start_server: Callable[..., Server], app_log: Path, tmp_path: Path) -> Server:
    sys_log = tmp_path / "sys.log"
    append(sys_log, "kernel: eth0 link up")
    return start_server("--log", f"app={app_log}", "--log", f"sys={sys_log}", "--interval", "0.2")


def pane(page: Page, source: str = "app") -> Locator:
    return page.locator(f'.log-pane[data-source="{source}"]')


async def height(locator: Locator) -> float:
    """The rendered height of `locator`'s element (None from bounding_box: not rendered)."""
    box = await locator.bounding_box()
    assert box is not None, "not rendered"
    return box["height"]


async def live(page: Page) -> None:
    await expect(page.locator("#conn-state")).to_have_text("live", timeout=10_000)


async def test_loads_clean_and_charts_draw_moving_data(open_page: OpenPage, server: Server) -> None:
    watched = await open_page(f"{server.url}/")
    page = watched.page
    await live(page)
    for chart in CHARTS:
        await canvas_pixels(page, chart)
    # live points arrive every 0.2 s: the picture moves
    await canvas_pixels(page, "cpu", other_than=await canvas_pixels(page, "cpu"))
    await expect(page.locator("#procs tbody tr").first).to_be_visible()
    await expect(page.locator("#disk-usage [data-mount]").first).to_be_visible()
    assert await page.locator("#host").inner_text() == socket.gethostname()
    assert watched.errors == []
    assert watched.foreign == []


async def test_appended_line_appears_in_its_pane(
    open_page: OpenPage, server: Server, app_log: Path
) -> None:
    page = (await open_page(f"{server.url}/")).page
    await live(page)
    await expect(pane(page).locator(".line").last).to_have_text(
        "2026-11-25 12:00:01 WARN disk 85%", timeout=10_000
    )
    append(app_log, "2026-11-25 12:00:02 ERROR something broke")
    await expect(pane(page).locator(".line").last).to_have_text(
        "2026-11-25 12:00:02 ERROR something broke"
    )
    await expect(pane(page).locator(".log-status")).to_contain_text("following")


async def test_html_in_a_log_line_is_shown_as_text_and_runs_nothing(
    open_page: OpenPage, server: Server, app_log: Path
) -> None:
    page = (await open_page(f"{server.url}/")).page
    await live(page)
    evil = '<img src=x onerror="window.__pwned = 1"><script>window.__pwned = 2</script>'
    append(app_log, evil)
    await expect(pane(page).locator(".line").last).to_have_text(evil, timeout=10_000)
    assert await pane(page).locator("img, script").count() == 0
    assert await page.evaluate("window.__pwned") is None


async def test_filter_shows_matching_lines_and_a_bad_regex_is_no_crash(
    open_page: OpenPage, server: Server, app_log: Path
) -> None:
    watched = await open_page(f"{server.url}/")
    page = watched.page
    await live(page)
    append(app_log, "alpha one", "beta two", "alpha three")
    await expect(pane(page).locator(".line").last).to_have_text("alpha three", timeout=10_000)
    await pane(page).locator("input.log-filter").fill("alpha")
    await expect(pane(page).locator(".line:visible")).to_have_text(["alpha one", "alpha three"])
    await pane(page).locator("input.log-filter").fill("/^beta/")
    await expect(pane(page).locator(".line:visible")).to_have_text(["beta two"])
    await pane(page).locator("input.log-filter").fill("/[unclosed/")
    await pane(page).locator("input.log-filter").fill("")
    await expect(pane(page).locator(".line:visible")).to_have_count(5)
    assert watched.errors == []


async def test_long_lines_scroll_sideways_until_wrap_is_on(
    open_page: OpenPage, server: Server, app_log: Path
) -> None:
    page = (await open_page(f"{server.url}/")).page
    await live(page)
    append(app_log, "short", "long " + "word " * 400)
    line = pane(page).locator(".line").last
    await expect(line).to_contain_text("long word", timeout=10_000)
    one_line = await height(pane(page).locator(".line").first)
    assert await height(line) == one_line  # one row; the pane scrolls
    await pane(page).locator("button.log-wrap").click()
    await expect(pane(page).locator("button.log-wrap")).to_have_attribute("aria-pressed", "true")
    assert await height(line) > 3 * one_line
    await pane(page).locator("button.log-wrap").click()
    assert await height(line) == one_line


async def test_pause_counts_new_lines_and_resume_shows_them(
    open_page: OpenPage, server: Server, app_log: Path
) -> None:
    page = (await open_page(f"{server.url}/")).page
    await live(page)
    follow = pane(page).locator("button.log-follow")
    await expect(follow).to_contain_text("Live", timeout=10_000)
    await page.locator("body").press("Space")  # space pauses
    await expect(follow).to_contain_text("Paused")
    append(app_log, "while paused 1", "while paused 2", "while paused 3")
    await expect(follow).to_contain_text("3")
    await follow.click()
    await expect(follow).to_contain_text("Live")
    await expect(pane(page).locator(".line").last).to_have_text("while paused 3")
    await expect(pane(page).locator(".line").last).to_be_in_viewport()


async def test_slash_focuses_the_filter_and_tabs_switch_panes(
    open_page: OpenPage, server: Server
) -> None:
    page = (await open_page(f"{server.url}/")).page
    await live(page)
    await page.locator('.log-tab[data-source="sys"]').click()
    await expect(pane(page, "sys")).to_be_visible()
    await expect(pane(page, "sys").locator(".line").last).to_have_text("kernel: eth0 link up")
    await page.locator("body").press("/")
    await expect(pane(page, "sys").locator("input.log-filter")).to_be_focused()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_page_recovers_by_itself_when_the_server_restarts(
    open_page: OpenPage, start_server: Callable[..., Server], app_log: Path
) -> None:
    port = str(free_port())
    flags = ("--port", port, "--log", f"app={app_log}", "--interval", "0.2")
    first = start_server(*flags)
    page = (await open_page(f"{first.url}/")).page
    await live(page)
    first.proc.send_signal(signal.SIGTERM)
    assert first.proc.wait(timeout=5) == 0
    await expect(page.locator("#conn-state")).to_have_text("reconnecting", timeout=10_000)
    start_server(*flags)
    await live(page)
    append(app_log, "after the restart")
    await expect(pane(page).locator(".line").last).to_have_text("after the restart", timeout=10_000)
    texts = await pane_lines(pane(page))
    assert texts.count("2026-11-25 12:00:00 INFO service started") == 1  # refilled, not doubled


async def published(server: Server) -> int:
    """How many events the server has published so far."""

    def get() -> int:
        with urllib.request.urlopen(f"{server.url}/healthz", timeout=5) as resp:
            return int(json.load(resp)["events_published"])

    return await asyncio.to_thread(get)


async def test_a_page_away_longer_than_the_buffer_comes_back_whole(
    open_page: OpenPage, start_server: Callable[..., Server], app_log: Path, tmp_path: Path
) -> None:
    """The network drops while more events pass than the server's buffer holds (16 here),
    and the app's log file is deleted meanwhile. Back, the page says the file is gone (its
    status comes again with the gap) and its charts ask the history again, which covers the
    time the page was away: no straight line drawn across it."""
    config = tmp_path / "small.toml"
    config.write_text("[stream]\nbuffer_events = 16\nretry_ms = 200\n")
    server = start_server("--config", str(config), "--log", f"app={app_log}", "--interval", "0.2")
    relay = await Relay(int(urlsplit(server.url).port or 0)).start()
    try:
        watched = await open_page(f"http://127.0.0.1:{relay.port}/")
        page = watched.page
        await live(page)
        status = pane(page).locator(".log-status")
        await expect(status).to_have_text(re.compile("following"))
        before = await published(server)
        relay.cut()
        away = time.time()
        await expect(page.locator("#conn-state")).to_have_text("reconnecting", timeout=10_000)
        app_log.unlink()
        deadline = time.monotonic() + 20
        while await published(server) < before + 40:  # 2.5 buffers' worth
            assert time.monotonic() < deadline, "the server published too little while away"
            await asyncio.sleep(0.2)
        async with page.expect_response(
            lambda r: "/api/history" in r.url, timeout=10_000
        ) as history:
            relay.join()
            back = time.time()
        await live(page)
        await expect(status).to_contain_text("waiting", timeout=10_000)
        ts = (await (await history.value).json())["ts"]
        seen = [t for t in ts if away - 1 <= t <= back]
        assert seen and seen[0] < away and seen[-1] > back - 1
        assert max(b - a for a, b in zip(seen, seen[1:], strict=False)) < 1.0
        assert await pane(page).locator(".gap").count() == 0  # no line was lost
        # Chrome reports each request the drop cut short; nothing else went wrong
        assert [e for e in watched.errors if not e.startswith("Failed to load resource")] == []
    finally:
        await relay.close()


async def stream_clients(server: Server) -> int:
    """How many event streams the server holds open now."""

    def get() -> int:
        with urllib.request.urlopen(f"{server.url}/healthz", timeout=5) as resp:
            return int(json.load(resp)["clients"])

    return await asyncio.to_thread(get)


async def open_tabs(context: BrowserContext, url: str, n: int) -> list[Watched]:
    """`n` dashboard tabs of one browser profile, each live; prints how long each took."""
    tabs: list[Watched] = []
    for _ in range(n):
        page = await context.new_page()
        watched = Watched(page, url)
        page.on("console", watched.on_console)
        page.on("pageerror", watched.on_pageerror)
        started = time.monotonic()
        await page.goto(f"{url}/")
        await live(page)
        print(f"tab {len(tabs) + 1} live {time.monotonic() - started:.2f}s after goto")
        tabs.append(watched)
    return tabs


async def test_several_tabs_stay_live(browser: Browser, server: Server, app_log: Path) -> None:
    # Eight tabs of one browser profile, beyond HTTP/1.1's six connections per origin: one
    # tab holds the stream and forwards it to the others.
    context = await browser.new_context()
    tabs = await open_tabs(context, server.url, 8)
    await wait_until_async(lambda: stream_clients(server), 1)
    append(app_log, "seen by every tab")
    for tab in tabs:
        await expect(pane(tab.page).locator(".line").last).to_have_text(
            "seen by every tab", timeout=10_000
        )
        await expect(tab.page.locator("#conn-state")).to_have_text("live")
    # A burst, a write per line: the leader gets most of it as `batch` events (?batch_ms)
    # and forwards each whole; every tab shows every line once, in order. The writes are
    # spread over ~60 ms in groups of ten, so the server reads them as several events within
    # one 16 ms window: written all at once, a busy server could read them as one event,
    # which goes as itself (CI saw that once).
    await tabs[-1].page.evaluate(COUNT_BATCHES)
    burst = [f"burst {i}" for i in range(300)]
    for i, line in enumerate(burst):
        append(app_log, line)
        if i % 10 == 9:
            await asyncio.sleep(0.002)
    for tab in tabs:
        await expect(pane(tab.page).locator(".line").last).to_have_text(burst[-1], timeout=10_000)
        texts = await pane_lines(pane(tab.page))
        assert [t for t in texts if t.startswith("burst ")] == burst
        assert tab.errors == []
    assert await tabs[-1].page.evaluate("window.__batches") > 0, "no batch was forwarded"
    await context.close()


COUNT_BATCHES = """() => {
  window.__batches = 0;
  new BroadcastChannel("sse-monitor:stream").addEventListener("message", (e) => {
    if (e.data.batch !== undefined) window.__batches++;
  });
}"""


async def test_closing_the_leader_tab_leaves_the_others_live(
    browser: Browser, server: Server, app_log: Path
) -> None:
    context = await browser.new_context()
    leader, *others = await open_tabs(context, server.url, 4)
    appended = time.monotonic()
    append(app_log, "before the hand-over")
    seen = await asyncio.gather(*(line_shown(tab.page, "before the hand-over") for tab in others))
    print(f"one leader: the line shown in every tab {max(seen) - appended:.3f}s after append")
    for tab in others:  # hears what the leader forwards, before any rendering
        await tab.page.evaluate(PROBE)
    closed_ms = time.time() * 1000
    await leader.page.close()
    closed = time.monotonic()
    append(app_log, "during the hand-over")  # may reach no tab until a new leader resumes
    seen = await asyncio.gather(*(line_shown(tab.page, "during the hand-over") for tab in others))
    forwarded_ms = min([t for tab in others for t in await tab.page.evaluate("window.__fwd")])
    print(
        f"hand-over: the line forwarded by the new leader {forwarded_ms - closed_ms:.0f} ms"
        f" and shown in every tab {max(seen) - closed:.3f}s after the leader tab closed"
    )
    await wait_until_async(lambda: stream_clients(server), 1)
    append(app_log, "after the hand-over")
    for tab in others:
        lines = pane(tab.page).locator(".line")
        await expect(lines.last).to_have_text("after the hand-over", timeout=10_000)
        await expect(tab.page.locator("#conn-state")).to_have_text("live")
        texts = await pane_lines(pane(tab.page))
        for line in ("before the hand-over", "during the hand-over", "after the hand-over"):
            assert texts.count(line) == 1, f"{line!r} shown {texts.count(line)} times"
        assert tab.errors == []
    await context.close()


PROBE = """() => {
  window.__fwd = [];
  new BroadcastChannel("sse-monitor:stream").addEventListener("message", (e) => {
    const text = e.data.batch ?? (e.data.type === "log" ? e.data.data : "");
    if (text.includes("during")) window.__fwd.push(Date.now());
  });
}"""
LAST_LINE = """() => {
  const lines = document.querySelectorAll('.log-pane[data-source="app"] .line');
  return lines.length ? lines[lines.length - 1].textContent : null;
}"""


async def line_shown(page: Page, text: str, timeout_s: float = 10.0) -> float:
    """Poll (finer than expect() does) until the app pane's last line is `text`; when."""
    deadline = time.monotonic() + timeout_s
    while await page.evaluate(LAST_LINE) != text:
        assert time.monotonic() < deadline, f"{text!r} not shown after {timeout_s}s"
        await asyncio.sleep(0.01)
    return time.monotonic()


async def wait_until_async(
    value: Callable[[], Awaitable[int]], expected: int, timeout_s: float = 10.0
) -> None:
    """Poll an async `value` until it equals `expected`; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while (got := await value()) != expected:
        assert time.monotonic() < deadline, f"{got} after {timeout_s}s, expected {expected}"
        await asyncio.sleep(0.05)


async def test_phone_width_has_no_sideways_scroll(open_page: OpenPage, server: Server) -> None:
    page = (await open_page(f"{server.url}/", width=390, height=844)).page
    await live(page)
    await canvas_pixels(page, "cpu")
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390


async def test_screenshot_for_the_readme(
    open_page: OpenPage, server: Server, app_log: Path
) -> None:
    page = (await open_page(f"{server.url}/")).page
    await live(page)
    # A screenshot of a server that started a second ago shows empty charts: let 20 s of
    # samples accumulate, with a request log scrolling by as it would.
    requests = [
        "INFO GET /api/orders 200 12ms",
        "INFO POST /api/cart 201 48ms",
        "DEBUG cache hit ratio 0.93",
        "WARN slow query on orders: 1.2s",
        "INFO GET /api/orders/1042 200 9ms",
        "ERROR payment gateway timeout after 30s",
    ]
    started = time.monotonic()
    n = 0
    while time.monotonic() - started < 20:
        append(app_log, f"2026-11-25 12:00:{n % 60:02d} {requests[n % len(requests)]}")
        n += 1
        await asyncio.sleep(0.4)  # pacing the demo writer, not waiting for a result
    await expect(pane(page).locator(".log-count")).to_have_text(f"{n + 2} lines", timeout=10_000)
    await canvas_pixels(page, "netio")
    (ROOT / "docs").mkdir(exist_ok=True)
    await page.screenshot(path=str(ROOT / "docs" / "screenshot.png"))
    await page.emulate_media(color_scheme="dark")
    await page.screenshot(path=str(ROOT / "docs" / "screenshot-dark.png"))


FRAME_COUNTER = """() => {
  window.__frames = [];
  const tick = (t) => { window.__frames.push(t); requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
}"""


async def test_a_log_storm_keeps_the_page_smooth_and_bounded(
    open_page: OpenPage, server: Server, app_log: Path
) -> None:
    page = (await open_page(f"{server.url}/")).page
    await live(page)
    await page.evaluate(FRAME_COUNTER)
    started = time.monotonic()
    sent = 0
    while time.monotonic() - started < 6:  # ~1,000 lines/s in 50-line writes
        append(app_log, *(f"storm line {sent + i} INFO payload" for i in range(50)))
        sent += 50
        await asyncio.sleep(0.05)  # pacing the writer
    last = f"storm line {sent - 1} INFO payload"
    await expect(pane(page).locator(".line").last).to_have_text(last, timeout=10_000)
    # The oldest dropped; the DOM holds the rows in view, not every line the pane keeps.
    await expect(pane(page).locator(".log-count")).to_have_text(
        re.compile(r"^5.000 lines \(max\)$")
    )
    assert await pane(page).locator(".line").count() < 100
    frames = await page.evaluate("window.__frames")
    gaps = [b - a for a, b in zip(frames, frames[1:], strict=False)]
    fps = len(frames) / ((frames[-1] - frames[0]) / 1000)
    print(f"{sent} lines in 6 s: {fps:.0f} frames/s, longest frame {max(gaps):.0f} ms")
    assert fps > 20 and max(gaps) < 500


async def test_under_a_base_path_every_url_stays_under_it(
    open_page: OpenPage, start_server: Callable[..., Server], app_log: Path
) -> None:
    server = start_server("--base-path", "/monitor", "--log", f"app={app_log}", "--interval", "0.2")
    watched = await open_page(f"{server.url}/monitor")  # redirected to /monitor/
    page = watched.page
    paths: list[str] = []
    page.on("request", lambda request: paths.append(urlsplit(request.url).path))
    await page.reload()
    await live(page)
    await canvas_pixels(page, "cpu")
    append(app_log, "behind the proxy")
    await expect(pane(page).locator(".line").last).to_have_text("behind the proxy", timeout=10_000)
    assert page.url.endswith("/monitor/")
    assert paths and all(p.startswith("/monitor/") for p in paths), paths
    assert watched.errors == [] and watched.foreign == []


async def test_dashboard_works_with_the_credentials_the_browser_was_given(
    browser: Browser, start_server: Callable[..., Server], app_log: Path, tmp_path: Path
) -> None:
    users = tmp_path / "users"
    users.write_text("ops:" + bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode() + "\n")
    server = start_server("--log", f"app={app_log}", "--users-file", str(users))
    anonymous = await browser.new_context()
    assert (await anonymous.request.get(f"{server.url}/")).status == 401
    await anonymous.close()
    context = await browser.new_context(http_credentials={"username": "ops", "password": "s3cret"})
    page = await context.new_page()
    await page.goto(f"{server.url}/")
    await live(page)  # the EventSource (same origin) sends the same credentials
    append(app_log, "seen with credentials")
    await expect(pane(page).locator(".line").last).to_have_text("seen with credentials")
    await context.close()
