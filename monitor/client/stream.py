"""An open `text/event-stream` response, read as events (the SSE parser is the hub's)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp

from monitor.hub.sse import SSEEvent, SSEParser


async def iter_events(
    response: aiohttp.ClientResponse, parser: SSEParser | None = None
) -> AsyncIterator[SSEEvent]:
    """The events of an open `text/event-stream` response, as they arrive."""
    parser = parser or SSEParser()
    async for chunk in response.content.iter_any():
        for event in parser.feed(chunk):
            yield event


async def iter_chunk_events(
    response: aiohttp.ClientResponse, parser: SSEParser | None = None
) -> AsyncIterator[tuple[list[SSEEvent], bool]]:
    """The events of each read, and whether the read ended an HTTP chunk (one server write)."""
    parser = parser or SSEParser()
    async for chunk, is_chunk_end in response.content.iter_chunks():
        yield parser.feed(chunk), is_chunk_end
