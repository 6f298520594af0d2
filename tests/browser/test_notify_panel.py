"""The alerts panel shows each notification target's health, live: a target whose receiver
fails turns to failing, and back once a retry gets through. Real Chromium, a real server,
a real receiver."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from aiohttp import web
from helpers import Server
from pages import OpenPage
from playwright.async_api import expect
from pytest_aiohttp import AiohttpServer

pytestmark = pytest.mark.browser


async def test_the_alerts_panel_shows_a_failing_target_and_its_recovery(
    open_page: OpenPage,
    start_server: Callable[..., Server],
    aiohttp_server: AiohttpServer,
    tmp_path: Path,
) -> None:
    answer = [500]
    got: list[bytes] = []

    async def hook(request: web.Request) -> web.Response:
        got.append(await request.read())
        return web.Response(status=answer[0], text="receiver says no" if answer[0] >= 400 else "")

    app = web.Application()
    app.router.add_post("/hook", hook)
    receiver = await aiohttp_server(app)
    log = tmp_path / "app.log"
    log.touch()
    config = tmp_path / "c.toml"
    config.write_text(
        '[[alerts]]\nname = "boom"\nsource = "app"\npattern = "BOOM"\nseverity = "critical"\n'
        f'[[notify]]\nname = "ops"\nkind = "webhook"\nurl = "{receiver.make_url("/hook")}"\n'
    )
    server = start_server("--config", str(config), "--log", f"app={log}")
    watched = await open_page(f"{server.url}/")
    page = watched.page
    chip = page.locator('#notify-targets li[data-name="ops"]')
    await expect(chip).to_have_text("ops (webhook)", timeout=10_000)
    await expect(chip).to_have_attribute("data-state", "ok")
    with log.open("a") as f:
        f.write("BOOM\n")
    await expect(page.locator('.alert[data-rule="boom"]')).to_have_attribute("data-state", "firing")
    await expect(chip).to_have_attribute("data-state", "failing", timeout=10_000)
    await expect(chip).to_have_text("ops (webhook) · failing")
    assert "HTTP 500: receiver says no" in (await chip.get_attribute("title") or "")
    answer[0] = 200  # the next retry (1 s after the first try) gets through
    await expect(chip).to_have_attribute("data-state", "ok", timeout=10_000)
    assert len(got) >= 2
    assert watched.errors == [] and watched.foreign == []
