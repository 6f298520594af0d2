"""Which logs to follow: the [logs] and [journals] tables and the --log and --journal flags,
checked into named sources (one namespace for files and journals)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monitor.values import ConfigError, require_text

# Source names travel in URLs (?sources=a,b) and in event payloads: keep them plain.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# Names of the sources whose status events share the log sources' namespace.
RESERVED_NAMES = frozenset({"metrics", "alerts"})


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


def logs_from_table(table: Any) -> dict[str, str]:
    """[logs]: NAME = "PATH or glob"."""
    if not isinstance(table, dict):
        raise ConfigError('logs: must be a table of NAME = "PATH" entries ([logs])')
    logs = {}
    for name, path in table.items():
        logs[name] = require_text(f"logs.{name}", path)
    return logs


def logs_from_flags(specs: list[str]) -> dict[str, str]:
    """--log NAME=PATH, each name once."""
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


def journals_from_table(table: Any) -> dict[str, JournalSpec]:
    """[journals]: NAME = {matches = ["FIELD=VALUE"], directory = "..."}."""
    if not isinstance(table, dict):
        raise ConfigError('journals: must be a table of NAME = {matches = ["FIELD=VALUE"]}')
    journals = {}
    for name, spec in table.items():
        if not isinstance(spec, dict) or set(spec) - {"matches", "directory"}:
            raise ConfigError(f"journals.{name}: known keys are matches and directory")
        directory = spec.get("directory")
        if directory is not None:
            directory = require_text(f"journals.{name}.directory", directory)
        matches = _matches(f"journals.{name}.matches", spec.get("matches", []))
        journals[name] = JournalSpec(name, matches, directory)
    return journals


def journals_from_flags(specs: list[str]) -> dict[str, JournalSpec]:
    """--journal NAME[=MATCH[,MATCH...]], each name once."""
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


def check_logs(logs: dict[str, str]) -> tuple[LogSource, ...]:
    """Names that are plain and not reserved, and no path followed twice."""
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
