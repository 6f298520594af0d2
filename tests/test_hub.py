"""The event hub on plain asyncio: ids, the bounded ring, cursors, gaps, resume, history."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_until

from monitor.hub.events import ALERT, LOG, METRICS, STATUS, STREAM_TYPES, Frame, parse_id
from monitor.hub.interface import BadEventId, Older, Origin, Selector
from monitor.hub.memory import MemoryHub, UnknownEventId
from monitor.hub.sse import SSEEvent, SSEParser
from monitor.state import StateDir

ALL = Selector()


def parse(frames: list[Frame]) -> list[SSEEvent]:
    """What a client reads of these frames."""
    return SSEParser().feed(b"".join(f.data for f in frames))


def parse_written(data: bytes) -> list[SSEEvent]:
    """What a client reads of bytes a sink was handed."""
    return SSEParser().feed(data)


async def read_all(
    hub: MemoryHub, cursor: int, selector: Selector = ALL
) -> tuple[list[SSEEvent], int]:
    data, cursor = await hub.read(cursor, selector)
    return parse(data), cursor


def test_ids_are_run_and_sequence_and_strictly_increase() -> None:
    hub = MemoryHub()
    ids = [hub.publish(METRICS, {"n": i}) for i in range(5)]
    parsed = [parse_id(i) for i in ids]
    assert all(p is not None and p[0] == hub.run_id for p in parsed)
    seqs = [p[1] for p in parsed if p]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5


def test_two_hubs_started_apart_have_different_run_ids() -> None:
    first = MemoryHub()
    second = MemoryHub(run_id=str(int(first.run_id) + 1))
    assert first.publish(LOG, {}) != second.publish(LOG, {})
    with pytest.raises(UnknownEventId, match="another run"):
        second.resolve(first.publish(LOG, {}))


async def test_event_is_encoded_at_publish_not_at_read() -> None:
    hub = MemoryHub()
    payload = {"lines": ["first"]}
    hub.publish(LOG, payload, source="app")
    payload["lines"].append("changed after publish")
    events, _ = await read_all(hub, 1)
    assert events[0].json() == {"lines": ["first"]}
    assert events[0].type == LOG


async def test_ring_is_bounded_by_count() -> None:
    hub = MemoryHub(max_events=16)
    for i in range(100):
        hub.publish(METRICS, {"n": i})
    assert hub.stats().held_events == 16
    events, _ = await read_all(hub, hub.resolve(hub.publish(METRICS, {"n": 100})) - 16)
    assert [e.json()["n"] for e in events] == list(range(85, 101))


def test_ring_is_bounded_by_bytes_but_keeps_the_newest_event() -> None:
    hub = MemoryHub(max_events=10_000, max_bytes=64 * 1024)
    for i in range(1000):
        hub.publish(LOG, {"n": i, "text": "x" * 1000})
    assert hub.stats().held_bytes <= 64 * 1024
    assert 50 < hub.stats().held_events < 70
    hub.publish(LOG, {"text": "y" * 200_000})  # larger than the whole ring
    assert hub.stats().held_events == 1 and hub.stats().held_bytes > 200_000


async def test_reader_behind_the_tail_gets_gap_then_oldest_held() -> None:
    hub = MemoryHub(max_events=16)
    first = hub.publish(METRICS, {"n": 0})
    cursor = hub.resolve(first) - 1  # a reader that has read nothing yet
    for i in range(1, 40):
        hub.publish(METRICS, {"n": i})
    events, cursor = await read_all(hub, cursor)
    assert events[0].type == "gap"
    assert events[0].json()["missed"] == 24
    assert [e.json()["n"] for e in events[1:]] == list(range(24, 40))
    assert hub.stats().gaps == 1
    assert await read_all(hub, cursor) == ([], cursor)


def seqs(events: list[SSEEvent]) -> list[int]:
    return [p[1] for p in map(parse_id, (e.id for e in events)) if p]


async def test_a_gap_sends_again_the_latest_status_and_alert_it_stood_for() -> None:
    """A client that fell behind still ends with every source's and rule's current state:
    a status or alert the ring dropped before the client read it comes again, in order."""
    hub = MemoryHub(max_events=16)
    hub.publish(STATUS, {"kind": "log", "source": "sys", "state": "following"}, "sys")
    had = hub.publish(STATUS, {"kind": "log", "source": "app", "state": "following"}, "app")
    hub.publish(ALERT, {"rule": "cpu", "state": "firing"})
    for i in range(10):
        hub.publish(METRICS, {"n": i})
    hub.publish(STATUS, {"kind": "log", "source": "app", "state": "missing"}, "app")
    for i in range(10, 40):
        hub.publish(METRICS, {"n": i})
    events, _ = await read_all(hub, hub.resolve(had))  # it had read up to `had`
    assert [e.type for e in events[:3]] == ["alert", "status", "gap"]
    assert events[0].json()["state"] == "firing" and events[1].json()["state"] == "missing"
    assert events[2].json()["missed"] == 24  # 26 dropped, 2 of them sent again
    assert [e.json()["n"] for e in events[3:]] == list(range(24, 40))
    assert seqs(events) == sorted(set(seqs(events)))  # ids still strictly increase


async def test_a_gap_whose_newest_event_is_sent_again_takes_the_id_before_it() -> None:
    hub = MemoryHub(max_events=16)
    cursor = hub.resolve(hub.publish(METRICS, {"n": -1}))
    for i in range(20):
        hub.publish(METRICS, {"n": i})
    status = hub.publish(STATUS, {"kind": "log", "source": "app", "state": "missing"}, "app")
    for i in range(20, 36):
        hub.publish(METRICS, {"n": i})
    events, _ = await read_all(hub, cursor)
    assert [e.type for e in events[:2]] == ["gap", "status"]
    gap = events[0]
    assert gap.json()["missed"] == 20 and gap.json()["resume_id"] == gap.id
    assert events[1].id == status
    assert seqs(events) == sorted(set(seqs(events)))


async def test_states_a_gap_passed_over_are_missed_but_the_latest_of_each_comes() -> None:
    hub = MemoryHub(max_events=16)
    cursor = hub.resolve(hub.publish(METRICS, {"n": -1}))
    for i in range(20):
        hub.publish(STATUS, {"kind": "log", "source": "app", "state": f"s{i}"}, "app")
    hub.publish(ALERT, {"rule": "cpu", "state": "firing"})
    for i in range(16):
        hub.publish(METRICS, {"n": i})
    events, _ = await read_all(hub, cursor, Selector(types=frozenset({STATUS, ALERT})))
    assert [e.type for e in events] == ["gap", "status", "alert"]
    assert events[0].json()["missed"] == 19  # the states s0..s18 were passed over
    assert events[1].json()["state"] == "s19" and events[2].json()["state"] == "firing"
    assert seqs(events) == sorted(set(seqs(events)))


async def test_a_reader_the_position_log_lapped_is_told_the_counts_are_not_known() -> None:
    """Its records are gone too: how many of the events were ones it wanted, and how many
    lines they held, nobody knows. A 0 would tell the page no line was lost."""
    stored: dict[int, list[str]] = {}
    hub = MemoryHub(max_events=16, positions=64)
    hub.keep_history("app", StoredLines(stored))
    publish_lines(hub, stored, 100)
    events, _ = await read_all(hub, 1)
    assert events[0].type == "gap"
    assert events[0].json()["missed"] is None and events[0].json()["lines"] is None


async def test_resolve_honours_held_ids_and_refuses_the_rest() -> None:
    hub = MemoryHub(max_events=4, positions=4)  # ids are honoured as long as records last
    ids = [hub.publish(METRICS, {"n": i}) for i in range(10)]
    assert hub.resolve(ids[-1]) == hub.resolve(ids[-2]) + 1
    events, _ = await read_all(hub, hub.resolve(ids[7]))
    assert [e.id for e in events] == ids[8:]
    for bad, why in [
        ("garbage", "invalid"),
        ("", "invalid"),
        (f"{hub.run_id}-x", "invalid"),
        (ids[2], "too old"),
        (f"{hub.run_id}-999", "not issued"),
        (f"{int(hub.run_id) - 5}-3", "another run"),
    ]:
        with pytest.raises(UnknownEventId, match=why):
            hub.resolve(bad)


async def test_selector_filters_by_type_and_by_log_source() -> None:
    hub = MemoryHub()
    hub.publish(METRICS, {"n": 1})
    hub.publish(LOG, {"n": 2}, source="app")
    hub.publish(LOG, {"n": 3}, source="db")
    hub.publish(STATUS, {"source": "db", "n": 4}, source="db")
    hub.publish(STATUS, {"source": "metrics", "n": 5})
    only_app = Selector(STREAM_TYPES, frozenset({"app"}))
    assert [e.json()["n"] for e in (await read_all(hub, 1, only_app))[0]] == [1, 2, 5]
    only_logs = Selector(frozenset({LOG}))
    assert [e.json()["n"] for e in (await read_all(hub, 1, only_logs))[0]] == [2, 3]


def test_history_keeps_last_n_per_type_and_source_and_every_latest_status() -> None:
    hub = MemoryHub(max_events=64, history_events=3)
    hub.publish(STATUS, {"source": "app", "state": "running"}, source="app")
    for i in range(100):
        hub.publish(METRICS, {"n": i})
        hub.publish(LOG, {"n": i}, source="app" if i % 2 else "db")
    events = parse(hub.snapshot(ALL, {"host": "h"}, None))
    assert events[0].type == "hello" and events[0].json() == {"host": "h"}
    kinds = [(e.type, e.json().get("n")) for e in events[1:]]
    # the status left the ring long ago, yet a new client still learns it
    assert kinds[0] == (STATUS, None)
    assert [n for t, n in kinds if t == METRICS] == [97, 98, 99]
    assert sorted(n for t, n in kinds if t == LOG) == [94, 95, 96, 97, 98, 99]
    ids = [parse_id(e.id) for e in events]
    assert [p[1] for p in ids if p] == sorted(p[1] for p in ids if p)


def test_reset_snapshot_says_why() -> None:
    hub = MemoryHub()
    events = parse(hub.snapshot(ALL, {"host": "h"}, "invalid id"))
    assert events[0].type == "reset"
    assert events[0].json() == {"host": "h", "reason": "invalid id"}


async def test_subscription_replays_exactly_what_followed_the_last_id() -> None:
    hub = MemoryHub()
    ids = [hub.publish(LOG, {"n": i}, source="app") for i in range(10)]
    async with hub.subscribe(ALL, last_event_id=ids[4]) as chunks:
        first = parse(await anext(chunks))
        assert [e.id for e in first] == ids[5:]
        later = asyncio.ensure_future(anext(chunks))
        await wait_until(lambda: hub.stats().caught_up == 1)
        assert not later.done()  # nothing new: it waits
        new_id = hub.publish(LOG, {"n": 10}, source="app")
        assert [e.id for e in parse(await asyncio.wait_for(later, 2))] == [new_id]


async def test_events_published_while_the_snapshot_is_written_are_not_skipped() -> None:
    hub = MemoryHub()
    async with hub.subscribe(ALL) as chunks:
        snapshot = parse(await anext(chunks))
        assert snapshot[0].type == "hello"
        new_id = hub.publish(METRICS, {"n": 1})
        assert [e.id for e in parse(await asyncio.wait_for(anext(chunks), 2))] == [new_id]


async def test_close_ends_every_subscription() -> None:
    hub = MemoryHub()

    async def drain() -> int:
        count = 0
        async with hub.subscribe(ALL) as chunks:
            async for _ in chunks:
                count += 1
        return count

    readers = [asyncio.create_task(drain()) for _ in range(50)]
    await wait_until(lambda: hub.stats().subscribers == 50)
    hub.close()
    counts = await asyncio.wait_for(asyncio.gather(*readers), 2)
    assert counts == [1] * 50  # each got its hello, then its stream ended
    assert hub.stats().subscribers == 0


async def test_a_consumer_gets_every_payload_of_its_types_in_order() -> None:
    hub = MemoryHub()
    async with hub.consume(frozenset({METRICS, LOG})) as events:
        hub.publish(METRICS, {"n": 1})
        hub.publish(STATUS, {"source": "x"})
        hub.publish(LOG, {"n": 2}, source="app")
        got = [await asyncio.wait_for(anext(events), 2) for _ in range(2)]
        hub.close()
        rest = [event async for event in events]  # the hub's close ends the consumer
    assert [(e.type, e.payload, e.source) for e in got] == [
        (METRICS, {"n": 1}, None),
        (LOG, {"n": 2}, "app"),
    ]
    assert rest == []


def test_a_consumer_that_falls_too_far_behind_loses_the_oldest_counted() -> None:
    hub = MemoryHub()
    feed = hub.feed(frozenset({LOG}), max_pending=3)
    for i in range(5):
        hub.publish(LOG, {"n": i}, source="app")
    assert [e.payload["n"] for e in feed.drain()] == [2, 3, 4]
    assert hub.stats().consumer_drops == 2


def test_latest_alert_of_each_rule_is_part_of_a_new_clients_state() -> None:
    hub = MemoryHub(max_events=16)
    hub.publish("alert", {"rule": "cpu", "state": "firing"})
    hub.publish("alert", {"rule": "disk", "state": "firing"})
    hub.publish("alert", {"rule": "disk", "state": "resolved"})
    for i in range(100):
        hub.publish(METRICS, {"n": i})
    assert {r: a["state"] for r, a in hub.latest(ALERT).items()} == {
        "cpu": "firing",
        "disk": "resolved",
    }
    alerts = [e.json() for e in parse(hub.snapshot(ALL, {}, None)) if e.type == "alert"]
    assert alerts == [{"rule": "cpu", "state": "firing"}, {"rule": "disk", "state": "resolved"}]


def lines_hub(stored: dict[int, list[str]]) -> MemoryHub:
    """A hub of 16 events whose source "app" can make any event again from `stored` (keyed
    by the origin's start), as a file source does from its file."""
    hub = MemoryHub(max_events=16)
    hub.keep_history("app", StoredLines(stored))
    return hub


class StoredLines:
    """A source's history kept in a dict, by the origin's start; nothing before the records."""

    def __init__(self, stored: dict[int, list[str]]) -> None:
        self.stored = stored

    async def reread(self, origin: Origin) -> dict[str, Any] | None:
        lines = self.stored.get(origin.start)
        return None if lines is None else {"source": "app", "lines": lines}

    async def older(self, before: Origin | str | None, limit: int) -> Older:
        return Older([], None)


def publish_lines(hub: MemoryHub, stored: dict[int, list[str]], n: int) -> list[str]:
    ids = []
    for i in range(n):
        stored[i] = [f"line {i}"]
        origin = Origin((1, 2), i, i + 1, 0, 1)
        ids.append(hub.publish(LOG, {"source": "app", "lines": stored[i]}, "app", origin))
    return ids


async def test_a_reader_the_ring_lapped_gets_the_log_events_again_from_their_origin() -> None:
    stored: dict[int, list[str]] = {}
    hub = lines_hub(stored)
    ids = publish_lines(hub, stored, 100)  # far past the ring's 16
    hub.publish(METRICS, {"n": 0})
    events, cursor = await read_all(hub, 1)
    while cursor < hub.resolve(ids[-1]):
        more, cursor = await read_all(hub, cursor)
        events += more
    logs = [e for e in events if e.type == "log"]
    assert [e.id for e in logs] == ids  # the same ids, all of them, in order: no gap
    assert [e.json()["lines"] for e in logs] == [[f"line {i}"] for i in range(100)]
    assert hub.stats().gaps == 0 and hub.stats().replayed == 100 - 16 + 1


async def test_lines_gone_from_their_file_are_a_gap_that_counts_them() -> None:
    stored: dict[int, list[str]] = {}
    hub = lines_hub(stored)
    ids = publish_lines(hub, stored, 60)
    for i in range(10, 20):
        del stored[i]  # say, rotated away and compressed
    events, _ = await read_all(hub, 1, Selector(types=frozenset({"log"})))
    gaps = [e for e in events if e.type == "gap"]
    assert len(gaps) == 1 and gaps[0].json()["lines"] == 10 and gaps[0].json()["missed"] == 10
    assert gaps[0].id == ids[19]  # resuming from the gap's id goes on after the lost lines
    logs = [e.json()["lines"][0] for e in events if e.type == "log"]
    assert logs[:11] == [f"line {i}" for i in [*range(10), 20]]


def test_publishing_never_waits_for_a_reader_that_stopped() -> None:
    hub = MemoryHub(max_events=16)
    stored: dict[int, list[str]] = {}
    hub.keep_history("app", StoredLines({}))
    publish_lines(hub, stored, 10_000)  # no reader can hold publish() back: it has no await
    assert hub.stats().published == 10_000


async def test_a_caught_up_reader_is_written_to_by_publish_itself() -> None:
    hub = MemoryHub()
    written: list[bytes] = []

    def sink(frame: Frame) -> bool:
        written.append(frame.data)
        return True

    async with hub.subscribe(ALL, sink=sink) as chunks:
        await anext(chunks)  # the hello
        parked = asyncio.ensure_future(anext(chunks))
        await wait_until(lambda: hub.stats().caught_up == 1)
        ids = [hub.publish(LOG, {"n": i}, source="app") for i in range(3)]
        assert [e.id for data in written for e in parse_written(data)] == ids  # before any task ran
        assert hub.stats().caught_up == 1  # still parked: nothing for the reader's own task
        assert not parked.done()
        parked.cancel()
        with pytest.raises(asyncio.CancelledError):
            await parked


async def test_a_refusing_sink_hands_the_frames_back_to_the_readers_task_in_order() -> None:
    hub = MemoryHub()
    written: list[bytes] = []
    is_open = True

    def sink(frame: Frame) -> bool:
        if is_open:
            written.append(frame.data)
        return is_open

    async with hub.subscribe(ALL, sink=sink) as chunks:
        await anext(chunks)
        task_read = asyncio.ensure_future(anext(chunks))
        await wait_until(lambda: hub.stats().caught_up == 1)
        first = hub.publish(LOG, {"n": 0}, source="app")
        is_open = False  # the socket backs up: the task must take over, losing nothing
        rest = [hub.publish(LOG, {"n": i}, source="app") for i in range(1, 4)]
        got = [e.id for e in parse(await asyncio.wait_for(task_read, 2))]
        assert [e.id for data in written for e in parse_written(data)] == [first]
        assert got == rest


async def test_close_wakes_parked_readers() -> None:
    hub = MemoryHub()
    async with hub.subscribe(ALL, sink=lambda frame: True) as chunks:
        await anext(chunks)
        parked = asyncio.ensure_future(anext(chunks))
        await wait_until(lambda: hub.stats().caught_up == 1)
        hub.close()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(parked, 2)


async def test_a_lapped_reader_finds_its_source_past_thousands_of_others() -> None:
    """Replay looks through records a few thousand at a time: a reader of one source behind
    many events of another must go on looking, not park and skip what it wants."""
    stored: dict[int, list[str]] = {}
    hub = lines_hub(stored)
    async with hub.subscribe(Selector(sources=frozenset({"app"}))) as chunks:
        await anext(chunks)  # the hello; the reader then reads nothing for a while
        for i in range(5000):
            hub.publish(LOG, {"source": "web", "lines": [f"web {i}"]}, "web")
        publish_lines(hub, stored, 1)  # "line 0" of app, far behind the ring's 16
        for i in range(200):
            hub.publish(LOG, {"source": "web", "lines": [f"more web {i}"]}, "web")
        got = parse(await asyncio.wait_for(anext(chunks), 2))
        assert [e.json()["lines"] for e in got if e.type == "log"] == [["line 0"]]


def test_where_the_last_run_left_a_source_is_told_once(tmp_path: Path) -> None:
    """A source its supervisor restarts goes on from its own reading, not the previous
    process's: the previous run's positions are handed out once."""
    state = StateDir.open(str(tmp_path))
    assert state is not None
    first = MemoryHub(state=state)
    first.publish(LOG, {"lines": ["a"]}, "app", Origin((1, 2), 0, 2, 0, 1))
    first.close()
    again = MemoryHub(state=state)
    assert again.run_id == first.run_id  # the same run goes on
    resumed = again.keep_history("app", StoredLines({}))
    assert resumed is not None and resumed.files[(1, 2)].end == 2
    assert again.keep_history("app", StoredLines({})) is None
    again.close()
    state.close()


async def test_a_client_resuming_across_a_restart_gets_the_states_it_missed_before_it(
    tmp_path: Path,
) -> None:
    """A client away while an alert resolved, then the server restarted: it resumes with the
    same run's ids, and its gap sends again the resolve only the previous process knew; not
    what this run says again or what is gone (a firing alert of a rule the new config
    dropped). A new client is shown this run's states only."""
    state = StateDir.open(str(tmp_path))
    assert state is not None
    first = MemoryHub(max_events=16, state=state)
    first.publish(ALERT, {"rule": "cpu", "state": "firing"})
    last = first.publish(METRICS, {"n": 0})  # the client's last event
    first.publish(ALERT, {"rule": "cpu", "state": "resolved"})
    first.publish(ALERT, {"rule": "gone", "state": "firing"})  # a rule the next config drops
    first.close()
    again = MemoryHub(max_events=16, state=state)
    again.publish(STATUS, {"kind": "log", "source": "app", "state": "following"}, "app")
    events, _ = await read_all(again, again.resolve(last))
    assert [(e.type, e.json()["state"]) for e in events if e.type != "gap"] == [
        ("alert", "resolved"),
        ("status", "following"),
    ]
    assert seqs(events) == sorted(set(seqs(events)))
    assert again.latest(ALERT) == {}  # the alert engine says again what still fires
    again.close()
    state.close()


async def test_at_close_a_consumer_still_gets_what_another_makes_of_its_last_events() -> None:
    """At shutdown the notifier must get the alerts the rules make of the last metrics,
    whichever of the two runs first."""
    hub = MemoryHub()
    seen: list[str] = []

    async def notifier() -> None:
        async with hub.consume(frozenset({ALERT})) as events:
            async for event in events:
                seen.append(event.payload["rule"])

    async def rules() -> None:
        async with hub.consume(frozenset({METRICS})) as events:
            async for event in events:
                hub.publish(ALERT, {"rule": f"from {event.payload['n']}", "state": "firing"})

    tasks = [asyncio.create_task(notifier()), asyncio.create_task(rules())]
    await asyncio.sleep(0)  # both feeds open
    hub.publish(ALERT, {"rule": "first", "state": "firing"})  # the notifier runs next...
    hub.publish(METRICS, {"n": 1})  # ...then the rules, which make an alert of this
    hub.close()  # before either task has run again
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert seen == ["first", "from 1"]


async def test_scrolling_back_from_an_id_whose_record_is_gone_is_refused() -> None:
    """Not taken for "no record at all", which would answer with the newest lines again."""
    stored: dict[int, list[str]] = {}
    hub = MemoryHub(max_events=16, positions=32)
    hub.keep_history("app", StoredLines(stored))
    ids = publish_lines(hub, stored, 100)  # the first 68 records are overwritten
    with pytest.raises(BadEventId, match="too old"):
        await hub.log_before("app", ids[10], 10)
    page = await hub.log_before("app", ids[90], 3)
    assert [e.lines for e in page.events] == [["line 87"], ["line 88"], ["line 89"]]
