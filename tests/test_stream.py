"""GET /events on a real in-process server, read with a real SSE client."""

from __future__ import annotations

import asyncio
import json
import socket
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestClient
from helpers import StreamReader, wait_until
from pytest_aiohttp import AiohttpClient

from monitor.config import Config
from monitor.http.app import create_app
from monitor.http.heartbeat import Heartbeat
from monitor.http.keys import HUB
from monitor.hub.events import LOG, METRICS, STATUS, parse_id
from monitor.hub.interface import Hub
from monitor.hub.sse import SSEEvent

Client = TestClient[web.Request, web.Application]
OpenStream = Callable[..., Awaitable[StreamReader]]


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, config: Config) -> Client:
    return await aiohttp_client(create_app(config, sources=[]))


@pytest.fixture
def hub(client: Client) -> Hub:
    return client.app[HUB]


@pytest.fixture
async def open_stream(client: Client) -> AsyncIterator[OpenStream]:
    opened: list[StreamReader] = []

    async def open_(query: str = "", headers: dict[str, str] | None = None) -> StreamReader:
        resp = await client.get(f"/events{query}", headers=headers)
        assert resp.status == 200, await resp.text()
        reader = StreamReader(resp)
        opened.append(reader)
        return reader

    yield open_
    for reader in opened:
        reader.resp.close()


async def test_stream_headers_forbid_buffering_caching_and_compression(client: Client) -> None:
    resp = await client.get("/events", headers={"Accept-Encoding": "gzip, br"})
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    assert resp.headers["Cache-Control"] == "no-cache, no-transform"
    assert resp.headers["X-Accel-Buffering"] == "no"
    assert "Content-Encoding" not in resp.headers
    resp.close()


async def test_wire_format_is_retry_then_typed_events_with_one_line_json(
    client: Client, hub: Hub
) -> None:
    resp = await client.get("/events")
    hub.publish(LOG, {"source": "app", "lines": ["a\nb", "<b>x</b>"]}, source="app")
    raw = b""
    async with asyncio.timeout(5):
        while raw.count(b"\n\n") < 3:
            raw += await resp.content.readany()
    resp.close()
    retry, hello, log = raw.split(b"\n\n")[:3]
    assert retry == b"retry: 2000"
    assert hello.startswith(b"event: hello\nid: " + hub.run_id.encode() + b"-0\ndata: {")
    fields = log.split(b"\n")
    assert fields[0] == b"event: log" and fields[1].startswith(b"id: ") and len(fields) == 3
    assert json.loads(fields[2].removeprefix(b"data: "))["lines"] == ["a\nb", "<b>x</b>"]


async def test_first_connect_gets_hello_then_history_then_live(
    open_stream: OpenStream, hub: Hub, config: Config
) -> None:
    for i in range(20):
        hub.publish(METRICS, {"ts": i, "cpu": {"percent": 1.0}})
        hub.publish(LOG, {"source": "app", "lines": [f"line {i}"]}, source="app")
    hub.publish(STATUS, {"source": "app", "state": "running"}, source="app")
    stream = await open_stream()
    hello = await stream.next()
    assert hello.type == "hello"
    info = hello.json()
    assert info["run_id"] == hub.run_id and info["version"]
    assert info["host"] == socket.gethostname()
    assert [s["name"] for s in info["sources"]] == ["app", "db"]
    history = await stream.take(2 * config.stream.history_events + 1)
    assert [e.json()["ts"] for e in history if e.type == METRICS] == list(range(15, 20))
    assert len([e for e in history if e.type == LOG]) == config.stream.history_events
    assert history[-1].type == STATUS
    live_id = hub.publish(METRICS, {"ts": 99})
    assert (await stream.next()).id == live_id


async def test_ids_strictly_increase_across_a_burst(open_stream: OpenStream, hub: Hub) -> None:
    stream = await open_stream("?types=log")
    await stream.until("hello")
    for i in range(500):
        hub.publish(LOG, {"n": i}, source="app" if i % 3 else "db")
    events = await stream.take(500)
    seqs = [parse_id(e.id)[1] for e in events]  # type: ignore[index]
    assert all(a < b for a, b in zip(seqs, seqs[1:], strict=False))
    assert [e.json()["n"] for e in events] == list(range(500))


