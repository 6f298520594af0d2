"""Notification targets: the config's [[notify]] tables, parsed and checked once at start.

A target has a name, a kind (webhook, slack, discord, ntfy: an HTTPS POST each; command: a
program run without a shell), and a filter (which rules, severities and states it gets).
Secrets need not be in the config: a URL with its token can come from `url_file`, a header's
value from `header_files`. Every problem is a ConfigError naming the target and the key.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from monitor.alerts.rules import SEVERITIES
from monitor.duration import parse_duration
from monitor.values import ConfigError, named_tables, read_text, require_text

KINDS = ("webhook", "slack", "discord", "ntfy", "command")
STATES = ("firing", "resolved")
KEYS = (
    "name",
    "kind",
    "url",
    "url_file",
    "headers",
    "header_files",
    "command",
    "rules",
    "severities",
    "states",
    "repeat",
    "timeout",
    "retry_for",
)
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_RETRY_FOR_S = 3600.0
MIN_REPEAT_S = 60.0  # a firing rule said again more often than this would be a flood
TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


@dataclass(frozen=True, slots=True)
class Target:
    """Where alerts go, and which of them."""

    name: str
    kind: str
    url: str = ""  # webhook-like kinds
    headers: Mapping[str, str] = field(default_factory=dict)
    command: tuple[str, ...] = ()  # the command kind: argv, the program resolved
    rules: frozenset[str] | None = None  # None: every rule
    severities: frozenset[str] | None = None  # None: every severity
    states: frozenset[str] = frozenset(STATES)
    repeat_s: float | None = None  # while firing, say so again this often
    timeout_s: float = DEFAULT_TIMEOUT_S
    retry_for_s: float = DEFAULT_RETRY_FOR_S  # retries stop this long after the first try

    def wants(self, alert: Mapping[str, Any]) -> bool:
        """True if this target gets this alert transition."""
        return (
            alert.get("state") in self.states
            and (self.rules is None or alert.get("rule") in self.rules)
            and (self.severities is None or alert.get("severity") in self.severities)
        )

    def where(self) -> str:
        """Where it sends, for messages: the URL without its path and query (which may hold
        a token), or the program."""
        if self.kind == "command":
            return self.command[0]
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


def parse_targets(raw: Any, rule_names: Collection[str]) -> tuple[Target, ...]:
    """Check the TOML `notify` array and build its targets; any problem is a ConfigError."""
    return named_tables("notify", raw, lambda table: _parse_target(table, rule_names))


def _parse_target(table: dict[str, Any], rule_names: Collection[str]) -> Target:
    for key in table:
        if key not in KEYS:
            raise ConfigError(f"{key}: unknown key (known: {', '.join(KEYS)})")
    name = require_text("name", table.get("name"))
    kind = table.get("kind")
    if kind not in KINDS:
        raise ConfigError(f"kind: must be one of {', '.join(KINDS)}, got {kind!r}")
    options: dict[str, Any] = {
        "rules": _names("rules", table.get("rules"), rule_names),
        "severities": _names("severities", table.get("severities"), SEVERITIES),
        "states": _names("states", table.get("states"), STATES) or frozenset(STATES),
        "repeat_s": _repeat(table.get("repeat")),
        "timeout_s": _duration("timeout", table.get("timeout"), 300.0) or DEFAULT_TIMEOUT_S,
        "retry_for_s": _duration("retry_for", table.get("retry_for"), 7 * 86400.0)
        or DEFAULT_RETRY_FOR_S,
    }
    if kind == "command":
        for key in ("url", "url_file", "headers", "header_files"):
            if key in table:
                raise ConfigError(f'{key}: not for kind = "command" (it takes command = [...])')
        return Target(name, kind, command=_command(table.get("command")), **options)
    if "command" in table:
        raise ConfigError('command: only for kind = "command"')
    return Target(name, kind, url=_url(table), headers=_headers(table), **options)


def _names(key: str, value: Any, known: Collection[str]) -> frozenset[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{key}: must be a non-empty list of strings, got {value!r}")
    for v in value:
        if v not in known:
            choices = ", ".join(sorted(known)) or "none are configured"
            raise ConfigError(f"{key}: {v!r} is not one of {choices}")
    return frozenset(value)


def _duration(key: str, value: Any, max_s: float) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value, max_s=max_s)
    except ValueError as exc:
        raise ConfigError(f"{key}: {exc}") from None


def _repeat(value: Any) -> float | None:
    seconds = _duration("repeat", value, 7 * 86400.0)
    if seconds is not None and seconds < MIN_REPEAT_S:
        raise ConfigError(f"repeat: at least {MIN_REPEAT_S:g}s, got {value!r}")
    return seconds


def _url(table: dict[str, Any]) -> str:
    if ("url" in table) == ("url_file" in table):
        raise ConfigError('needs url = "https://..." or url_file = "/path" (one of them)')
    if "url_file" in table:
        path = require_text("url_file", table["url_file"])
        url = read_text(path, "url_file").strip()
        shown = f"the URL in {path}"
    else:
        url = require_text("url", table["url"])
        shown = "url"
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError(f"{shown}: must be an http:// or https:// URL with a host")
    try:
        parts.port  # noqa: B018 - raises for a bad port
    except ValueError:
        raise ConfigError(f"{shown}: has a bad port") from None
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise ConfigError(f"{shown}: has spaces or control characters")
    return url


def _headers(table: dict[str, Any]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for key, from_file in (("headers", False), ("header_files", True)):
        value = table.get(key, {})
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise ConfigError(f'{key}: must be a table of "Header-Name" = "value"')
        for header, given in value.items():
            if not header or not set(header) <= TOKEN:
                raise ConfigError(f"{key}: {header!r} is not a header name")
            text = read_text(given, f"{key}.{header}").strip() if from_file else given
            if any(ord(c) < 32 and c != "\t" or ord(c) == 127 for c in text):
                raise ConfigError(f"{key}.{header}: the value has a control character")
            headers[header] = text
    return headers


def _command(value: Any) -> tuple[str, ...]:
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, str) and "\0" not in v for v in value)
        or not value[0]
    ):
        raise ConfigError('command: must be a list like ["/usr/local/bin/page", "--team", "ops"]')
    program = shutil.which(value[0]) if os.sep not in value[0] else value[0]
    if program is None or not os.path.isfile(program) or not os.access(program, os.X_OK):
        raise ConfigError(f"command: {value[0]} is not an executable program")
    return (os.path.abspath(program), *value[1:])
