"""Checks of values a user gives (config keys, flags, files named by them): each failure is a
ConfigError of one line that names the key or file and says what was expected."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from typing import Any, Protocol, TypeVar


class ConfigError(Exception):
    """A configuration value is wrong; the message names the key and the fix."""


def require_text(key: str, value: Any) -> str:
    """A non-empty string, stripped."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key}: must be a non-empty string, got {value!r}")
    return value.strip()


def require_bool(key: str, value: Any) -> bool:
    """true or false (not 1 or "yes")."""
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: must be true or false, got {value!r}")
    return value


def number_in(lo: float, hi: float, *, integer: bool) -> Callable[[str, Any], Any]:
    """A check for a number (an int if `integer`) from lo to hi."""
    kind = "an integer" if integer else "a number"

    def check(key: str, value: Any) -> Any:
        ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
        if isinstance(value, bool) or not ok_type or not lo <= value <= hi:
            raise ConfigError(f"{key}: must be {kind} from {lo:g} to {hi:g}, got {value!r}")
        return value if integer else float(value)

    return check


MAX_FILE_BYTES = 1024 * 1024  # a config, users or password file is never near this


def kind_of(mode: int) -> str:
    """A file type in words, for messages: "a directory", "a FIFO", ..."""
    for is_kind, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if is_kind(mode):
            return name
    return "not a regular file"


def read_file_text(path: str, what: str) -> tuple[str, os.stat_result]:
    """The text of a small file the user named (`what` says which: "config file", "users
    file", "--password-file"), and its stat. Only a regular file of at most MAX_FILE_BYTES,
    opened without blocking: a FIFO or a link to /dev/zero is an error, never a hang."""
    where = f"{what} {path}"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ConfigError(f"{where}: not found") from None
    except PermissionError:
        raise ConfigError(f"{where}: permission denied") from None
    except OSError as exc:
        raise ConfigError(f"{where}: {exc.strerror or exc}") from None
    with open(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{where}: is {kind_of(st.st_mode)}, not a regular file")
        try:
            data = f.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise ConfigError(f"{where}: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(f"{where}: is over {MAX_FILE_BYTES // (1024 * 1024)} MiB")
    try:
        return data.decode("utf-8"), st
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: not UTF-8 text") from None


def read_text(path: str, what: str) -> str:
    """The text of a small file the user named (see read_file_text)."""
    return read_file_text(path, what)[0]


class Named(Protocol):
    @property
    def name(self) -> str: ...


T = TypeVar("T", bound=Named)


def named_tables(key: str, raw: Any, parse: Callable[[dict[str, Any]], T]) -> tuple[T, ...]:
    """A TOML array of tables (`[[alerts]]`, `[[notify]]`), each parsed by `parse`, names
    unique; a problem is a ConfigError that says which table: `alerts[2] 'cpu': ...`."""
    if not isinstance(raw, list | tuple) or not all(isinstance(t, dict) for t in raw):
        raise ConfigError(f"{key}: must be an array of tables ([[{key}]] ...)")
    parsed: list[T] = []
    seen: dict[str, int] = {}
    for i, table in enumerate(raw):
        name = table.get("name")
        where = f"{key}[{i}] {name!r}" if isinstance(name, str) and name.strip() else f"{key}[{i}]"
        try:
            item = parse(table)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        if item.name in seen:
            raise ConfigError(
                f"{where}: name: already used by {key}[{seen[item.name]}]; names must be unique"
            )
        seen[item.name] = i
        parsed.append(item)
    return tuple(parsed)
