"""The dashboard page: its templates and static assets, and GET /."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from monitor import __version__
from monitor.http.errors import json_error
from monitor.http.keys import FLEET, TEMPLATES, WATCH


def find_web_dir() -> Path:
    """The templates and static assets: inside the installed package, or the checkout's web/."""
    here = Path(__file__).resolve().parent.parent  # the monitor package
    for candidate in (here / "web", here.parent / "web"):
        if (candidate / "templates").is_dir():
            return candidate
    raise RuntimeError(f"web assets not found next to {here}; reinstall sse-monitor")


def add_page(app: web.Application, web_dir: Path) -> None:
    """GET / and /static/... from `web_dir`."""
    app[TEMPLATES] = jinja2.Environment(
        loader=jinja2.FileSystemLoader(web_dir / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    app.router.add_get("/", index, name="index")
    if FLEET in app:
        app.router.add_get("/host/{name}", host_page)
    # follow_symlinks stays off: the handler cannot reach outside web/static.
    app.router.add_static("/static", web_dir / "static", name="static", append_version=True)


def _render(request: web.Request, template: str, title: str, **context: Any) -> web.Response:
    app = request.app
    static = app.router["static"]
    names = ("events", "history", "state", "logs", "hosts", "fleet_events", "index")
    urls = {name: str(app.router[name].url_for()) for name in names if name in app.router}
    page_config = {f"{name}_url": url for name, url in urls.items()} | {"version": __version__}
    page_config |= context.pop("config", {})
    html = (
        app[TEMPLATES]
        .get_template(template)
        .render(
            title=title,
            static=lambda name: str(static.url_for(filename=name)),
            page_config=json.dumps(page_config),
            **context,
        )
    )
    return web.Response(text=html, content_type="text/html")


async def index(request: web.Request) -> web.Response:
    """GET /: the dashboard page; on a fleet server, the fleet page."""
    if FLEET in request.app:
        return _render(request, "fleet.html", "sse-monitor · fleet", script="js/fleet.js")
    host = request.app[WATCH].host
    return _render(request, "dashboard.html", f"sse-monitor · {host}", host=host, fleet_url=None)


async def host_page(request: web.Request) -> web.Response:
    """GET /host/NAME: one host of the fleet, the single host's dashboard reading it."""
    name = request.match_info["name"]
    fleet = request.app[FLEET]
    if fleet.view(name) is None:  # never echoed into the page unless it is a known host
        raise json_error(404, "unknown host", hosts=fleet.names())
    fleet_url = str(request.app.router["index"].url_for())
    return _render(
        request,
        "dashboard.html",
        f"sse-monitor · {name}",
        host=name,
        fleet_url=fleet_url,
        config={"host": name},
    )
