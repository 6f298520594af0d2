"""Security headers on every response, and a static handler that stays inside web/static."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

import monitor.http.app
from monitor.config import Config
from monitor.http.app import create_app
from monitor.http.page import find_web_dir

Client = TestClient[web.Request, web.Application]
SECRET = "TOP-SECRET-7f3a"
PASSWD = "root:x:0:0"


@pytest.fixture
def web_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of web/ with symlinks out of static/, and a secret file beside it."""
    web = tmp_path / "site" / "web"
    shutil.copytree(find_web_dir(), web)
    (tmp_path / "site" / "secret.txt").write_text(SECRET)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text(SECRET)
    (web / "static" / "css" / "escape.css").symlink_to(tmp_path / "site" / "secret.txt")
    (web / "static" / "outside").symlink_to(outside, target_is_directory=True)
    (web / "static" / "passwd.js").symlink_to("/etc/passwd")
    monkeypatch.setattr(monitor.http.app, "find_web_dir", lambda: web)
    return web


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, config: Config, web_copy: Path) -> Client:
    return await aiohttp_client(create_app(config, sources=[]))


async def raw_get(client: Client, target: str) -> tuple[int, bytes]:
    """GET `target` byte for byte: client libraries would normalise the path first."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), timeout=5)
    writer.close()
    await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


TRAVERSALS = [
    "/static/../../secret.txt",
    "/static/../../../../../../../../../etc/passwd",
    "/static/css/../../../secret.txt",
    "/static/%2e%2e/%2e%2e/secret.txt",
    "/static/%2e%2e%2f%2e%2e%2fsecret.txt",
    "/static/%2E%2E%2F%2E%2E%2Fsecret.txt",
    "/static/..%2f..%2fsecret.txt",
    "/static/.%2e/.%2e/secret.txt",
    "/static/css/..%2f..%2f..%2fsecret.txt",
    "/static/%252e%252e%252f%252e%252e%252fsecret.txt",
    "/static/..%5c..%5csecret.txt",
    "/static/..\\..\\secret.txt",
    "/static/%c0%ae%c0%ae/%c0%ae%c0%ae/secret.txt",
    "/static/..%00/..%00/secret.txt",
    "/static//etc/passwd",
    "/static/%2fetc%2fpasswd",
    "/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/%2e%2e/%2e%2e/secret.txt",
    "//etc/passwd",
    "/static/css/escape.css",  # symlink to a file outside
    "/static/outside/secret.txt",  # symlink to a directory outside
    "/static/passwd.js",  # symlink to /etc/passwd
]


@pytest.mark.parametrize("target", TRAVERSALS)
async def test_static_handler_never_leaves_the_assets_folder(client: Client, target: str) -> None:
    status, body = await raw_get(client, target)
    assert status in (400, 403, 404), (status, body[:200])
    assert SECRET.encode() not in body
    assert PASSWD.encode() not in body


async def test_static_copy_is_what_is_served(client: Client) -> None:
    status, body = await raw_get(client, "/static/css/main.css")
    assert status == 200
    assert body  # the traversal test above hits the same handler


async def test_security_headers_on_pages_api_streams_assets_and_errors(client: Client) -> None:
    for path in ["/", "/api/sources", "/events", "/static/css/main.css", "/healthz", "/nope"]:
        resp = await client.get(path)
        csp = resp.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp, path
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Referrer-Policy"] == "no-referrer"
        assert resp.headers["X-Frame-Options"] == "DENY"
        resp.close()
