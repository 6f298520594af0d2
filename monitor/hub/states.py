"""LatestStates: the latest event of each source (status) and of each alert rule (alert): the
hub's sticky events, which a new client starts with and a `gap` sends again. In a state
directory, resolves outlive a restart, for the clients that resume across it.

A client that was away while an alert resolved, then the server restarted, resumes with the
same run's ids: its gap covers the resolve, which only the previous process knew. What else
the previous run last said is said again by this one, or is no longer true: each source's
status at its start, each alert still firing (restored); a removed source's status or
removed rule's alert sent again would show what is gone. So of the previous run only the
resolves are kept (`before`), for gaps only: a new client is shown this run's states."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from monitor.hub.events import ALERT, STICKY_KEYS, Frame
from monitor.hub.interface import Selector
from monitor.hub.sse import encode_frame
from monitor.state import StateDir

FILE = "states.json"
SAVE_AFTER_S = 1.0  # a burst of changes (an alert storm, a flapping file) is one write

Key = tuple[str, str]  # (type, source or rule)
Id = TypeVar("Id", int, tuple[int, int])  # a hub's seq, or a Redis stream id


def around_gap(
    again: list[Frame], newest: Id, id_of: Callable[[Frame], Id], earlier: Callable[[Id], Id]
) -> tuple[Id, list[Frame], list[Frame]]:
    """Where a gap goes among the states it sends again (`again`): its id is the newest
    event's it stands for, unless one of them has that id; then the one before, and so on,
    so ids still strictly grow. Its id, and the states before and after it."""
    taken = {id_of(f) for f in again}
    while newest in taken:
        newest = earlier(newest)
    return (
        newest,
        sorted((f for f in again if id_of(f) < newest), key=id_of),
        sorted((f for f in again if id_of(f) > newest), key=id_of),
    )


class LatestStates:
    def __init__(self, run_id: str, state: StateDir | None = None) -> None:
        self._run_id = run_id
        self._state = state
        self._now: dict[Key, tuple[Frame, dict[str, Any]]] = {}
        self._before: dict[Key, Frame] = self._load()
        self._saving: asyncio.TimerHandle | None = None

    def keep(self, frame: Frame, payload: dict[str, Any]) -> None:
        """`frame`, of a sticky type: the latest of its key from now on."""
        self._now[(frame.type, str(payload[STICKY_KEYS[frame.type]]))] = (frame, payload)
        if self._state is not None and self._saving is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop (a test's hub): saved at close
                return
            self._saving = loop.call_later(SAVE_AFTER_S, self._save)

    def latest(self, event_type: str) -> dict[str, dict[str, Any]]:
        """The latest payload of each key of a sticky type, this run's."""
        return {key: p for (kind, key), (_, p) in self._now.items() if kind == event_type}

    def frames(self) -> Iterator[Frame]:
        """This run's latest frames, for a new client."""
        return (frame for frame, _ in self._now.values())

    def among(self, first: int, after: int, selector: Selector) -> list[Frame]:
        """The latest frames (this run's or, across a restart, the previous run's) with
        seqs first..after-1 that the selector wants: what a gap over those events sends
        again."""
        frames = [*self.frames(), *self._before.values()]
        return [f for f in frames if first <= f.seq < after and selector.matches(f)]

    def close(self) -> None:
        """Save now (a clean stop)."""
        if self._saving is not None:
            self._saving.cancel()
        self._save()

    def _save(self) -> None:
        self._saving = None
        if self._state is None:
            return
        # This run's resolves, and the previous run's of rules that have said nothing since.
        resolved = {
            key: frame
            for key, (frame, payload) in self._now.items()
            if frame.type == ALERT and payload.get("state") == "resolved"
        }
        kept = {k: f for k, f in self._before.items() if k not in self._now} | resolved
        events = [
            [frame.type, key, frame.seq, frame.source, frame.json.decode()]
            for (_, key), frame in kept.items()
        ]
        self._state.write_json(FILE, {"run_id": self._run_id, "events": events})

    def _load(self) -> dict[Key, Frame]:
        saved = self._state.read_json(FILE) if self._state is not None else None
        if not saved or saved.get("run_id") != self._run_id:
            return {}  # another run's ids: clients resuming from them get a reset anyway
        before: dict[Key, Frame] = {}
        for item in saved.get("events", []):
            try:
                kind, key, seq, source, payload = item
                if kind == ALERT and isinstance(seq, int):
                    before[(kind, str(key))] = encode_frame(
                        kind, seq, self._run_id, json.loads(payload), source
                    )
            except (TypeError, ValueError):
                continue  # one bad entry (an edited file) costs that entry only
        return before
