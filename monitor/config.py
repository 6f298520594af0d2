"""The server's configuration: a TOML file, overridden by command-line flags, validated once."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from dataclasses import field as dataclass_field
from typing import Any
from urllib.parse import urlsplit

from monitor.alerts.rules import HOST_DOWN, Rule, parse_rules
from monitor.logspecs import (
    JournalSpec,
    LogSource,
    check_logs,
    default_logs,
    journals_from_flags,
    journals_from_table,
    logs_from_flags,
    logs_from_table,
)
from monitor.notify.targets import Target, parse_targets
from monitor.state import default_state_dir
from monitor.values import ConfigError, number_in, read_text, require_bool, require_text

__all__ = ["Config", "ConfigError", "LogSource", "JournalSpec", "load_config"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


@dataclass(frozen=True, slots=True)
class TailConfig:
    """[tail]: how every log source is followed."""

    backlog_lines: int = 100
    max_line_bytes: int = 64 * 1024
    partial_flush_s: float = 0.5
    poll_interval_s: float = 0.25
    use_inotify: bool = True


@dataclass(frozen=True, slots=True)
class StreamConfig:
    """[stream]: the replay buffer and the clients' streams."""

    buffer_events: int = 10_000
    buffer_bytes: int = 4 * 1024 * 1024
    heartbeat_s: float = 15.0
    retry_ms: int = 2_000
    history_events: int = 300  # of each type and source, for a new client
    # Ten thousand dashboards cost ~140 MB idle (14 KB each) and under a core live (#17).
    max_clients: int = 10_000  # open streams, in all
    max_clients_per_address: int = 50  # open streams from one client address
    # A connection with no request under way is closed after this (a slow request's headers
    # too: the clock runs from the last response, or from the connection's start).
    idle_timeout_s: float = 15.0
    # Connections, streams or not: each costs a file descriptor and a socket's buffers.
    # Loopback peers (this machine's users, a reverse proxy) count against the total only.
    # Never below the stream caps (every stream is a connection); above them, the room left
    # for pages and API requests while the streams are full.
    max_connections: int = 10_240
    max_connections_per_address: int = 100
    # A response, stream or not, whose client reads nothing for this long is cut off.
    send_timeout_s: float = 60.0


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """Sampling: `interval_s` (top level, --interval) and [metrics]."""

    interval_s: float = 1.0
    process_interval_s: float = 5.0


@dataclass(frozen=True, slots=True)
class HistoryConfig:
    """[history]: what the charts can look back on."""

    full_s: float = 900.0
    bucket_s: float = 60.0
    downsampled_s: float = 86400.0


@dataclass(frozen=True, slots=True)
class RedisConfig:
    """[redis] (and --redis, --name): where many hosts meet. Without a url, nothing changes:
    one host, the in-memory hub alone."""

    url: str | None = None  # redis://, rediss:// or unix://; no password in it (ps shows it)
    password_file: str | None = None  # read once at load (password below)
    password: str | None = dataclass_field(default=None, repr=False)
    username: str | None = None  # the ACL user (default: Redis's `default`)
    ca_file: str | None = None  # for rediss://: the CA to verify Redis with
    name: str = ""  # this host's name in Redis; "" is the machine's hostname
    publish: bool = True  # serve --redis publishes its own host too (an agent always does)
    events_bytes: int = 8 * 1024 * 1024  # per host: the events clients resume from
    metrics_s: float | None = None  # per host: the chart's window (None: history.full_s)
    stale_s: float = 2.5  # a host with nothing newer is `stale` (at least 2 intervals)
    down_s: float = 9.0  # and then `down` (at least 5 intervals)


@dataclass(frozen=True, slots=True)
class Config:
    """Everything the server needs to start; immutable once loaded."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    logs: tuple[LogSource, ...] = ()
    journals: tuple[JournalSpec, ...] = ()
    tail: TailConfig = TailConfig()
    stream: StreamConfig = StreamConfig()
    metrics: MetricsConfig = MetricsConfig()
    history: HistoryConfig = HistoryConfig()
    redis: RedisConfig = RedisConfig()
    alerts: tuple[Rule, ...] = ()  # [[alerts]], parsed and checked
    notify: tuple[Target, ...] = ()  # [[notify]], parsed and checked (secret files read)
    public_url: str | None = None  # the dashboard's address for others: links in notifications
    trusted_proxies: tuple[str, ...] = ()  # X-Forwarded-For is believed from these only
    # Host names answered without authentication besides loopback ones (DNS rebinding).
    allowed_hosts: tuple[str, ...] = ()
    base_path: str = ""  # serve everything under this path, e.g. "/monitor" behind a proxy
    users_file: str | None = None  # htpasswd-style `user:hash` lines; None: no authentication
    allow_anonymous: bool = False  # serve a non-loopback address without users, on purpose
    certfile: str | None = None  # with keyfile: serve HTTPS
    keyfile: str | None = None
    # What outlives a restart (the position log); "": nothing (systemd's StateDirectory=
    # is the default when set).
    state_dir: str = ""

    def log_names(self) -> list[str]:
        """Every log source's name: files, then journals (one namespace)."""
        return [s.name for s in self.logs] + [j.name for j in self.journals]