async def test_types_and_sources_select_what_is_sent(open_stream: OpenStream, hub: Hub) -> None:
    stream = await open_stream("?types=log,status&sources=db")
    await stream.until("hello")
    hub.publish(METRICS, {"n": 1})
    hub.publish(LOG, {"n": 2}, source="app")
    hub.publish(LOG, {"n": 3}, source="db")
    hub.publish(STATUS, {"source": "app", "n": 4}, source="app")
    hub.publish(STATUS, {"source": "db", "n": 5}, source="db")
    assert [(e.type, e.json()["n"]) for e in await stream.take(2)] == [(LOG, 3), (STATUS, 5)]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("?types=log,bogus", "unknown event type 'bogus'"),
        ("?types=", "types: empty"),
        ("?sources=app,web", "unknown source 'web'"),
        ("?types=log&types=metrics", "types: given more than once"),
        ("?type=log", "unknown query parameter 'type'"),
        ("?batch_ms=fast", "batch_ms: expected a whole number from 0 to 1000"),
        ("?batch_ms=1001", "batch_ms: expected a whole number from 0 to 1000"),
        ("?batch_ms=16&batch_ms=16", "batch_ms: given more than once"),
    ],
)
async def test_bad_query_is_400_with_json_before_any_stream(
    client: Client, query: str, message: str
) -> None:
    resp = await client.get(f"/events{query}")
    assert resp.status == 400
    assert resp.content_type == "application/json"
    assert message in (await resp.json())["error"]


async def test_idle_stream_gets_comment_heartbeats(open_stream: OpenStream) -> None:
    stream = await open_stream()
    await stream.until("hello")
    read_more = asyncio.ensure_future(stream.next(timeout_s=10))
    await wait_until(lambda: stream.parser.comments >= 2, timeout_s=5)  # heartbeat_s is 0.2
    read_more.cancel()


async def test_one_idle_stream_costs_one_heartbeat_wake_up_an_interval() -> None:
    """The wheel skips its empty slots: an idle dashboard's stream is pinged once an
    interval, and the timer fires for it once an interval, not once per slot."""
    loop = asyncio.get_running_loop()
    heartbeat = Heartbeat(interval_s=0.32, send_timeout_s=60)
    pings: list[float] = []
    ticks = 0
    tick = heartbeat._tick

    def counted_tick() -> None:
        nonlocal ticks
        ticks += 1
        tick()

    def write(data: bytes) -> bool:
        pings.append(loop.time())
        return True

    heartbeat._tick = counted_tick  # type: ignore[method-assign]
    beat = heartbeat.add(write, None)
    await wait_until(lambda: len(pings) >= 4)
    heartbeat.remove(beat)
    gaps = [b - a for a, b in zip(pings, pings[1:], strict=False)]
    assert all(0.2 < gap < 0.6 for gap in gaps), gaps  # one interval apart, as before
    assert ticks <= len(pings) + 1, f"{ticks} ticks for {len(pings)} pings"


@pytest.mark.parametrize("how", ["header", "query"])
async def test_resume_replays_exactly_the_missed_events(
    open_stream: OpenStream, hub: Hub, how: str
) -> None:
    stream = await open_stream()
    await stream.until("hello")
    hub.publish(LOG, {"n": 0}, source="app")
    last = await stream.next()
    stream.resp.close()
    missed = [hub.publish(LOG, {"n": i}, source="app" if i % 2 else "db") for i in range(1, 31)]
    if how == "header":
        resumed = await open_stream(headers={"Last-Event-ID": last.id})
    else:
        resumed = await open_stream(f"?last_event_id={last.id}")
    events = await resumed.take(30)
    assert [e.id for e in events] == missed
    assert [e.json()["n"] for e in events] == list(range(1, 31))
    live = hub.publish(LOG, {"n": 31}, source="app")
    assert (await resumed.next()).id == live  # and nothing in between


@pytest.mark.parametrize("bad_id", ["garbage", "123-not-ours", "previous-run"])
async def test_unusable_last_event_id_gets_reset_first(
    open_stream: OpenStream, hub: Hub, bad_id: str
) -> None:
    if bad_id == "previous-run":
        bad_id = f"{int(hub.run_id) - 60_000}-5"
    hub.publish(METRICS, {"n": 1})
    stream = await open_stream(headers={"Last-Event-ID": bad_id})
    reset = await stream.next()
    assert reset.type == "reset"
    assert reset.json()["run_id"] == hub.run_id and reset.json()["reason"]
    assert (await stream.next()).json() == {"n": 1}  # then the current state


