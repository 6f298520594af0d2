"""Which address a request came from, when a reverse proxy the operator trusts is in front."""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web

from monitor.http.errors import json_error

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(texts: Sequence[str]) -> tuple[Network, ...]:
    """Addresses or CIDR ranges; ValueError names a bad one."""
    return tuple(ipaddress.ip_network(text.strip(), strict=False) for text in texts)


def client_address(peer: str, forwarded_for: str, trusted: Sequence[Network]) -> str:
    """The client's address: the peer, unless the peer is a trusted proxy; then the nearest
    X-Forwarded-For hop that is not itself trusted (hops are appended left to right, so
    only the right end, written by proxies we trust, can be believed)."""
    address = peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    while _is_trusted(address, trusted) and hops:
        address = hops.pop()
    return address


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _is_trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def forwarded_middleware(
    trusted: Sequence[Network],
) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Rewrite request.remote from X-Forwarded-For, for requests from trusted proxies only:
    the per-address stream cap and the failed-login limit then count real clients."""

    @web.middleware
    async def forwarded(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        peer = request.remote or ""
        address = client_address(peer, request.headers.get("X-Forwarded-For", ""), trusted)
        if address != peer:
            if not _is_address(address):  # it would count sign-in failures and streams
                shown = address[:60]
                raise json_error(400, f"X-Forwarded-For: {shown!r} is not an IP address")
            request = request.clone(remote=address)
        return await handler(request)

    return forwarded
