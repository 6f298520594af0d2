"""X-Forwarded-For is believed only from proxies the operator named."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from monitor.config import Config, ConfigError, StreamConfig, load_config
from monitor.http.app import create_app
from monitor.http.proxy import client_address, parse_networks

Client = TestClient[web.Request, web.Application]
TRUSTED = parse_networks(["127.0.0.1", "10.0.0.0/8"])


@pytest.mark.parametrize(
    ("peer", "xff", "client"),
    [
        ("127.0.0.1", "203.0.113.9", "203.0.113.9"),  # through our proxy
        ("127.0.0.1", "198.51.100.1, 10.1.2.3", "198.51.100.1"),  # two proxies of ours
        ("127.0.0.1", "6.6.6.6, 203.0.113.9", "203.0.113.9"),  # a forged left part is ignored
        ("203.0.113.9", "127.0.0.1", "203.0.113.9"),  # not from a proxy: header ignored
        ("127.0.0.1", "", "127.0.0.1"),
        ("127.0.0.1", "garbage", "garbage"),
    ],
)
def test_client_address(peer: str, xff: str, client: str) -> None:
    assert client_address(peer, xff, TRUSTED) == client


def test_bad_trusted_proxy_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="--trusted-proxy: 'nope' is not an address"):
        load_config(None, {"trusted_proxy": ["nope"]})


async def streams(client: Client, *forwarded_for: str) -> list[int]:
    statuses = []
    for xff in forwarded_for:
        resp = await client.get("/events?types=alert", headers={"X-Forwarded-For": xff})
        statuses.append(resp.status)
    return statuses


async def test_per_address_cap_counts_forwarded_clients_behind_a_trusted_proxy(
    aiohttp_client: AiohttpClient,
) -> None:
    config = Config(
        port=0,
        stream=StreamConfig(max_clients_per_address=1),
        trusted_proxies=("127.0.0.1",),
    )
    client = await aiohttp_client(create_app(config, sources=[]))
    assert await streams(client, "203.0.113.1", "203.0.113.2", "203.0.113.1") == [200, 200, 503]


async def test_forwarded_header_is_ignored_unless_configured(aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(
        create_app(Config(port=0, stream=StreamConfig(max_clients_per_address=1)), sources=[])
    )
    # Were the header believed, the second stream from 203.0.113.1 would be over its cap of 1;
    # it is the loopback peer's, which counts against the total only.
    assert await streams(client, "203.0.113.1", "203.0.113.1") == [200, 200]
