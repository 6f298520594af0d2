"""Checks of values a user gives (config keys, flags, files named by them): each failure is a
ConfigError of one line that names the key or file and says what was expected."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


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


def read_text(path: str, what: str) -> str:
    """The whole of a small text file the user named (`what` says which: "config file",
    "users file", "--password-file")."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        raise ConfigError(f"{what} {path}: not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{what} {path}: is a directory, not a file") from None
    except PermissionError:
        raise ConfigError(f"{what} {path}: permission denied") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {path}: not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{what} {path}: {exc.strerror or exc}") from None