async def test_slow_consumer_is_bounded_gets_gap_and_delays_no_one(
    client: Client, hub: Hub, open_stream: OpenStream
) -> None:
    # A raw client with a tiny receive buffer that sends its request and never reads.
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.setblocking(False)
    await asyncio.get_running_loop().sock_connect(stalled, (client.host, client.port))
    stalled.send(b"GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n")
    await wait_until(lambda: hub.stats().subscribers == 1)
    fast = await open_stream()
    await fast.until("hello")

    received = 0

    async def consume() -> None:
        nonlocal received
        while True:
            await fast.next()
            received += 1

    consumer = asyncio.create_task(consume())
    tracemalloc.start()
    before, _ = tracemalloc.get_traced_memory()
    line = "x" * 1000
    total = 20_000  # ~20 MB through a 1 MiB ring
    for i in range(total):
        hub.publish(LOG, {"n": i, "lines": [line]}, source="app")
        if i % 50 == 0:
            await asyncio.sleep(0)
    await wait_until(lambda: received == total, timeout_s=10)
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    consumer.cancel()
    print(f"published {total * 1000 / 1e6:.0f} MB; server memory grew {grown / 1e6:.2f} MB")
    assert hub.stats().held_bytes <= 1024 * 1024
    assert grown < 5 * 1024 * 1024

    # When the stalled client finally reads, it is told what it missed.
    seen = b""
    async with asyncio.timeout(5):
        while b"event: gap" not in seen:
            seen += await asyncio.get_running_loop().sock_recv(stalled, 65536)
            hub.publish(METRICS, {"n": "poke"})
    stalled.close()
    gap = seen[seen.index(b"event: gap") :].split(b"\n\n")[0]
    assert json.loads(gap.split(b"data: ")[1])["missed"] > 0


async def test_shutdown_ends_open_streams(client: Client, open_stream: OpenStream) -> None:
    streams = [await open_stream() for _ in range(20)]
    for stream in streams:
        await stream.until("hello")
    await client.app.shutdown()
    for stream in streams:
        with pytest.raises(EOFError):
            await stream.next(timeout_s=2)


async def test_health_and_sources_are_json(client: Client, hub: Hub) -> None:
    hub.publish(STATUS, {"source": "app", "state": "waiting", "detail": "no file"}, source="app")
    health = await (await client.get("/healthz")).json()
    assert health["status"] == "ok" and health["run_id"] == hub.run_id
    sources = await (await client.get("/api/sources")).json()
    assert [(s["name"], s["status"]["state"]) for s in sources] == [
        ("app", "waiting"),
        ("db", "starting"),
    ]


async def test_state_is_hello_then_recent_history_as_json(
    client: Client, hub: Hub, open_stream: OpenStream
) -> None:
    hub.publish(STATUS, {"source": "app", "state": "following"}, source="app")
    for i in range(3):
        hub.publish(METRICS, {"ts": i, "cpu": {"percent": 1.0}})
        hub.publish(LOG, {"source": "app", "lines": [f"line {i} <ü>"]}, source="app")
    resp = await client.get("/api/state")
    assert resp.status == 200 and resp.content_type == "application/json"
    events = (await resp.json())["events"]
    assert events[0]["type"] == "hello"
    assert events[0]["data"]["run_id"] == hub.run_id
    assert [s["name"] for s in events[0]["data"]["sources"]] == ["app", "db"]
    seqs = [parse_id(e["id"])[1] for e in events]  # type: ignore[index]
    assert all(a < b for a, b in zip(seqs, seqs[1:], strict=False))
    assert [e["data"]["lines"] for e in events if e["type"] == LOG] == [
        [f"line {i} <ü>"] for i in range(3)
    ]
    assert [e["data"]["ts"] for e in events if e["type"] == METRICS] == [0, 1, 2]
    # The same events a new stream starts with, so a tab can mix the two by id.
    stream = await open_stream()
    assert [(e.type, e.id, e.json()) for e in await stream.take(len(events))] == [
        (e["type"], e["id"], e["data"]) for e in events
    ]


async def test_unknown_path_is_json_404(client: Client) -> None:
    resp = await client.get("/nope")
    assert resp.status == 404 and (await resp.json()) == {"error": "Not Found"}


async def test_stream_readable_by_a_plain_client_session(client: Client, hub: Hub) -> None:
    url = f"http://{client.host}:{client.port}/events?types=log&sources=app"
    async with ClientSession() as session, session.get(url) as resp:
        stream = StreamReader(resp)
        await stream.until("hello")
        hub.publish(LOG, {"lines": ["hi"]}, source="app")
        assert (await stream.next()).json() == {"lines": ["hi"]}


async def test_client_that_disconnects_from_an_idle_stream_is_released(
    client: Client, hub: Hub, open_stream: OpenStream
) -> None:
    stream = await open_stream("?types=alert")
    await stream.until("hello")
    assert hub.stats().subscribers == 1
    stream.resp.close()
    await wait_until(lambda: hub.stats().subscribers == 0)
    health = await (await client.get("/healthz")).json()
    assert health["clients"] == 0


