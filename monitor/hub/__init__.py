"""The hub: where sources publish and clients read. Its interface (typing Protocols, in
interface.py), event types and ids, the SSE wire format, and the in-memory hub (a bounded ring
and its readers). The rest of the program asks create_hub() for a hub and sees only `Hub`."""

from __future__ import annotations

from monitor.hub.interface import Hub
from monitor.state import StateDir


def create_hub(
    *, max_events: int, max_bytes: int, history_events: int, state: StateDir | None = None
) -> Hub:
    """The hub a server runs on: the embedded in-memory one, whose replay buffer holds at most
    max_events events and max_bytes bytes, and gives a new client history_events of each type
    and source; with a state directory, its records outlive the process. (A Redis Streams hub
    for many hosts plugs in here, chosen by the config.)"""
    from monitor.hub.memory import MemoryHub

    return MemoryHub(
        max_events=max_events, max_bytes=max_bytes, history_events=history_events, state=state
    )
