"""The dashboard page: its templates and static assets, and GET /."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import jinja2
from aiohttp import web

from monitor import __version__
from monitor.http.keys import TEMPLATES


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
    app.router.add_get("/", index)
    # follow_symlinks stays off: the handler cannot reach outside web/static.
    app.router.add_static("/static", web_dir / "static", name="static", append_version=True)


async def index(request: web.Request) -> web.Response:
    """GET /: the dashboard page."""
    app = request.app
    static = app.router["static"]
    urls = {
        name: str(app.router[name].url_for()) for name in ("events", "history", "state", "logs")
    }
    page_config = {f"{name}_url": url for name, url in urls.items()} | {"version": __version__}
    host = socket.gethostname()
    html = (
        app[TEMPLATES]
        .get_template("dashboard.html")
        .render(
            title=f"sse-monitor · {host}",
            host=host,
            static=lambda name: str(static.url_for(filename=name)),
            page_config=json.dumps(page_config),
        )
    )
    return web.Response(text=html, content_type="text/html")
