"""The hub: where sources publish and clients read. Its interface (typing Protocols, in
interface.py), event types and ids, the SSE wire format, and the in-memory hub (a bounded ring
and its readers). The rest of the program asks create_hub() for a hub and sees only `Hub`."""

from __future__ import annotations

from monitor.config import StreamConfig
from monitor.hub.interface import Hub


def create_hub(config: StreamConfig) -> Hub:
    """The hub a server runs on: the embedded in-memory one (a Redis Streams hub plugs in
    here, chosen by the config)."""
    from monitor.hub.memory import MemoryHub

    return MemoryHub(
        max_events=config.buffer_events,
        max_bytes=config.buffer_bytes,
        history_events=config.history_events,
    )