def _base_path(key: str, value: Any) -> str:
    text = require_text(key, value).rstrip("/")
    segments = text.split("/")[1:]
    if text and (not re.fullmatch(r"(/[A-Za-z0-9._~-]+)+", text) or {".", ".."} & set(segments)):
        raise ConfigError(f"{key}: expected a path like /monitor, got {value!r}")
    return text


def _public_url(key: str, value: Any) -> str:
    text = require_text(key, value).rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
        raise ConfigError(f"{key}: expected an http(s) URL like https://monitor.example.com")
    return text


HOST_NAME_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,62}\.?)*|[0-9a-f:.]+")


def _host_names(key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{key}: must be a list of host names, got {value!r}")
    names = []
    for text in value:
        name = text.strip().lower().removeprefix("[").removesuffix("]").rstrip(".")
        if not name or len(name) > 253 or not HOST_NAME_RE.fullmatch(name):
            raise ConfigError(
                f"{key}: {text!r} is not a host name such as monitor.example.com "
                "(no scheme, no port)"
            )
        names.append(name)
    return tuple(names)


def _networks(key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{key}: must be a list of addresses or CIDR ranges, got {value!r}")
    for text in value:
        try:
            ipaddress.ip_network(text.strip(), strict=False)
        except ValueError:
            raise ConfigError(f"{key}: {text!r} is not an address or CIDR range") from None
    return tuple(v.strip() for v in value)


Check = Callable[[str, Any], Any]
# TOML key -> (section of Config, or "" for Config itself; field; check). Units in the names.
TOP_KEYS: dict[str, tuple[str, str, Check]] = {
    "host": ("", "host", require_text),
    "trusted_proxies": ("", "trusted_proxies", _networks),
    "allowed_hosts": ("", "allowed_hosts", _host_names),
    "base_path": ("", "base_path", _base_path),
    "port": ("", "port", number_in(0, 65535, integer=True)),
    "interval_s": ("metrics", "interval_s", number_in(0.05, 3600, integer=False)),
    "users_file": ("", "users_file", require_text),
    "allow_anonymous": ("", "allow_anonymous", require_bool),
    "certfile": ("", "certfile", require_text),
    "keyfile": ("", "keyfile", require_text),
    "state_dir": ("", "state_dir", require_text),
    "public_url": ("", "public_url", _public_url),
}
STREAM_KEYS: dict[str, tuple[str, str, Check]] = {
    "buffer_events": ("stream", "buffer_events", number_in(16, 10_000_000, integer=True)),
    "buffer_bytes": ("stream", "buffer_bytes", number_in(64 * 1024, 2**34, integer=True)),
    "heartbeat_s": ("stream", "heartbeat_s", number_in(0.05, 3600, integer=False)),
    "retry_ms": ("stream", "retry_ms", number_in(0, 3_600_000, integer=True)),
    "history_events": ("stream", "history_events", number_in(0, 100_000, integer=True)),
    "max_clients": ("stream", "max_clients", number_in(1, 1_000_000, integer=True)),
    "idle_timeout_s": ("stream", "idle_timeout_s", number_in(0.1, 3600, integer=False)),
    "max_clients_per_address": (
        "stream",
        "max_clients_per_address",
        number_in(1, 1_000_000, integer=True),
    ),
    "max_connections": ("stream", "max_connections", number_in(1, 1_000_000, integer=True)),
    "max_connections_per_address": (
        "stream",
        "max_connections_per_address",
        number_in(1, 1_000_000, integer=True),
    ),
    "send_timeout_s": ("stream", "send_timeout_s", number_in(0.1, 3600, integer=False)),
}
TAIL_KEYS: dict[str, tuple[str, str, Check]] = {
    "backlog_lines": ("tail", "backlog_lines", number_in(0, 100_000, integer=True)),
    "max_line_bytes": ("tail", "max_line_bytes", number_in(256, 16 * 1024 * 1024, integer=True)),
    "partial_flush_s": ("tail", "partial_flush_s", number_in(0.01, 60, integer=False)),
    "poll_interval_s": ("tail", "poll_interval_s", number_in(0.01, 60, integer=False)),
    "inotify": ("tail", "use_inotify", require_bool),
}
METRICS_KEYS: dict[str, tuple[str, str, Check]] = {
    "process_interval_s": ("metrics", "process_interval_s", number_in(0.1, 3600, integer=False)),
}
HISTORY_KEYS: dict[str, tuple[str, str, Check]] = {
    "full_s": ("history", "full_s", number_in(10, 86400, integer=False)),
    "bucket_s": ("history", "bucket_s", number_in(1, 3600, integer=False)),
    "downsampled_s": ("history", "downsampled_s", number_in(60, 30 * 86400, integer=False)),
}
REDIS_URL_RE = re.compile(r"(redis|rediss|unix)://[^\s]+")
HOST_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


def _redis_url(key: str, value: Any) -> str:
    text = require_text(key, value)
    parts = urlsplit(text)
    if not REDIS_URL_RE.fullmatch(text):
        raise ConfigError(
            f"{key}: expected redis://HOST:PORT/DB, rediss://... or unix:///path/redis.sock"
        )
    if parts.password:
        raise ConfigError(
            f"{key}: has a password in it, which `ps` shows; put it in a file and give "
            "[redis] password_file (or --redis-password-file)"
        )
    return text


def _host_name(key: str, value: Any) -> str:
    text = require_text(key, value)
    if not HOST_RE.fullmatch(text):
        raise ConfigError(f"{key}: {text!r} is not a host name (letters, digits, . _ -; ≤63)")
    return text


REDIS_KEYS: dict[str, tuple[str, str, Check]] = {
    "url": ("redis", "url", _redis_url),
    "password_file": ("redis", "password_file", require_text),
    "username": ("redis", "username", require_text),
    "ca_file": ("redis", "ca_file", require_text),
    "name": ("redis", "name", _host_name),
    "publish": ("redis", "publish", require_bool),
    "events_bytes": ("redis", "events_bytes", number_in(64 * 1024, 2**34, integer=True)),
    "metrics_s": ("redis", "metrics_s", number_in(10, 86400, integer=False)),
    "stale_s": ("redis", "stale_s", number_in(0.5, 3600, integer=False)),
    "down_s": ("redis", "down_s", number_in(1, 86400, integer=False)),
}
# Flag (argparse dest) -> where it goes and its check; flags override the file.
FLAG_KEYS: dict[str, tuple[str, str, Check]] = {
    "host": TOP_KEYS["host"],
    "port": TOP_KEYS["port"],
    "interval": TOP_KEYS["interval_s"],
    "base_path": TOP_KEYS["base_path"],
    "trusted_proxy": TOP_KEYS["trusted_proxies"],
    "allowed_host": TOP_KEYS["allowed_hosts"],
    "users_file": TOP_KEYS["users_file"],
    "allow_anonymous": TOP_KEYS["allow_anonymous"],
    "certfile": TOP_KEYS["certfile"],
    "keyfile": TOP_KEYS["keyfile"],
    "state_dir": TOP_KEYS["state_dir"],
    "max_clients": STREAM_KEYS["max_clients"],
    "max_clients_per_address": STREAM_KEYS["max_clients_per_address"],
    "redis": REDIS_KEYS["url"],
    "name": REDIS_KEYS["name"],
    "redis_password_file": REDIS_KEYS["password_file"],
    "no_publish": ("redis", "publish", lambda key, value: not require_bool(key, value)),
}
SECTIONS = {
    "stream": STREAM_KEYS,
    "tail": TAIL_KEYS,
    "metrics": METRICS_KEYS,
    "history": HISTORY_KEYS,
    "redis": REDIS_KEYS,
}
Values = dict[str, dict[str, Any]]  # section ("" for the top) -> field -> value


def read_file(path: str) -> dict[str, Any]:
    """Parse a TOML config file; any failure is a one-line ConfigError."""
    import tomllib  # here: a server given only flags does without it

    try:
        return tomllib.loads(read_text(path, "config file"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: invalid TOML: {exc}") from None


def _from_table(
    table: Mapping[str, Any], keys: Mapping[str, tuple[str, str, Check]], prefix: str, out: Values
) -> None:
    for key, value in table.items():
        if key not in keys:
            known = ", ".join(prefix + k for k in keys)
            raise ConfigError(f"{prefix}{key}: unknown key (known: {known})")
        section, field, check = keys[key]
        out.setdefault(section, {})[field] = check(prefix + key, value)


def load_config(path: str | None = None, flags: Mapping[str, Any] | None = None) -> Config:
    """Build a Config from an optional TOML file, then flags (which win); alert rules are
    parsed here, once, against the final set of log sources."""
    values: Values = {}
    logs: dict[str, str] | None = None
    journals: dict[str, JournalSpec] = {}
    raw_alerts: list[Any] = []
    raw_notify: list[Any] = []
    if path:
        data = read_file(path)  # its errors already name the file
        try:
            logs, raw_alerts = _from_file(data, values)
            raw_notify = data.get("notify", [])
            journals = journals_from_table(data.get("journals", {}))
        except ConfigError as exc:
            raise ConfigError(f"config file {path}: {exc}") from None
    flags = flags or {}
    for flag, (section, field, check) in FLAG_KEYS.items():
        value = flags.get(flag)
        if value is not None and value is not False:  # unset, or a store_true flag not given
            values.setdefault(section, {})[field] = check(f"--{flag.replace('_', '-')}", value)
    flag_logs = logs_from_flags(flags.get("logs") or [])
    journals = {**journals, **journals_from_flags(flags.get("journals") or [])}
    if logs is None and not flag_logs and not journals:
        logs = default_logs()  # an explicit empty [logs] table means: no logs
    # A --log NAME replaces the file's NAME: flags override the file.
    logs = {**(logs or {}), **flag_logs}
    for name in journals:
        if name in logs:
            raise ConfigError(f"journal source {name!r}: a log source already has this name")
        check_logs({name: f"journal:{name}"})  # the same name rules as log sources
    try:
        rules = parse_rules(raw_alerts, [*logs, *journals])
        targets = parse_targets(raw_notify, [r.name for r in rules] + [HOST_DOWN])
    except ConfigError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    config = _build(values, logs=check_logs(logs), journals=tuple(journals.values()))
    config = replace(
        config, alerts=rules, notify=targets, state_dir=config.state_dir or default_state_dir()
    )
    _check_exposure(config)
    return _with_redis_password(config)


def _with_redis_password(config: Config) -> Config:
    """The Redis password read from its file once, here: a bad file stops the start."""
    redis = config.redis
    if redis.password_file is None:
        return config
    if redis.url is None:
        raise ConfigError("redis.password_file: given without a Redis url (--redis URL)")
    password = read_text(redis.password_file, "redis.password_file").strip()
    if not password:
        raise ConfigError(f"redis.password_file: {redis.password_file} is empty")
    return replace(config, redis=replace(redis, password=password))


def _build(values: Values, **top: Any) -> Config:
    sections = {
        name: replace(getattr(Config(), name), **values.get(name, {}))
        for name in ("tail", "stream", "metrics", "history", "redis")
    }
    return Config(**values.get("", {}), **sections, **top)


def _check_exposure(config: Config) -> None:
    if bool(config.certfile) != bool(config.keyfile):
        raise ConfigError("--certfile and --keyfile go together: give both to serve HTTPS")
    if problem := exposure_problem(config, config.host, "--host"):
        raise ConfigError(problem)


def exposure_problem(config: Config, address: str, what: str) -> str | None:
    """Why serving on `address` is refused (reachable by others, and nobody must sign in);
    None if it is fine. `what` names where the address came from, for the message."""
    if is_loopback(address) or config.users_file or config.allow_anonymous:
        return None
    return (
        f"{what} {address}: refusing to expose the dashboard without authentication; "
        "give --users-file FILE (lines from `sse-monitor hash-password USER`), "
        "or --allow-anonymous if that is really meant"
    )


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach."""
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # a name: it may resolve to anything
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1 from a dual-stack socket
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def _from_file(data: dict[str, Any], values: Values) -> tuple[dict[str, str] | None, list[Any]]:
    """Fill `values` from a parsed file; return its [logs] (None if absent) and [[alerts]]."""
    top = {
        k: v
        for k, v in data.items()
        if k not in (*SECTIONS, "logs", "journals", "alerts", "notify")
    }
    _from_table(top, TOP_KEYS, "", values)
    alerts = data.get("alerts", [])
    if not isinstance(alerts, list) or not all(isinstance(a, dict) for a in alerts):
        raise ConfigError("alerts: must be an array of tables ([[alerts]] ...)")
    for section, keys in SECTIONS.items():
        table = data.get(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{section}: must be a table ([{section}])")
        _from_table(table, keys, f"{section}.", values)
    return (logs_from_table(data["logs"]) if "logs" in data else None), alerts
