"""A tap (the live end of one host's events stream on a dashboard) writing to its caught-up
clients: each entry once, none a client already read from Redis itself; and a view's
catch-up from Redis, which says `gap` where the budget trimmed its position."""

from __future__ import annotations

import asyncio
import json

from redis_server import RedisServer

from monitor.fleet.connect import connect
from monitor.fleet.keys import events_key, parse_stream_id, sticky_key
from monitor.fleet.taps import Tap, Taps, frame_id
from monitor.fleet.view import RECENT_S, HostView
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


async def test_a_cursor_trimmed_while_a_client_catches_up_is_a_gap(
    redis_server: RedisServer,
) -> None:
    """A client reading Redis behind its tap, whose position the byte budget trims between
    two reads: XRANGE would start at the first entry kept as if nothing were missed; the
    view says `gap` first, with an id just before that entry."""
    admin = redis_server.client()
    ids = [admin.xadd(events_key("web1"), dict(entry(0, f"line {i}")[1])) for i in range(6)]
    admin.xtrim(events_key("web1"), minid=ids[3].decode(), approximate=False)
    client = connect(redis_server.config(), "test")
    try:
        view = HostView("web1", client, Taps(client, client), dict, history_events=10)
        cursor = parse_stream_id(ids[1])
        assert cursor is not None
        frames, after = await view._read(cursor)
        assert [f.type for f in frames] == ["gap", "log", "log", "log"]
        kept = parse_stream_id(ids[3])
        assert kept is not None and frame_id(frames[0]) < kept == frame_id(frames[1])
        assert after == parse_stream_id(ids[5])
        held, after = await view._read(kept)  # a cursor still held: no gap
        assert [f.type for f in held] == ["log", "log"]
    finally:
        await client.aclose()


async def test_a_status_among_what_was_trimmed_comes_again_around_the_gap(
    redis_server: RedisServer,
) -> None:
    """The source's latest status was among the entries trimmed from under a client: it
    comes again, in id order: here it was the newest trimmed, so the gap takes the id before
    it."""
    admin = redis_server.client()
    key = events_key("web1")
    status = json.dumps({"kind": "log", "source": "app", "state": "missing"}).encode()
    fields = [
        entry(0, "one")[1],
        entry(0, "two")[1],
        {b"t": b"status", b"s": b"app", b"i": b"1-3", b"d": status},
        entry(0, "four")[1],
        entry(0, "five")[1],
    ]
    for n, f in enumerate(fields, 1):
        admin.xadd(key, dict(f), id=f"100-{n}")
    admin.xtrim(key, minid="100-4", approximate=False)
    admin.hset(sticky_key("web1"), "status:app", b"100-3 " + status)
    client = connect(redis_server.config(), "test")
    try:
        # the hash as the registry last read it: before that status was written
        view = HostView("web1", client, Taps(client, client), dict, history_events=10)
        frames, _ = await view._read((100, 1))
        assert [(f.type, f.id) for f in frames] == [
            ("gap", "100-2"),
            ("status", "100-3"),
            ("log", "100-4"),
            ("log", "100-5"),
        ]
        assert json.loads(frames[1].json)["state"] == "missing"
    finally:
        await client.aclose()


async def test_a_subscriber_hears_of_an_agents_gap_whatever_it_selected(
    redis_server: RedisServer,
) -> None:
    """An agent's `gap` (its own hub lapped it during an outage) is in Redis among its
    host's events; a dashboard's client reading past it gets it, even one that asked for
    one source's log lines only."""
    admin = redis_server.client()
    key = events_key("web1")
    ids = [admin.xadd(key, dict(entry(0, "before")[1]))]
    gap = {b"t": b"gap", b"i": b"1-5", b"d": b'{"missed":3,"lines":3,"resume_id":"1-5"}'}
    ids.append(admin.xadd(key, gap))
    ids.append(admin.xadd(key, dict(entry(0, "after")[1])))
    client = connect(redis_server.config(), "test")
    try:
        view = HostView("web1", client, Taps(client, client), dict, history_events=10)
        one_source = Selector(types=frozenset({"log"}), sources=frozenset({"app"}))
        async with view.subscribe(one_source, last_event_id=ids[0].decode()) as batches:
            frames = await asyncio.wait_for(anext(batches), 5)
        assert [(f.type, f.id) for f in frames] == [
            ("gap", ids[1].decode()),
            ("log", ids[2].decode()),
        ]
        assert json.loads(frames[0].json)["lines"] == 3
        # a new client's history starts from the host as it is: the gap is not in it
        assert "gap" not in [f.type for f in await view.state(Selector(), {})]
    finally:
        await client.aclose()


async def test_a_new_clients_history_is_never_older_than_a_second(
    redis_server: RedisServer,
) -> None:
    """New clients arriving together share one read of a host's recent history, kept a
    second. The clients who asked went away before it came: a client asking later still
    gets the host as it is now, not that read (and the view lets it go)."""
    admin = redis_server.client()
    admin.xadd(events_key("web1"), dict(entry(0, "first")[1]))
    client = connect(redis_server.config(), "test")

    async def lines() -> list[str]:
        frames = await view.state(Selector(), {})
        return [line for f in frames if f.type == "log" for line in json.loads(f.json)["lines"]]

    try:
        view = HostView("web1", client, Taps(client, client), dict, history_events=10)
        asker = asyncio.create_task(lines())
        await asyncio.sleep(0)  # it has asked
        asker.cancel()
        # The read it started goes on without it: wait until it is done.
        while len(asyncio.all_tasks()) > 1:
            await asyncio.sleep(0.01)
        admin.xadd(events_key("web1"), dict(entry(0, "second")[1]))
        await asyncio.sleep(RECENT_S * 1.5)  # the time it is kept, and more: not a wait on it
        assert await lines() == ["first", "second"]
    finally:
        await client.aclose()
