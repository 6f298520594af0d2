"""The fleet page in real Chromium: real agents publish to a real redis-server, a real
dashboard server (`serve --redis`) shows every host live; a dead host turns down on the
page; filtering, sorting; a click opens the host's own dashboard, reading its logs."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import Server
from pages import OpenPage
from playwright.async_api import expect
from redis_server import RedisServer

pytestmark = pytest.mark.browser
Start = Callable[..., Server]


def agent_for(start_agent: Start, server: RedisServer, tmp_path: Path, name: str) -> Path:
    log = tmp_path / f"{name}.log"
    log.write_text(f"hello from {name}\n")
    start_agent(
        "--redis", server.url, "--name", name, "--log", f"app={log}",
        "--state-dir", str(tmp_path / f"state-{name}"), "--interval", "0.5",
    )  # fmt: skip
    return log


async def test_the_fleet_page_shows_every_host_live_and_opens_one(
    open_page: OpenPage,
    start_server: Start,
    start_agent: Start,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    web1_log = agent_for(start_agent, redis_server, tmp_path, "web1")
    agent_for(start_agent, redis_server, tmp_path, "db1")
    dies = tmp_path / "dies.log"
    dies.touch()
    doomed = start_agent(
        "--redis", redis_server.url, "--name", "zz-dies", "--log", f"app={dies}",
        "--state-dir", str(tmp_path / "state-dies"), "--interval", "0.5",
    )  # fmt: skip
    dashboard = start_server("--redis", redis_server.url, "--no-publish")
    watched = await open_page(f"{dashboard.url}/")
    page = watched.page
    await expect(page.locator("#conn-state")).to_have_text("live", timeout=15_000)
    rows = page.locator("#fleet-rows .fleet-row:not([hidden])")
    await expect(rows.locator(".name")).to_have_text(["db1", "web1", "zz-dies"], timeout=15_000)
    for name in ("db1", "web1", "zz-dies"):
        row = page.locator(f'#fleet-rows .fleet-row[data-host="{name}"]')
        await expect(row.locator(".host-state")).to_have_text("up", timeout=10_000)
        await expect(row.locator(".cpu")).to_have_text(re.compile(r"\d%"))  # a figure, not "–"
        await expect(row.locator("svg.spark polyline")).to_have_attribute("points", re.compile(","))

    doomed.proc.kill()  # the page turns it down live, with no reload
    dead = page.locator('#fleet-rows .fleet-row[data-host="zz-dies"]')
    await expect(dead.locator(".host-state")).to_have_text("down", timeout=15_000)
    await expect(dead.locator(".alerts")).to_have_text("host down", timeout=10_000)
    # Retired: its keys deleted, its row goes (once it has been gone as long as `down_s`).
    admin = redis_server.client()
    admin.delete(*admin.keys("smon:zz-dies:*"))
    await expect(rows.locator(".name")).to_have_text(["db1", "web1"], timeout=20_000)

    await page.locator("button.sort[data-sort=name]").click()  # by name, the other way
    await expect(rows.locator(".name")).to_have_text(["web1", "db1"])
    await page.locator("#fleet-filter").fill("web")
    await expect(rows.locator(".name")).to_have_text(["web1"])
    await expect(page.locator("#fleet-counts")).to_contain_text("1 shown")

    await page.locator('#fleet-rows .fleet-row[data-host="web1"] .cpu').click()  # the row opens it
    await expect(page).to_have_url(f"{dashboard.url}/host/web1")
    await expect(page.locator("#host")).to_have_text("web1")
    await expect(page.locator("#conn-state")).to_have_text("live", timeout=15_000)
    pane = page.locator('.log-pane[data-source="app"]')
    await expect(pane).to_contain_text("hello from web1", timeout=10_000)
    # The source's status, kept in the host's sticky hash, arrives with an id of its own.
    await expect(pane.locator(".log-status")).to_have_attribute("data-state", "following")
    with web1_log.open("a") as f:
        f.write("<b>live</b> from web1\n")
    await expect(pane).to_contain_text("<b>live</b> from web1", timeout=10_000)
    await expect(page.locator("#fleet-link")).to_have_attribute("href", "/")
    assert watched.errors == [] and watched.foreign == []
