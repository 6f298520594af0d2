"""GET /events: the typed SSE stream, resumable by Last-Event-ID."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import hdrs, web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.web_request import BaseRequest
from aiohttp_sse import EventSourceResponse

from monitor.http.batching import MAX_BATCH_MS, Batcher, batch_frames
from monitor.http.errors import count_param, json_error, reject_unknown_params
from monitor.http.hosts import HostTarget, host_target
from monitor.http.keys import CONFIG, HEARTBEAT, LIMITER
from monitor.http.limits import BUSY_RETRY_S
from monitor.hub.events import STREAM_TYPES, Frame
from monitor.hub.interface import Selector, Sink

TCP_USER_TIMEOUT = getattr(socket, "TCP_USER_TIMEOUT", 18)  # Linux
EVENTS_PARAMS = ("types", "sources", "last_event_id", "host", "batch_ms")


def _names(request: web.Request, key: str, known: list[str]) -> frozenset[str] | None:
    raw = request.query.getall(key, [])
    if not raw:
        return None
    if len(raw) > 1:
        raise json_error(400, f"{key}: given more than once; separate values with commas")
    names = [n.strip() for n in raw[0].split(",") if n.strip()]
    if not names:
        raise json_error(400, f"{key}: empty; give one or more of {', '.join(known)}", known=known)
    for name in names:
        if name not in known:
            what = "event type" if key == "types" else "source"
            raise json_error(400, f"unknown {what} {name!r}", known=known)
    return frozenset(names)


def parse_events_query(request: web.Request, target: HostTarget) -> tuple[Selector, str | None]:
    """The client's selection and resume point; a 400 with a JSON body if it makes no sense."""
    reject_unknown_params(request, EVENTS_PARAMS)
    types = _names(request, "types", sorted(STREAM_TYPES))
    sources = _names(request, "sources", target.log_names)
    last_id = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
    return Selector(types or STREAM_TYPES, sources), last_id


class StreamSlot:
    """A slot under the stream caps for the request's address, for as long as it streams; a
    503 with Retry-After (before anything is sent) if there is none. Every streaming route
    takes one. A class, not a generator: every open stream holds it (~100 bytes, not ~600)."""

    __slots__ = ("_limiter", "_address")

    def __init__(self, request: web.Request) -> None:
        self._limiter, self._address = request.app[LIMITER], request.remote or ""

    def __enter__(self) -> None:
        refused = self._limiter.acquire(self._address)
        if refused is not None:
            raise json_error(503, refused, headers={"Retry-After": str(BUSY_RETRY_S)})

    def __exit__(self, *exc_info: object) -> None:
        self._limiter.release(self._address)


async def events(request: web.Request) -> web.StreamResponse:
    """GET /events: the typed SSE stream, resumable by Last-Event-ID."""
    target = host_target(request)  # 400s happen before the stream starts
    selector, last_id = parse_events_query(request, target)
    batch_ms = count_param(request, "batch_ms", 0, MAX_BATCH_MS)
    with StreamSlot(request):
        return await stream_events(request, target, selector, last_id, batch_s=batch_ms / 1000)


class SseResponse(EventSourceResponse):
    """aiohttp-sse's response (its headers) without its ping task per stream: the app's one
    Heartbeat timer pings every stream (heartbeat.py)."""

    def __init__(self, send_timeout_s: float) -> None:
        super().__init__()
        self.send_timeout_s = send_timeout_s

    async def prepare(self, request: BaseRequest) -> AbstractStreamWriter | None:
        if not self.prepared:
            # What aiohttp-sse 3 sets too: the kernel aborts the connection once data sent
            # goes unacknowledged for send_timeout (a vanished peer, found at the next ping).
            sock = request.transport.get_extra_info("socket") if request.transport else None
            if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
                ms = int(self.send_timeout_s * 1000)
                sock.setsockopt(socket.IPPROTO_TCP, TCP_USER_TIMEOUT, ms)
        return await web.StreamResponse.prepare(self, request)


