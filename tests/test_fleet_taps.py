"""A tap (the live end of one host's events stream on a dashboard) writing to its caught-up
clients: each entry once, none a client already read from Redis itself."""

from __future__ import annotations

import json

from monitor.fleet.taps import Tap
from monitor.hub.events import Frame
from monitor.hub.interface import Selector


def entry(ms: int, line: str) -> tuple[bytes, dict[bytes, bytes]]:
    data = json.dumps({"source": "app", "lines": [line]}).encode()
    return f"{ms}-0".encode(), {b"t": b"log", b"s": b"app", b"i": b"1-1", b"d": data}


async def test_a_client_that_read_ahead_of_the_tap_gets_no_entry_twice() -> None:
    """A client caught up from Redis to entry 3 before the follower brought entries 2 and 3
    to the tap: attached at 3, it gets 4 and on, not 2 and 3 again."""
    tap = Tap("web1", (1, 0))
    written: list[Frame] = []

    def sink(frame: Frame) -> bool:
        written.append(frame)
        return True

    direct = tap.attach(Selector(), sink, (3, 0))
    tap.add([entry(2, "two"), entry(3, "three"), entry(4, "four")])
    tap.add([entry(5, "five")])
    assert [f.id for f in written] == ["4-0", "5-0"]
    assert direct.cursor == (5, 0)
    assert [f.id for f in tap.after((1, 0)) or []] == ["2-0", "3-0", "4-0", "5-0"]
