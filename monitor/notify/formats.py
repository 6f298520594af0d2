"""What a notification says, per kind: the documented JSON body (webhook, and a command's
stdin), and the same alert in Slack's, Discord's and ntfy's incoming-webhook formats. No
SDKs: each is one HTTPS POST of bytes made here."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from monitor.notify.targets import Target

ICONS = {"firing": "🔴", "resolved": "✅"}
NTFY_PRIORITY = {"critical": "5", "warning": "4", "info": "3"}
DISCORD_MAX = 2000  # characters of a Discord message


def alert_body(
    alert: Mapping[str, Any],
    transition_id: str,
    *,
    host: str,
    public_url: str | None,
    started: float | None,
) -> dict[str, Any]:
    """The webhook body of one alert transition (see the README's Notifications)."""
    state = alert.get("state")
    since = alert.get("since")
    begun = started if started is not None else since
    body: dict[str, Any] = {
        "id": transition_id,
        "rule": alert.get("rule"),
        "severity": alert.get("severity"),
        "state": state,
        "message": alert.get("message"),
        "host": host,
        "value": alert.get("value"),
        "started": begun,
        "ended": since if state == "resolved" else None,
        "url": f"{public_url.rstrip('/')}/#t={begun:.0f}" if public_url and begun else None,
        "repeat": 0,
        "test": False,
    }
    return body


def headline(body: Mapping[str, Any]) -> str:
    """One line: `[critical] disk firing on web-1: disks./.percent is 93 > 90`."""
    prefix = "TEST " if body.get("test") else ""
    again = f" (still, #{body['repeat']})" if body.get("repeat") else ""
    return (
        f"{prefix}[{body.get('severity')}] {body.get('rule')} {body.get('state')}{again} "
        f"on {body.get('host')}: {body.get('message')}"
    )


def request_of(target: Target, body: Mapping[str, Any]) -> tuple[bytes, dict[str, str]]:
    """The bytes to POST to a webhook-like target, and their headers."""
    text = headline(body)
    icon = ICONS.get(str(body.get("state")), "")
    url = body.get("url")
    headers = {"Idempotency-Key": str(body.get("id"))}
    if target.kind == "slack":
        link = f" <{_slack(str(url))}|open>" if url else ""
        payload: Any = {"text": f"{icon} {_slack(text)}{link}"}
    elif target.kind == "discord":
        link = f" {url}" if url else ""
        content = f"{icon} {text}"[: DISCORD_MAX - len(link)] + link
        # Never a ping: an alert's text must not reach @everyone.
        payload = {"content": content, "allowed_mentions": {"parse": []}}
    elif target.kind == "ntfy":
        headers |= {
            "Title": _latin1(f"{body.get('rule')} {body.get('state')} on {body.get('host')}"),
            "Priority": NTFY_PRIORITY.get(str(body.get("severity")), "3"),
            "Tags": "rotating_light" if body.get("state") == "firing" else "white_check_mark",
        }
        if url:
            headers["Click"] = _latin1(str(url))
        return text.encode(), {**headers, "Content-Type": "text/plain; charset=utf-8"}
    else:
        payload = dict(body)
    data = json.dumps(payload, ensure_ascii=False).encode()
    return data, {**headers, "Content-Type": "application/json"}


def environment(body: Mapping[str, Any]) -> dict[str, str]:
    """A command's environment: the alert's fields as SSE_MONITOR_ALERT_*, and a plain PATH
    (nothing of the server's own environment)."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
    for key, value in body.items():
        if value is None or isinstance(value, dict | list):
            continue
        text = str(value).replace("\0", "")
        env[f"SSE_MONITOR_ALERT_{key.upper()}"] = text
    return env


def _slack(text: str) -> str:
    """Slack's three escapes: the rest of the text is shown as is."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _latin1(text: str) -> str:
    """A header value HTTP can carry."""
    return text.encode("latin-1", "replace").decode("latin-1").replace("\r", " ").replace("\n", " ")
