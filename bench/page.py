"""The dashboard in Chromium, measured from inside: ``python bench/page.py URL SECONDS [LINES]``.

Opens the page (Debian's chromium, driven by Playwright), waits until the stream is live,
prints ``ready``, then for SECONDS records the main thread's busy time (Chrome's own
TaskDuration, from the DevTools Performance domain), long tasks (> 50 ms), frames drawn and
the DOM node count every second. With LINES, it finally checks that the log pane shows the
last line written (``<LINES-1> ...``), so a page that fell behind cannot pass. Prints one JSON
line.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import time
from typing import Any

from playwright.async_api import CDPSession, async_playwright, expect

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

OBSERVE = """() => {
  window.__long = [];
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) window.__long.push(e.duration);
  }).observe({ type: "longtask" });
  window.__frames = 0;
  const tick = () => { window.__frames++; requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
}"""
LAST_LINE = """() => {
  const lines = document.querySelectorAll('.log-pane[data-source="app"] .line');
  return { count: lines.length, last: lines.length ? lines[lines.length - 1].textContent : "" };
}"""


async def metrics(cdp: CDPSession) -> dict[str, float]:
    got = await cdp.send("Performance.getMetrics")
    return {m["name"]: m["value"] for m in got["metrics"]}


async def measure(url: str, seconds: float, lines: int | None) -> dict[str, Any]:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = await browser.new_page(viewport={"width": 1400, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        await page.goto(url)
        # The page's CSP forbids eval, so wait with locators and evaluate(), not wait_for_function.
        await expect(page.locator("#conn-state")).to_have_text("live", timeout=15_000)
        cdp = await page.context.new_cdp_session(page)
        await cdp.send("Performance.enable", {"timeDomain": "threadTicks"})
        await page.evaluate(OBSERVE)
        m0, t0 = await metrics(cdp), time.monotonic()
        print("ready", flush=True)
        nodes, elements = [], []
        while time.monotonic() - t0 < seconds:
            await asyncio.sleep(1)  # sampling interval of the DOM size, not synchronisation
            nodes.append((await metrics(cdp))["Nodes"])
            elements.append(await page.evaluate("document.getElementsByTagName('*').length"))
        m1, t1 = await metrics(cdp), time.monotonic()
        shown = None
        if lines:
            want = f"{lines - 1} "
            deadline = time.monotonic() + 30
            shown = await page.evaluate(LAST_LINE)
            while not shown["last"].startswith(want) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)  # polling the page for its last line
                shown = await page.evaluate(LAST_LINE)
            shown["has_last_line"] = shown["last"].startswith(want)
            del shown["last"]
        long = await page.evaluate("window.__long")
        frames = await page.evaluate("window.__frames")
        await browser.close()
    wall = t1 - t0
    return {
        "seconds": wall,
        "busy_pct": (m1["TaskDuration"] - m0["TaskDuration"]) / wall * 100,
        **{
            f"{k.removesuffix('Duration').lower()}_pct": (m1[k] - m0[k]) / wall * 100
            for k in ("ScriptDuration", "RecalcStyleDuration", "LayoutDuration")
        },
        "long_tasks": len(long),
        "long_task_ms_max": max(long, default=0.0),
        "long_task_pct": sum(long) / 1000 / wall * 100,
        "frames_per_s": frames / wall,
        # One sample a second: elements in the document, and Chrome's count of DOM nodes
        # (which includes removed ones not yet garbage-collected).
        "dom_elements": elements,
        "dom_nodes": nodes,
        "js_heap_mb": m1["JSHeapUsedSize"] / 2**20,
        "pane": shown,
        "errors": errors,
    }


if __name__ == "__main__":
    url, secs = sys.argv[1], float(sys.argv[2])
    n = int(sys.argv[3]) if len(sys.argv) > 3 else None
    print(json.dumps(asyncio.run(measure(url, secs, n))), flush=True)
