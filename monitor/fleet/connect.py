"""A Redis client made from [redis]: the password from its file (never the command line),
TLS with a CA file for rediss://, no silent retries (the callers retry, knowing what a
retried write would repeat), and a socket timeout every blocking read stays under."""

from __future__ import annotations

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from monitor.config import RedisConfig

SOCKET_TIMEOUT_S = 10.0
BLOCK_MS = 1000  # a blocking XREAD waits at most this: well inside the socket timeout
# Every error a call can end with when Redis is away, restarting, or refuses us.
ERRORS = (redis.ConnectionError, redis.TimeoutError, redis.ResponseError, OSError)


def connect(config: RedisConfig, name: str, *, max_connections: int = 1) -> redis.Redis:
    """A client of at most `max_connections` connections, each named `name` in Redis's
    CLIENT LIST; a caller beyond them waits for one (a dashboard's connections never grow
    with its browsers)."""
    if config.url is None:
        raise ValueError("no Redis url")
    kwargs: dict[str, object] = {
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
    pool = redis.BlockingConnectionPool.from_url(config.url, **kwargs)
    return redis.Redis(connection_pool=pool)


def describe(exc: BaseException) -> str:
    """One line for the log: what Redis said, or why it could not be reached."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"{type(exc).__name__}: {text}"
