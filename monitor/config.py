"""The server's configuration: a TOML file, overridden by command-line flags, validated once."""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
# Source names travel in URLs (?sources=a,b) and in event payloads: keep them plain.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
RESERVED_NAMES = frozenset({"metrics"})


class ConfigError(Exception):
    """A configuration value is wrong; the message names the key and the fix."""


@dataclass(frozen=True, slots=True)
class LogSource:
    """A named log file (or glob) to follow."""

    name: str
    path: str


@dataclass(frozen=True, slots=True)
class JournalSpec:
    """The systemd journal, narrowed by `FIELD=value` matches, followed under a name."""

    name: str
    matches: tuple[str, ...] = ()
    directory: str | None = None  # an exported or test journal instead of the system's


@dataclass(frozen=True, slots=True)
class Config:
    """Everything the server needs to start; immutable once loaded."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    interval_s: float = 1.0
    logs: tuple[LogSource, ...] = ()
    journals: tuple[JournalSpec, ...] = ()
    buffer_events: int = 10_000
    buffer_bytes: int = 4 * 1024 * 1024
    heartbeat_s: float = 15.0
    retry_ms: int = 2_000
    history_events: int = 300
    backlog_lines: int = 100
    max_line_bytes: int = 64 * 1024
    partial_flush_s: float = 0.5
    poll_interval_s: float = 0.25
    use_inotify: bool = True
    process_interval_s: float = 5.0
    history_full_s: float = 900.0
    history_bucket_s: float = 60.0
    history_downsampled_s: float = 86400.0
    trusted_proxies: tuple[str, ...] = ()  # X-Forwarded-For is believed from these only
    base_path: str = ""  # serve everything under this path, e.g. "/monitor" behind a proxy
    users_file: str | None = None  # htpasswd-style `user:hash` lines; None: no authentication
    allow_anonymous: bool = False  # serve a non-loopback address without users, on purpose
    certfile: str | None = None  # with keyfile: serve HTTPS
    keyfile: str | None = None
    max_clients: int = 1000  # open streams, in all
    max_clients_per_address: int = 50  # open streams from one client address
    # [[alerts]] tables as written; monitor.alerts.parse_rules checks them (it knows rules).
    alerts: tuple[dict[str, Any], ...] = ()

    def log_names(self) -> list[str]:
        """Every log source's name: files, then journals (one namespace)."""
        return [s.name for s in self.logs] + [j.name for j in self.journals]


def _number(lo: float, hi: float, *, integer: bool) -> Callable[[str, Any], Any]:
    kind = "an integer" if integer else "a number"

    def check(key: str, value: Any) -> Any:
        ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
        if isinstance(value, bool) or not ok_type or not lo <= value <= hi:
            raise ConfigError(f"{key}: must be {kind} from {lo:g} to {hi:g}, got {value!r}")
        return value if integer else float(value)

    return check


def _text(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key}: must be a non-empty string, got {value!r}")
    return value.strip()


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: must be true or false, got {value!r}")
    return value


def _base_path(key: str, value: Any) -> str:
    text = _text(key, value).rstrip("/")
    if text and not re.fullmatch(r"(/[A-Za-z0-9._~-]+)+", text):
        raise ConfigError(f"{key}: expected a path like /monitor, got {value!r}")
    return text