async def test_a_stream_whose_reader_stopped_is_cut_at_the_send_deadline_though_idle(
    aiohttp_client: AiohttpClient, config: Config
) -> None:
    """A client that stops reading while the server has nothing more to send it: no write of
    its own waits on it, so the heartbeat must notice its socket stays backed up and cut it
    (after send_timeout_s), or it holds a slot and its buffered bytes for ever."""
    config = replace(config, stream=replace(config.stream, send_timeout_s=1.0))
    client = await aiohttp_client(create_app(config, sources=[]))
    hub = client.app[HUB]
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(stalled, (client.host, client.port))
    stalled.send(b"GET /events?types=log HTTP/1.1\r\nHost: localhost\r\n\r\n")
    await wait_until(lambda: hub.stats().subscribers == 1)
    # One event bigger than every buffer on the way, then nothing more.
    hub.publish(LOG, {"lines": ["x" * 4_000_000]}, source="app")
    await wait_until(lambda: hub.stats().subscribers == 0, timeout_s=10)
    stalled.close()
    health = await (await client.get("/healthz")).json()
    assert health["clients"] == 0


async def test_an_idle_stream_keeps_nothing_of_what_it_was_sent(client: Client, hub: Hub) -> None:
    """Ten thousand idle dashboards must not each hold their last batch (the snapshot with
    its history): once written, a batch is let go while the stream waits."""
    for i in range(5):
        for source in ("app", "db"):
            hub.publish(LOG, {"n": i, "lines": ["x" * 10_000]}, source=source)
    loop = asyncio.get_running_loop()
    tracemalloc.start()
    before, _ = tracemalloc.get_traced_memory()
    socks = []
    for _ in range(20):
        sock = socket.socket()
        sock.setblocking(False)
        await loop.sock_connect(sock, (client.host, client.port))
        sock.send(b"GET /events?types=log HTTP/1.1\r\nHost: localhost\r\n\r\n")
        seen = b""
        async with asyncio.timeout(5):
            while seen.count(b"event: log") < 10:  # the whole snapshot, ~100 KB
                seen += await loop.sock_recv(sock, 1 << 20)
        socks.append(sock)
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    for sock in socks:
        sock.close()
    print(f"{grown / len(socks) / 1024:.1f} KB per idle stream")
    assert grown / len(socks) < 40 * 1024


def unbatched(events: list[SSEEvent]) -> list[tuple[str, str, object]]:
    """(type, id, payload) of each event, a `batch` event's lines taken one by one (what the
    page's stream.js does with them)."""
    out: list[tuple[str, str, object]] = []
    for e in events:
        if e.type != "batch":
            out.append((e.type, e.id, e.json()))
            continue
        lines = [line.split(" ", 2) for line in e.data.split("\n")]
        assert e.id == lines[-1][1], (
            "a batch's id is its last event's: a reconnect resumes after it"
        )
        out.extend((kind, event_id, json.loads(body)) for kind, event_id, body in lines)
    return out


async def test_a_page_asking_batch_ms_gets_a_burst_in_few_writes_and_every_event(
    open_stream: OpenStream, hub: Hub
) -> None:
    """?batch_ms: what comes within the window of the last write waits for the window and
    goes as one `batch` event; the events, their ids and order are a plain stream's."""
    plain = await open_stream("?types=log,metrics")
    paged = await open_stream("?types=log,metrics&batch_ms=300")
    await plain.until("hello")
    await paged.until("hello")
    first = hub.publish(LOG, {"n": 0}, source="app")
    lone = await paged.next()
    assert (lone.type, lone.id) == ("log", first)  # a lone event goes as itself
    for i in range(1, 200):
        hub.publish(METRICS if i % 50 == 0 else LOG, {"n": i}, source="app")
    want = unbatched(await plain.take(200))
    got = [lone]
    while len(unbatched(got)) < 200:
        got.append(await paged.next())
    assert unbatched(got) == want
    assert len(got) <= 3, f"{len(got)} writes for a burst of 200 events"
    assert any(e.type == "batch" for e in got[1:])
    # Resuming from a batch's id goes on after its last event.
    paged.resp.close()
    after = hub.publish(LOG, {"n": 200}, source="app")
    resumed = await open_stream(f"?batch_ms=300&last_event_id={got[-1].id}")
    assert unbatched([await resumed.next()]) == [("log", after, {"n": 200})]


async def test_a_batching_stream_gets_every_event_in_order_whichever_way_each_is_written(
    open_stream: OpenStream, hub: Hub
) -> None:
    """Events in bursts and alone, so some go straight from publish() and some wait for the
    client's task: none lost, none repeated, none out of order."""
    stream = await open_stream("?types=log&batch_ms=5")
    await stream.until("hello")
    sent = []
    for i in range(900):
        sent.append(hub.publish(LOG, {"n": i, "lines": ["y" * 1000]}, source="app"))
        if i % 50 == 0:
            await asyncio.sleep(0.02)  # a quiet spell, 4 windows long: the next goes at once
    got: list[SSEEvent] = []
    while len(unbatched(got)) < len(sent):
        got.append(await stream.next())
    assert [event_id for _, event_id, _ in unbatched(got)] == sent
    assert {e.type for e in got} == {"log", "batch"}
