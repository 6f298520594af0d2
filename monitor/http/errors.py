"""HTTP errors as JSON (`{"error": ...}`), never text with details, and the query checks that
raise them."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from aiohttp import web

COUNT = re.compile(r"[0-9]{1,7}")  # str.isdigit() would take "²"


def json_error(
    status: int, message: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> web.HTTPException:
    """An HTTP error whose body is `{"error": message, ...}`, with extra response headers."""
    body = json.dumps({"error": message, **extra})
    exc_class = web.HTTPBadRequest if status == 400 else web.HTTPException
    exc = exc_class(text=body, content_type="application/json")
    exc.set_status(status)
    exc.headers.update(headers or {})
    return exc


def reject_unknown_params(request: web.Request, allowed: Sequence[str]) -> None:
    """A 400 with a JSON body for a query parameter the endpoint does not take (a typo such
    as ?type=log would otherwise be silently ignored)."""
    for key in request.query:
        if key not in allowed:
            raise json_error(400, f"unknown query parameter {key!r}", allowed=list(allowed))


def one_param(request: web.Request, key: str) -> str | None:
    """A query parameter given at most once; None if absent, 400 if repeated."""
    values = request.query.getall(key, [])
    if len(values) > 1:
        raise json_error(400, f"{key}: given more than once")
    return values[0] if values else None


def count_param(request: web.Request, key: str, default: int, maximum: int) -> int:
    """A whole-number query parameter from 0 to `maximum` (ASCII digits only); `default` if
    absent, else 400 with a JSON body."""
    raw = one_param(request, key)
    if raw is None:
        return default
    if not COUNT.fullmatch(raw) or int(raw) > maximum:
        raise json_error(400, f"{key}: expected a whole number from 0 to {maximum}, got {raw!r}")
    return int(raw)
