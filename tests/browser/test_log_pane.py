"""A log pane draws only the rows in view (logpane.js): what a reader sees must not show it.
Wrapped lines of every length scroll through without a gap or an overlap, and a paused pane
holds still while new lines arrive and the oldest go. Real Chromium, real server, real file."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import Server
from pages import OpenPage, pane_lines
from playwright.async_api import Locator, Page, expect

pytestmark = pytest.mark.browser

# The drawn rows, top to bottom, and the part of the pane a reader sees (inside its padding),
# in px from the pane's top edge (the page around it may move: its charts redraw).
DRAWN = """(box) => {
  const edge = box.getBoundingClientRect().top + box.clientTop;
  const top = 4;
  const bottom = top + box.clientHeight - 8;
  const rows = [...box.querySelectorAll(".line")].map((n) => {
    const r = n.getBoundingClientRect();
    const seq = Number(n.dataset.seq);
    return { seq, text: n.textContent, top: r.top - edge, bottom: r.bottom - edge };
  });
  const atEnd = box.scrollTop + box.clientHeight >= box.scrollHeight - 1;
  return { top, bottom, rows, atEnd, scrollTop: box.scrollTop, scrollHeight: box.scrollHeight };
}"""
CHARS_PER_WRAPPED_ROW = """(box) => {
  const probe = document.createElement("span");
  probe.textContent = "0".repeat(100);
  probe.style.cssText = "position: absolute; white-space: pre";
  box.append(probe);
  const charPx = probe.getBoundingClientRect().width / 100;
  probe.remove();
  return Math.floor((box.clientWidth - 34) / charPx);
}"""
FRAMES = "() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))"


def pane(page: Page) -> Locator:
    return page.locator('section.log-pane[data-source="app"]')


async def live(page: Page) -> None:
    await expect(page.locator("#conn-state")).to_have_text("live", timeout=10_000)


async def drawn(page: Page) -> dict:  # type: ignore[type-arg]
    await page.evaluate(FRAMES)
    return dict(await pane(page).locator(".log-lines").evaluate(DRAWN))


def assert_view_covered(view: dict, last_seq: int) -> None:  # type: ignore[type-arg]
    """The drawn rows follow each other, each touching the next, and fill the view."""
    rows = view["rows"]
    assert rows, "no rows drawn"
    for above, below in zip(rows, rows[1:], strict=False):
        assert below["seq"] == above["seq"] + 1, (above, below)
        assert abs(below["top"] - above["bottom"]) < 0.5, (above, below)
    assert rows[0]["top"] <= view["top"], ("blank above the first row", view["scrollTop"])
    if rows[-1]["seq"] != last_seq:
        assert rows[-1]["bottom"] >= view["bottom"], ("blank below the last row", view["scrollTop"])


def first_in_view(view: dict) -> dict:  # type: ignore[type-arg]
    """The row at the top of the pane's view."""
    return dict(next(r for r in view["rows"] if r["bottom"] > view["top"] + 1))


async def paused_in(page: Page, log: Path, lines: list[str], at: float) -> Locator:
    """`lines` written and shown, the pane scrolled up to `at` of its height (which pauses
    it); its follow button."""
    with log.open("a") as f:
        f.write("".join(line + "\n" for line in lines))
    count = f"{len(lines):,}".replace(",", ".")
    await expect(pane(page).locator(".log-count")).to_have_text(
        re.compile(f"^{count} lines$"), timeout=10_000
    )
    await (
        pane(page)
        .locator(".log-lines")
        .evaluate("(box, at) => { box.scrollTop = box.scrollHeight * at; }", at)
    )
    follow = pane(page).locator("button.log-follow")
    await expect(follow).to_have_text(re.compile("^Paused"))
    return follow


@pytest.fixture
def app_log(tmp_path: Path) -> Path:
    log = tmp_path / "app.log"
    log.touch()
    return log


@pytest.fixture
async def page(open_page: OpenPage, start_server: Callable[..., Server], app_log: Path) -> Page:
    """The dashboard, live, of a server following `app_log` (empty)."""
    server = start_server("--log", f"app={app_log}")
    opened = (await open_page(f"{server.url}/")).page
    await live(opened)
    return opened