def _networks(key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{key}: must be a list of addresses or CIDR ranges, got {value!r}")
    for text in value:
        try:
            ipaddress.ip_network(text.strip(), strict=False)
        except ValueError:
            raise ConfigError(f"{key}: {text!r} is not an address or CIDR range") from None
    return tuple(v.strip() for v in value)


# TOML key -> (Config field, check). Units are in the key names.
TOP_KEYS: dict[str, tuple[str, Callable[[str, Any], Any]]] = {
    "host": ("host", _text),
    "trusted_proxies": ("trusted_proxies", _networks),
    "base_path": ("base_path", _base_path),
    "port": ("port", _number(0, 65535, integer=True)),
    "interval_s": ("interval_s", _number(0.05, 3600, integer=False)),
    "users_file": ("users_file", _text),
    "allow_anonymous": ("allow_anonymous", _bool),
    "certfile": ("certfile", _text),
    "keyfile": ("keyfile", _text),
}
STREAM_KEYS: dict[str, tuple[str, Callable[[str, Any], Any]]] = {
    "buffer_events": ("buffer_events", _number(16, 10_000_000, integer=True)),
    "buffer_bytes": ("buffer_bytes", _number(64 * 1024, 2**34, integer=True)),
    "heartbeat_s": ("heartbeat_s", _number(0.05, 3600, integer=False)),
    "retry_ms": ("retry_ms", _number(0, 3_600_000, integer=True)),
    "history_events": ("history_events", _number(0, 100_000, integer=True)),
    "max_clients": ("max_clients", _number(1, 1_000_000, integer=True)),
    "max_clients_per_address": ("max_clients_per_address", _number(1, 1_000_000, integer=True)),
}


TAIL_KEYS: dict[str, tuple[str, Callable[[str, Any], Any]]] = {
    "backlog_lines": ("backlog_lines", _number(0, 100_000, integer=True)),
    "max_line_bytes": ("max_line_bytes", _number(256, 16 * 1024 * 1024, integer=True)),
    "partial_flush_s": ("partial_flush_s", _number(0.01, 60, integer=False)),
    "poll_interval_s": ("poll_interval_s", _number(0.01, 60, integer=False)),
    "inotify": ("use_inotify", _bool),
}
METRICS_KEYS: dict[str, tuple[str, Callable[[str, Any], Any]]] = {
    "process_interval_s": ("process_interval_s", _number(0.1, 3600, integer=False)),
}
HISTORY_KEYS: dict[str, tuple[str, Callable[[str, Any], Any]]] = {
    "full_s": ("history_full_s", _number(10, 86400, integer=False)),
    "bucket_s": ("history_bucket_s", _number(1, 3600, integer=False)),
    "downsampled_s": ("history_downsampled_s", _number(60, 30 * 86400, integer=False)),
}
# Flag (argparse dest) -> (Config field, check); flags override the file.
FLAG_KEYS: dict[str, tuple[str, Callable[[str, Any], Any]]] = {
    "host": TOP_KEYS["host"],
    "port": TOP_KEYS["port"],
    "interval": TOP_KEYS["interval_s"],
    "base_path": TOP_KEYS["base_path"],
    "trusted_proxy": TOP_KEYS["trusted_proxies"],
    "users_file": TOP_KEYS["users_file"],
    "allow_anonymous": TOP_KEYS["allow_anonymous"],
    "certfile": TOP_KEYS["certfile"],
    "keyfile": TOP_KEYS["keyfile"],
    "max_clients": STREAM_KEYS["max_clients"],
    "max_clients_per_address": STREAM_KEYS["max_clients_per_address"],
}
SECTIONS = {
    "stream": STREAM_KEYS,
    "tail": TAIL_KEYS,
    "metrics": METRICS_KEYS,
    "history": HISTORY_KEYS,
}
# Followed when neither the config nor a flag names a log: whichever exist and are readable.
DEFAULT_LOGS = {
    "syslog": "/var/log/syslog",
    "messages": "/var/log/messages",
    "auth": "/var/log/auth.log",
    "kern": "/var/log/kern.log",
}


def default_logs(candidates: Mapping[str, str] = DEFAULT_LOGS) -> dict[str, str]:
    """The usual system logs that this process can read."""
    return {
        name: path
        for name, path in candidates.items()
        if os.path.isfile(path) and os.access(path, os.R_OK)
    }


def read_file(path: str) -> dict[str, Any]:
    """Parse a TOML config file; any failure is a one-line ConfigError."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path}: not found") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path}: is a directory, not a file") from None
    except PermissionError:
        raise ConfigError(f"config file {path}: permission denied") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: invalid TOML: {exc}") from None


def _from_table(table: Mapping[str, Any], keys: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    values = {}
    for key, value in table.items():
        if key not in keys:
            known = ", ".join(prefix + k for k in keys)
            raise ConfigError(f"{prefix}{key}: unknown key (known: {known})")
        field, check = keys[key]
        values[field] = check(prefix + key, value)
    return values


def _logs_from_table(table: Any) -> dict[str, str]:
    if not isinstance(table, dict):
        raise ConfigError('logs: must be a table of NAME = "PATH" entries ([logs])')
    logs = {}
    for name, path in table.items():
        logs[name] = _text(f"logs.{name}", path)
    return logs


def _logs_from_flags(specs: list[str]) -> dict[str, str]:
    logs: dict[str, str] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise ConfigError(
                f"--log {spec!r}: expected NAME=PATH, e.g. --log app=/var/log/app.log"
            )
        name = name.strip()
        if name in logs:
            raise ConfigError(f"--log {spec!r}: source name {name!r} is given twice")
        logs[name] = path.strip()
    return logs


MATCH_RE = re.compile(r"[A-Z0-9_]+=.*")


def _matches(where: str, matches: Any) -> tuple[str, ...]:
    if not isinstance(matches, list) or not all(
        isinstance(m, str) and MATCH_RE.fullmatch(m.strip()) for m in matches
    ):
        raise ConfigError(
            f"{where}: matches are FIELD=VALUE strings, e.g. _SYSTEMD_UNIT=nginx.service or "
            f"PRIORITY=3; got {matches!r}"
        )
    return tuple(m.strip() for m in matches)


def _journals_from_table(table: Any) -> dict[str, JournalSpec]:
    if not isinstance(table, dict):
        raise ConfigError('journals: must be a table of NAME = {matches = ["FIELD=VALUE"]}')
    journals = {}
    for name, spec in table.items():
        if not isinstance(spec, dict) or set(spec) - {"matches", "directory"}:
            raise ConfigError(f"journals.{name}: known keys are matches and directory")
        directory = spec.get("directory")
        if directory is not None:
            directory = _text(f"journals.{name}.directory", directory)
        matches = _matches(f"journals.{name}.matches", spec.get("matches", []))
        journals[name] = JournalSpec(name, matches, directory)
    return journals


def _journals_from_flags(specs: list[str]) -> dict[str, JournalSpec]:
    journals: dict[str, JournalSpec] = {}
    for spec in specs:
        name, _, matches = spec.partition("=")
        name = name.strip()
        if not name or name in journals:
            raise ConfigError(
                f"--journal {spec!r}: expected a new NAME[=MATCH[,MATCH...]], "
                "e.g. --journal web=_SYSTEMD_UNIT=nginx.service"
            )
        # The first '=' ends the name; matches are split on ',' (values rarely hold one).
        given = [m for m in matches.split(",") if m.strip()] if matches else []
        journals[name] = JournalSpec(name, _matches(f"--journal {spec!r}", given))
    return journals


def _check_logs(logs: dict[str, str]) -> tuple[LogSource, ...]:
    seen_paths: dict[str, str] = {}
    for name, path in logs.items():
        if not NAME_RE.fullmatch(name) or name in RESERVED_NAMES:
            raise ConfigError(
                f"log source {name!r}: names are 1-64 letters, digits, '_', '.', '-' "
                f"(and not {', '.join(sorted(RESERVED_NAMES))})"
            )
        key = str(Path(path).expanduser().absolute())
        if key in seen_paths:
            raise ConfigError(
                f"log source {name!r}: path {path} is already followed by {seen_paths[key]!r}"
            )
        seen_paths[key] = name
    return tuple(LogSource(name, str(Path(p).expanduser())) for name, p in logs.items())


def load_config(path: str | None = None, flags: Mapping[str, Any] | None = None) -> Config:
    """Build a Config from an optional TOML file, then flags (which win)."""
    values: dict[str, Any] = {}
    logs: dict[str, str] | None = None
    journals: dict[str, JournalSpec] = {}
    if path:
        data = read_file(path)  # its errors already name the file
        try:
            values, logs = _from_file(data)
            journals = _journals_from_table(data.get("journals", {}))
        except ConfigError as exc:
            raise ConfigError(f"config file {path}: {exc}") from None
    flags = flags or {}
    for flag, (field, check) in FLAG_KEYS.items():
        value = flags.get(flag)
        if value is not None and value is not False:  # unset, or a store_true flag not given
            values[field] = check(f"--{flag.replace('_', '-')}", value)
    flag_logs = _logs_from_flags(flags.get("logs") or [])
    journals = {**journals, **_journals_from_flags(flags.get("journals") or [])}
    if logs is None and not flag_logs and not journals:
        logs = default_logs()  # an explicit empty [logs] table means: no logs
    # A --log NAME replaces the file's NAME: flags override the file.
    logs = {**(logs or {}), **flag_logs}
    for name in journals:
        if name in logs:
            raise ConfigError(f"journal source {name!r}: a log source already has this name")
        _check_logs({name: f"journal:{name}"})  # the same name rules as log sources
    config = replace(Config(), **values, logs=_check_logs(logs), journals=tuple(journals.values()))
    _check_exposure(config)
    return config


def _check_exposure(config: Config) -> None:
    if bool(config.certfile) != bool(config.keyfile):
        raise ConfigError("--certfile and --keyfile go together: give both to serve HTTPS")
    if is_loopback(config.host) or config.users_file or config.allow_anonymous:
        return
    raise ConfigError(
        f"--host {config.host}: refusing to expose the dashboard without authentication; "
        "give --users-file FILE (lines from `sse-monitor hash-password USER`), "
        "or --allow-anonymous if that is really meant"
    )


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def _from_file(data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str] | None]:
    top = {k: v for k, v in data.items() if k not in (*SECTIONS, "logs", "journals", "alerts")}
    values = _from_table(top, TOP_KEYS, "")
    alerts = data.get("alerts", [])
    if not isinstance(alerts, list) or not all(isinstance(a, dict) for a in alerts):
        raise ConfigError("alerts: must be an array of tables ([[alerts]] ...)")
    values["alerts"] = tuple(alerts)
    for section, keys in SECTIONS.items():
        table = data.get(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{section}: must be a table ([{section}])")
        values.update(_from_table(table, keys, f"{section}."))
    return values, _logs_from_table(data["logs"]) if "logs" in data else None
