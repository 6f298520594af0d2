"""A Redis client made from [redis]: the password from its file (never the command line),
TLS with a CA file for rediss://, no silent retries (the callers retry, knowing what a
retried write would repeat), and a socket timeout every blocking read stays under."""

from __future__ import annotations

from typing import Any

import redis.asyncio as redis
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

try:
    import hiredis
except ImportError:  # redis-py works without it, more slowly
    hiredis = None  # type: ignore[assignment]

from monitor.config import RedisConfig

SOCKET_TIMEOUT_S = 10.0
BLOCK_MS = 1000  # a blocking XREAD waits at most this: well inside the socket timeout
# Every error a call can end with when Redis is away, restarting, or refuses us.
ERRORS = (redis.ConnectionError, redis.TimeoutError, redis.ResponseError, OSError)


class _HiredisPacking:
    """Commands packed by hiredis, in C. redis-py's asyncio connections pack them in Python:
    measured, half an agent's CPU per published event (its sync client uses hiredis)."""

    def pack_command(self, *args: Any) -> list[bytes]:
        if isinstance(args[0], str) and " " in args[0]:  # "CLIENT SETNAME": two arguments
            args = (*args[0].split(), *args[1:])
        return [hiredis.pack_command(args)]


class _Tcp(_HiredisPacking, redis.Connection):
    pass


class _Unix(_HiredisPacking, redis.UnixDomainSocketConnection):
    pass


class _Tls(_HiredisPacking, redis.SSLConnection):
    pass


FAST = {redis.Connection: _Tcp, redis.UnixDomainSocketConnection: _Unix, redis.SSLConnection: _Tls}


def connect(config: RedisConfig, name: str, *, max_connections: int = 1) -> redis.Redis:
    """A client of at most `max_connections` connections, each named `name` in Redis's
    CLIENT LIST; a caller beyond them waits for one (a dashboard's connections never grow
    with its browsers)."""
    if config.url is None:
        raise ValueError("no Redis url")
    kwargs: dict[str, Any] = {
        "socket_timeout": SOCKET_TIMEOUT_S,
        "socket_connect_timeout": 5.0,
        "retry": Retry(NoBackoff(), 0),
        "password": config.password,
        "username": config.username,
        "max_connections": max_connections,
        "client_name": name,
        "timeout": SOCKET_TIMEOUT_S,  # waiting for a free connection
    }
    if config.ca_file:
        kwargs["ssl_ca_certs"] = config.ca_file
    options: dict[str, Any] = dict(parse_url(config.url))
    kind = options.pop("connection_class", redis.Connection)
    if hiredis is not None:
        kind = FAST.get(kind, kind)
    pool = redis.BlockingConnectionPool(connection_class=kind, **kwargs, **options)
    return redis.Redis.from_pool(pool)  # owns it: aclose() closes its connections too


def describe(exc: BaseException) -> str:
    """One line for the log: what Redis said, or why it could not be reached."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"{type(exc).__name__}: {text}"
