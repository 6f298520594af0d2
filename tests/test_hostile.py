"""Hostile requests over real sockets: odd ids, HEAD on streams, malformed headers, forged
forwarding, version-naming headers. Each gets a clear answer and costs one short log line."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from helpers import Server
from pytest_aiohttp import AiohttpClient

from monitor.config import Config
from monitor.http.app import create_app, create_root

Client = TestClient[web.Request, web.Application]


async def exchange(port: int, request: bytes, *, until: bytes | None = None) -> bytes:
    """Send raw bytes; read until EOF, or until `until` appears (for streams)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    data = b""
    async with asyncio.timeout(5):
        while chunk := await reader.read(65536):
            data += chunk
            if until is not None and until in data:
                break
    writer.close()
    return data


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, config: Config) -> Client:
    return await aiohttp_client(create_app(config, sources=[]))


async def test_an_id_with_non_ascii_digits_is_a_reset_not_a_crash(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    assert client.port is not None
    for last_id in ("1-²".encode(), "１２-３".encode(), b"1-" + b"9" * 40):
        request = b"GET /events HTTP/1.1\r\nHost: localhost\r\nLast-Event-ID: " + last_id
        data = await exchange(client.port, request + b"\r\n\r\n", until=b"event: reset")
        assert data.startswith(b"HTTP/1.1 200 ")
        reset = data.split(b"event: reset\n", 1)[1].split(b"data: ", 1)[1].split(b"\n")[0]
        assert json.loads(reset)["reason"] == "invalid id"
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


@pytest.mark.parametrize("route", ["/events", "/tail/app"])
async def test_head_on_a_stream_is_405(client: Client, route: str) -> None:
    assert client.port is not None
    request = f"HEAD {route} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    data = await exchange(client.port, request.encode())
    assert data.startswith(b"HTTP/1.1 405 ")
    # Headers only, and the connection ends: no log line can follow as a "next response".
    assert data.endswith(b"\r\n\r\n")


async def test_no_response_names_the_server_software(client: Client) -> None:
    for route in ("/", "/api/sources", "/static/css/main.css", "/nope"):
        resp = await client.get(route)
        assert resp.headers["Server"] == "sse-monitor", route


async def test_a_forwarded_hop_that_is_not_an_address_is_refused(
    aiohttp_client: AiohttpClient, config: Config
) -> None:
    proxied = replace(config, trusted_proxies=("127.0.0.1",))
    client = await aiohttp_client(create_app(proxied, sources=[]))
    for hop in ("evil", "1.2.3.4, <script>", "unknown"):
        resp = await client.get("/api/sources", headers={"X-Forwarded-For": hop})
        assert resp.status == 400
        assert "is not an IP address" in (await resp.json())["error"]
    ok = await client.get("/api/sources", headers={"X-Forwarded-For": "203.0.113.9"})
    assert ok.status == 200


def test_malformed_headers_cost_one_redacted_line(start_server: Callable[..., Server]) -> None:
    server = start_server()
    port = int(server.url.rsplit(":", 1)[1])
    credentials = b"YWxpY2U6czNjcmV0IHBhc3N3b3Jk"  # alice:s3cret password
    for i in range(30):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            bad = b"Basic " + credentials + b"\x01" if i % 2 else b"x" * 20_000
            sock.sendall(b"GET /api/sources HTTP/1.1\r\nHost: localhost\r\nAuthorization: ")
            sock.sendall(bad + b"\r\n\r\n")
            sock.settimeout(5)
            response = b""
            while chunk := sock.recv(65536):
                response += chunk
            head, _, body = response.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.0 400 ") and b"Server: sse-monitor\r\n" in head
            assert json.loads(body)["error"].startswith("Bad Request: ")
            assert credentials not in response and b"xxxxxxxx" not in response, response
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=5) == 0
    stderr = server.all_stderr()
    assert credentials.decode() not in stderr and "xxxxxxxx" not in stderr
    assert "Traceback" not in stderr
    warnings = [line for line in stderr.splitlines() if "bad request from 127.0.0.1" in line]
    assert 1 <= len(warnings) <= 2, warnings  # at most one per 10 s


def test_idle_and_slow_connections_are_closed_but_streams_live_on(
    start_server: Callable[..., Server], tmp_path: Path
) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[stream]\nidle_timeout_s = 0.5\nheartbeat_s = 0.2\n")
    server = start_server("--config", str(config))
    port = int(server.url.rsplit(":", 1)[1])
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
    slow = socket.create_connection(("127.0.0.1", port))
    stream = socket.create_connection(("127.0.0.1", port))
    stream.sendall(b"GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n")
    started = time.monotonic()
    headers = b"GET /api/sources HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 40
    closed_at = None
    for byte in headers:  # a byte every 0.1 s: headers that would take 6 s
        try:
            slow.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            closed_at = time.monotonic() - started
            break
        time.sleep(0.1)
    for sock in [*idle, slow]:
        sock.settimeout(5)
        try:
            assert sock.recv(100) == b""  # closed by the server, nothing sent
        except ConnectionResetError:
            pass
        sock.close()
    assert closed_at is None or closed_at < 3  # the slow one was cut long before 6 s
    stream.settimeout(5)
    received = b""
    while received.count(b": ping") < 5 and time.monotonic() - started < 10:
        received += stream.recv(4096)  # a live stream outlasts the idle timeout
    assert received.count(b": ping") >= 5 and time.monotonic() - started > 1.0
    stream.close()


async def test_outside_the_base_path_errors_are_json_with_the_headers(
    aiohttp_client: AiohttpClient, config: Config
) -> None:
    client = await aiohttp_client(create_root(replace(config, base_path="/monitor")))
    outside = await client.get("/elsewhere")
    assert outside.status == 404 and outside.content_type == "application/json"
    assert "error" in await outside.json()
    inside = await client.get("/monitor/nope")
    for resp in (outside, inside, await client.get("/monitor", allow_redirects=False)):
        assert resp.headers["Server"] == "sse-monitor"
        assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