async def stream_events(
    request: web.Request,
    target: HostTarget,
    selector: Selector,
    last_id: str | None,
    hello_now: Callable[[], dict[str, Any]] | None = None,
    batch_s: float = 0.0,
) -> web.StreamResponse:
    """The SSE stream of `target`'s events. `hello_now` makes the hello as the subscription
    starts, for a hello that is a state (the fleet's): one taken earlier would miss what
    changed while the response was prepared. With `batch_s`, events that come faster are
    written a window at a time (batching.py)."""
    config = request.app[CONFIG]
    resp = SseResponse(config.stream.send_timeout_s)
    # Proxies must neither cache nor transform (compress, buffer) the stream.
    resp.headers["Cache-Control"] = "no-cache, no-transform"
    await resp.prepare(request)
    if await write_chunk(request, resp, f"retry: {config.stream.retry_ms}\n\n".encode()):
        write = socket_writer(request, resp)
        heartbeat = request.app[HEARTBEAT]
        beat = heartbeat.add(write, request.transport)
        try:
            sink, encode, batcher = direct_writer(write), join_frames, None
            if batch_s > 0:
                batcher = Batcher(batch_s)
                sink, encode = batcher.sink(sink), batch_frames
            # The headers are sent (and read above): kept, they cost each stream ~2.6 KB.
            resp.headers.clear()
            # No await between the hello and the subscription: the hub takes its cursor then.
            hello = hello_now() if hello_now is not None else target.hello
            async with target.hub.subscribe(
                selector, last_event_id=last_id, hello=hello, sink=sink
            ) as batches:
                await write_batches(request, resp, batches, encode, batcher)
        finally:
            heartbeat.remove(beat)
    return resp


def join_frames(frames: list[Frame]) -> bytes:
    """What /events writes of a batch: its frames, as one chunk."""
    return b"".join([f.data for f in frames])


async def write_batches(
    request: web.Request,
    resp: web.StreamResponse,
    batches: AsyncIterator[list[Frame]],
    encode: Callable[[list[Frame]], bytes],
    batcher: Batcher | None = None,
) -> None:
    """Write each batch as one chunk (none if it encodes to nothing) until the client goes or
    the hub closes, resting out the batcher's window after each. Nothing of a batch stays
    referenced while the hub parks the client: ten thousand idle streams each holding their
    last batch (a snapshot is ~20 KB) was 200 MB."""
    async for frames in batches:
        data = encode(frames)
        del frames
        if data and not await write_chunk(request, resp, data):
            return
        del data
        if batcher is not None:
            await batcher.rest()


class _ChunkFraming:
    """HTTP/1.1 chunked framing of the frame being fanned out, made once for all clients:
    publish() hands every sink the same bytes object in turn."""

    def __init__(self) -> None:
        self._data = b""
        self._framed = b""

    def __call__(self, data: bytes) -> bytes:
        if data is not self._data:
            self._data, self._framed = data, b"%x\r\n%b\r\n" % (len(data), data)
        return self._framed


_chunked = _ChunkFraming()


def frame_bytes(frame: Frame) -> bytes:
    """What /events writes of a frame: the frame itself."""
    return frame.data


def socket_writer(request: web.Request, resp: web.StreamResponse) -> Callable[[bytes], bool]:
    """Bytes straight to the client's socket (chunk-framed if the response is), with no task
    switch; False, and nothing written, if the socket is closing or backed up. The hub's sink
    and the heartbeat write with it. Bytes handed to many clients in turn are framed once."""
    transport, protocol = request.transport, request.protocol
    is_chunked = resp.headers.get(hdrs.TRANSFER_ENCODING) == "chunked"

    def write(data: bytes) -> bool:
        if transport is None or transport.is_closing() or protocol.writing_paused:
            return False
        if data:
            transport.write(_chunked(data) if is_chunked else data)
        return True

    return write


def direct_writer(
    write: Callable[[bytes], bool], render: Callable[[Frame], bytes | None] = frame_bytes
) -> Sink:
    """The hub's sink for a caught-up client: one socket write per frame, from publish().

    With a thousand clients, waking a task per client per event costs more than the send
    itself. A backed-up or closing socket refuses, and the client's task (write_chunk, with
    aiohttp's flow control and the send timeout) takes over from the ring; so does a frame
    `render` gives None for. `render` must return the same bytes object to every client of
    a frame (made once), so the chunk framing is made once too.
    """

    def write_now(frame: Frame) -> bool:
        data = render(frame)
        return data is not None and write(data)

    return write_now


async def write_chunk(request: web.Request, resp: web.StreamResponse, data: bytes) -> bool:
    """Write one chunk; False if the client is gone, or read nothing for send_timeout_s (a
    vanished peer must not hold a handler forever)."""
    try:
        async with asyncio.timeout(request.app[CONFIG].stream.send_timeout_s):
            await resp.write(data)
        return True
    except ConnectionResetError:
        return False
    except TimeoutError:
        # A peer that reads nothing never drains the buffer; a graceful close would block too.
        if request.transport is not None:
            request.transport.abort()
        return False