async def test_wrapped_lines_of_every_length_scroll_through_without_gaps(
    page: Page, app_log: Path
) -> None:
    rng = random.Random(17)

    # Short lines, long words, long lines of short words (which wrap at spaces, so take more
    # rows than their length says), and empty lines.
    def line(i: int) -> str:
        shape = rng.randrange(4)
        if shape == 0:
            return f"short {i}"
        if shape == 1:
            return f"{i} " + "x" * rng.randrange(100, 3000)
        if shape == 2:
            return f"{i} " + " ".join(
                "word" * rng.randrange(1, 12) for _ in range(rng.randrange(20, 200))
            )
        return ""

    written = [line(i) for i in range(400)]
    with app_log.open("a") as f:
        f.write("".join(line + "\n" for line in written))
    await expect(pane(page).locator(".log-count")).to_have_text("400 lines", timeout=10_000)
    await pane(page).locator("button.log-wrap").click()
    await pane(page).locator("button.log-follow").click()  # paused: the pane stays where it is put
    box = pane(page).locator(".log-lines")
    view = await drawn(page)
    assert view["atEnd"]  # following until now
    last_seq = 399  # the 400th row: the pane's rows are numbered from 0
    assert view["rows"][-1]["seq"] == last_seq
    assert_view_covered(view, last_seq)
    await box.evaluate("box => { box.scrollTop = 0; }")
    view, steps = await drawn(page), 0
    while not view["atEnd"]:  # top to bottom, 300 px a step: what was in view moves up 300 px
        assert steps < 1000
        await box.evaluate("box => { box.scrollTop += 300; }")
        before, view = view, await drawn(page)
        assert_view_covered(view, last_seq)
        if not view["atEnd"]:  # the last step may be shorter
            was = {r["seq"]: r["top"] for r in before["rows"]}
            moved = [r["top"] - was[r["seq"]] for r in view["rows"] if r["seq"] in was]
            assert moved and all(abs(m + 300) < 1 for m in moved), (view["scrollTop"], moved[:3])
        steps += 1
    assert steps > 20  # wrapped, the 400 lines are many screens tall
    assert await pane_lines(pane(page)) == written


async def test_a_paused_pane_holds_still_while_lines_arrive_and_the_oldest_go(
    page: Page, app_log: Path
) -> None:
    follow = await paused_in(page, app_log, [f"held {i}" for i in range(4000)], 0.9)
    before = await drawn(page)
    at_top = first_in_view(before)["text"]
    assert 3000 < int(at_top.split()[1]) < 4000
    with app_log.open("a") as f:  # 7,000 in all: the pane keeps 5,000, the first 2,000 go
        f.write("".join(f"held {i}\n" for i in range(4000, 7000)))
    await expect(follow).to_have_text(re.compile(r"Paused · 3.000 new$"), timeout=10_000)
    await expect(pane(page).locator(".log-count")).to_have_text(
        re.compile(r"^5.000 lines \(max\)$")
    )
    after = await drawn(page)
    assert first_in_view(after)["text"] == at_top
    assert after["scrollTop"] < before["scrollTop"]  # moved up by the lines that went
    await follow.click()
    last = pane(page).locator(".line").last
    await expect(last).to_have_text("held 6999")
    view = await drawn(page)  # the newest line at the bottom of the pane's view
    assert view["bottom"] - 18 < view["rows"][-1]["bottom"] <= view["bottom"] + 4 + 0.5
    await expect(follow).to_have_text(re.compile("Live"))


async def test_scrolling_up_a_wrapped_pane_while_following_pauses_it_there(
    page: Page, app_log: Path
) -> None:
    """Rows drawn as the pane scrolls are measured, and that moves rows: it must not move the
    reader back to the newest line."""
    # Words that wrap at spaces, one to a row (two do not fit in the pane's width): each line
    # takes five rows where its length says three.
    per_row = await pane(page).locator(".log-lines").evaluate(CHARS_PER_WRAPPED_ROW)
    words = " ".join(["w" * (per_row // 2 + 3)] * 5)
    with app_log.open("a") as f:
        f.write("".join(f"{i} {words}\n" for i in range(600)))
    await expect(pane(page).locator(".log-count")).to_have_text("600 lines", timeout=10_000)
    await pane(page).locator("button.log-wrap").click()
    follow = pane(page).locator("button.log-follow")
    await expect(follow).to_have_text("Live")
    box = pane(page).locator(".log-lines")
    await box.hover()

    was = first_in_view(await drawn(page))["seq"]
    await page.mouse.wheel(0, -810)  # 9 of these 90 px rows: past the rows measured so far
    await expect(follow).to_have_text("Paused")
    view, tops = await drawn(page), list[float]()
    while len(tops) < 3 or len(set(tops[-3:])) > 1:  # until a smooth scroll has ended
        assert len(tops) < 200
        view = await drawn(page)
        tops.append(view["scrollTop"])
    assert not view["atEnd"]
    assert was - 10 <= first_in_view(view)["seq"] <= was - 8, (was, first_in_view(view))
    assert_view_covered(view, 599)


async def test_a_filter_typed_while_paused_keeps_the_reader_near_where_they_were(
    page: Page, app_log: Path
) -> None:
    lines = [f"held {i} {'odd' if i % 2 else 'even'}" for i in range(4000)]
    follow = await paused_in(page, app_log, lines, 0.5)

    def top_row(view: dict) -> int:  # type: ignore[type-arg]
        return int(first_in_view(view)["text"].split()[1])

    was = top_row(await drawn(page))
    odd = was | 1  # the first row "odd" keeps from the one at the top
    for text, first in (("odd", odd), ("even", odd + 1), ("", odd + 1)):
        await pane(page).locator("input.log-filter").fill(text)
        view = await drawn(page)
        assert top_row(view) == first, (text, was, top_row(view))
        await expect(follow).to_have_text("Paused")  # not scrolled to the top, nothing loaded
    await expect(pane(page).locator(".log-count")).to_have_text(re.compile(r"^4.000 lines$"))
