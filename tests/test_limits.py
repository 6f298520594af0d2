"""Caps on open /events streams, in all and per address: 503 before any stream starts."""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol

import aiohttp
import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient
from helpers import wait_until
from pytest_aiohttp import AiohttpClient

from monitor.config import Config
from monitor.http.app import create_app
from monitor.http.keys import LIMITER

Client = TestClient[web.Request, web.Application]


class MakeClient(Protocol):
    async def __call__(self, max_clients: int, per_address: int) -> Client: ...


@pytest.fixture
async def make_client(aiohttp_client: AiohttpClient, config: Config) -> MakeClient:
    async def make(max_clients: int, per_address: int) -> Client:
        stream = replace(
            config.stream, max_clients=max_clients, max_clients_per_address=per_address
        )
        # Behind a trusted proxy on loopback: tests pick client addresses by X-Forwarded-For.
        limited = replace(config, stream=stream, trusted_proxies=("127.0.0.1",))
        return await aiohttp_client(create_app(limited, sources=[]))

    return make


async def assert_busy(resp: ClientResponse, expected: str) -> None:
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "5"
    assert resp.content_type == "application/json"  # not text/event-stream: nothing started
    assert expected in (await resp.json())["error"]


async def test_streams_beyond_max_clients_get_503_until_one_closes(make_client: MakeClient) -> None:
    client = await make_client(max_clients=2, per_address=50)
    limiter = client.app[LIMITER]
    first = await client.get("/events")
    second = await client.get("/events")
    assert (first.status, second.status) == (200, 200)
    await assert_busy(await client.get("/events"), "too many open streams (2)")
    # Other routes are not streams and stay open.
    assert (await client.get("/api/sources")).status == 200
    assert (await client.get("/healthz")).status == 200
    first.close()
    await wait_until(lambda: limiter.total == 1)
    third = await client.get("/events")
    assert third.status == 200
    second.close()
    third.close()
    await wait_until(lambda: limiter.total == 0)


def from_address(address: str) -> dict[str, str]:
    """Headers that make a request come from `address`, through the trusted local proxy."""
    return {"X-Forwarded-For": address}


async def test_per_address_cap_leaves_other_addresses_alone(make_client: MakeClient) -> None:
    client = await make_client(max_clients=10, per_address=1)
    first = await client.get("/events", headers=from_address("203.0.113.1"))
    assert first.status == 200
    again = await client.get("/events", headers=from_address("203.0.113.1"))
    await assert_busy(again, "from your address (1)")
    other = await client.get("/events", headers=from_address("203.0.113.2"))
    assert other.status == 200
    assert client.app[LIMITER].total == 2  # one from each address
    first.close()
    other.close()
    await wait_until(lambda: client.app[LIMITER].total == 0)


async def test_loopback_clients_count_only_against_the_total(make_client: MakeClient) -> None:
    # Loopback is this machine's own users, or a reverse proxy on it in front of everyone.
    client = await make_client(max_clients=3, per_address=1)
    direct = [await client.get("/events") for _ in range(2)]
    assert [r.status for r in direct] == [200, 200]
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.get(client.make_url("/events")) as resp:
            assert resp.status == 200
            await assert_busy(await client.get("/events"), "too many open streams (3)")
    for resp in direct:
        resp.close()
    await wait_until(lambda: client.app[LIMITER].total == 0)


async def test_bad_requests_and_refusals_take_no_slot(make_client: MakeClient) -> None:
    client = await make_client(max_clients=1, per_address=1)
    assert (await client.get("/events?types=nope")).status == 400
    assert client.app[LIMITER].total == 0
    stream = await client.get("/events")
    for _ in range(3):
        await assert_busy(await client.get("/events"), "too many open streams")
    assert client.app[LIMITER].total == 1
    stream.close()
    await wait_until(lambda: client.app[LIMITER].total == 0)


async def test_plain_tail_streams_count_against_the_same_caps(make_client: MakeClient) -> None:
    client = await make_client(max_clients=2, per_address=1)
    events = await client.get("/events")
    tail = await client.get("/tail/app", headers=from_address("203.0.113.1"))
    assert (events.status, tail.status) == (200, 200)
    await assert_busy(await client.get("/tail/db"), "too many open streams (2)")
    tail.close()
    await wait_until(lambda: client.app[LIMITER].total == 1)
    again = await client.get("/tail/app", headers=from_address("203.0.113.1"))
    assert again.status == 200
    await assert_busy(
        await client.get("/tail/db", headers=from_address("203.0.113.1")), "too many open streams"
    )
    events.close()
    again.close()
    await wait_until(lambda: client.app[LIMITER].total == 0)
