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
from collections.abc import Iterator
from typing import Any

from monitor.hub.events import ALERT, STICKY_KEYS, Frame
from monitor.hub.interface import Selector
from monitor.hub.sse import encode_frame
from monitor.state import StateDir

FILE = "states.json"
SAVE_AFTER_S = 1.0  # a burst of changes (an alert storm, a flapping file) is one write

Key = tuple[str, str]  # (type, source or rule)


class LatestStates:
    def __init__(self, run_id: str, state: StateDir | None = None) -> None:
        self._run_id = run_id
        self._state = state
        self._now: dict[Key, tuple[Frame, dict[str, Any]]] = {}
        self._before: dict[Key, Frame] = self._load()
        self._saving: asyncio.TimerHandle | None = None

    def keep(self, frame: Frame, payload: dict[str, Any]) -> None:
        """`frame` if it is of a sticky type: the latest of its key from now on."""
        key_field = STICKY_KEYS.get(frame.type)
        if key_field is None:
            return
        self._now[(frame.type, str(payload[key_field]))] = (frame, payload)
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
        seqs first..after-1 that the selector wants, in seq order: what a gap over those
        events sends again."""
        frames = [*self.frames(), *self._before.values()]
        return sorted(
            (f for f in frames if first <= f.seq < after and selector.matches(f)),
            key=lambda f: f.seq,
        )

    def close(self) -> None:
        """Save now (a clean stop)."""
        if self._saving is not None:
            self._saving.cancel()
        self._save()

    def _save(self) -> None:
        self._saving = None
        if self._state is None:
            return
        kept = {**self._before, **{key: frame for key, (frame, _) in self._now.items()}}
        events = [
            [frame.type, key, frame.seq, frame.source, frame.json.decode()]
            for (_, key), frame in kept.items()
            if frame.type == ALERT and json.loads(frame.json).get("state") == "resolved"
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
