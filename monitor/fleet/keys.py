"""Where a host's data lives in Redis, and an entry of its streams as a client's frame.

Per host H, only keys under `smon:H:` (an agent's ACL user may write those and no others):
- `smon:H:events`  every event clients stream and resume from (log, metrics, alert,
  status, gap), its SSE id the entry's id; trimmed by a byte budget (events_bytes).
- `smon:H:metrics` metrics samples alone, for the charts and the fleet page; trimmed by
  time (the chart's window), so a log burst can never push out the chart's history.
- `smon:H:sticky`  a hash: the host's `hello` (sources, interval, version), its latest
  `status` by source and `alert` by rule (`<entry id> <JSON>`): what a new client starts
  with whatever the streams still hold.

And the dashboards' own, outside any host's pattern (a host may be named "fleet"):
- `smon-fleet:lease`  which dashboard announces hosts going down (fleet/leader.py).
- `smon-fleet:alerts` those announcements, `host down` alerts firing and resolved.
"""

from __future__ import annotations

from monitor.config import HOST_RE
from monitor.hub.events import GAP, STREAM_TYPES, Frame

PREFIX = "smon:"
EVENT_TYPES = STREAM_TYPES | {GAP}  # what an events stream may carry
STOPPED = b"stopped"  # a metrics-stream entry's type when its agent stopped cleanly

FLEET_LEASE = "smon-fleet:lease"
FLEET_ALERTS = "smon-fleet:alerts"

StreamId = tuple[int, int]


def events_key(host: str) -> str:
    """The host's stream of events for clients."""
    return f"{PREFIX}{host}:events"


def metrics_key(host: str) -> str:
    """The host's stream of metrics samples (the charts' history)."""
    return f"{PREFIX}{host}:metrics"


def sticky_key(host: str) -> str:
    """The host's hash of what every new client starts with."""
    return f"{PREFIX}{host}:sticky"


def host_of(key: bytes | str) -> str | None:
    """The host a metrics stream's key names; None for any other key, and for a name that
    is not a host name (a key someone else wrote must not reach a page or a query)."""
    text = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
    if not (text.startswith(PREFIX) and text.endswith(":metrics")):
        return None
    name = text[len(PREFIX) : -len(":metrics")]
    return name if HOST_RE.fullmatch(name) else None


def parse_stream_id(text: bytes | str) -> StreamId | None:
    """`<ms>-<n>` as a pair of ints; None if it is not a stream id."""
    raw = text.decode("ascii", "replace") if isinstance(text, bytes) else text
    ms, dash, n = raw.strip().partition("-")
    if not dash or not (ms.isascii() and ms.isdigit() and n.isascii() and n.isdigit()):
        return None
    if len(ms) > 20 or len(n) > 20:
        return None
    return int(ms), int(n)


def format_stream_id(sid: StreamId) -> str:
    """The text Redis takes."""
    return f"{sid[0]}-{sid[1]}"


def entry_frame(entry_id: bytes, fields: dict[bytes, bytes]) -> Frame | None:
    """An events-stream entry as the frame clients get (its id the entry's); None for an
    entry no agent of ours wrote (an unknown type, or JSON that is not one line)."""
    sid = parse_stream_id(entry_id)
    kind = fields.get(b"t", b"").decode("ascii", "replace")
    data = fields.get(b"d")
    if sid is None or kind not in EVENT_TYPES or not data or b"\n" in data or b"\r" in data:
        return None
    source = fields.get(b"s")
    head = f"event: {kind}\nid: {sid[0]}-{sid[1]}\ndata: ".encode()
    return Frame(
        sid[1],
        kind,
        source.decode("utf-8", "replace") if source else None,
        b"%b%b\n\n" % (head, data),
        len(head),
        str(sid[0]),
    )
