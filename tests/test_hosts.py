"""DNS rebinding: without authentication the server answers only Host names that are this
machine's (loopback, the address it was reached on) or configured ones."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from monitor.config import Config, ConfigError, load_config
from monitor.http.app import create_app

Client = TestClient[web.Request, web.Application]
ROUTES = ["/", "/events", "/tail/app", "/api/state", "/api/sources", "/api/history", "/metrics"]


async def raw_get(client: Client, path: str, host: str | None) -> tuple[int, bytes]:
    """A GET on a real socket with exactly this Host line (or none); status and body start."""
    assert client.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    head = f"GET {path} HTTP/1.1\r\n" + (f"Host: {host}\r\n" if host is not None else "")
    writer.write((head + "Connection: close\r\n\r\n").encode())
    async with asyncio.timeout(5):
        status = int((await reader.readline()).split()[1])
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        # A stream that was let in never ends: its body is not read.
        is_stream = status == 200 and path.startswith(("/events", "/tail"))
        body = b"" if is_stream else await reader.read()
    writer.close()
    return status, body


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, config: Config) -> Client:
    return await aiohttp_client(create_app(config, sources=[]))


@pytest.mark.parametrize("route", ROUTES)
async def test_a_foreign_host_gets_403_with_json_on_every_route(client: Client, route: str) -> None:
    status, body = await raw_get(client, route, "evil.example.com")
    assert status == 403
    error = json.loads(body)["error"]
    assert "'evil.example.com'" in error and "--allowed-host" in error


@pytest.mark.parametrize(
    "host", ["localhost", "LOCALHOST:8765", "127.0.0.1", "127.0.0.1:1", "[::1]:8765", "127.5.6.7"]
)
async def test_loopback_names_and_addresses_are_answered(client: Client, host: str) -> None:
    assert (await raw_get(client, "/api/sources", host))[0] == 200


async def test_the_address_it_was_reached_on_is_answered(client: Client) -> None:
    assert client.port is not None
    assert (await raw_get(client, "/api/sources", f"127.0.0.1:{client.port}"))[0] == 200


@pytest.mark.parametrize("host", ["[::1]x", "a:b", "", "localhost.evil.com", "127.0.0.1.nip.io"])
async def test_malformed_and_lookalike_hosts_are_refused(client: Client, host: str) -> None:
    assert (await raw_get(client, "/api/sources", host))[0] in (400, 403)


async def test_healthz_stays_open(client: Client) -> None:
    assert (await raw_get(client, "/healthz", "evil.example.com"))[0] == 200


async def test_a_configured_host_is_answered_and_no_other(
    aiohttp_client: AiohttpClient, config: Config
) -> None:
    allowed = replace(config, allowed_hosts=("monitor.example.com",))
    client = await aiohttp_client(create_app(allowed, sources=[]))
    assert (await raw_get(client, "/api/sources", "Monitor.Example.com:443"))[0] == 200
    assert (await raw_get(client, "/api/sources", "evil.example.com"))[0] == 403


async def test_with_a_users_file_the_password_decides_not_the_host(
    aiohttp_client: AiohttpClient, config: Config, tmp_path: Path
) -> None:
    users = tmp_path / "users"
    users.write_text("alice:$2b$04$" + "a" * 53 + "\n")
    client = await aiohttp_client(create_app(replace(config, users_file=str(users)), sources=[]))
    assert (await raw_get(client, "/api/sources", "monitor.example.com"))[0] == 401


def test_allowed_hosts_from_flags_and_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('allowed_hosts = ["Monitor.Example.com", "[2001:db8::1]"]\n')
    assert load_config(str(path)).allowed_hosts == ("monitor.example.com", "2001:db8::1")
    flags = {"allowed_host": ["ops.example.org"]}
    assert load_config(str(path), flags).allowed_hosts == ("ops.example.org",)
    for bad in ("https://x.example.com", "x.example.com:8765", "a b"):
        with pytest.raises(ConfigError, match="is not a host name"):
            load_config(None, {"allowed_host": [bad]})
