"""The SSE parser against the event-stream rules, in any chunking."""

from __future__ import annotations

from monitor.hub.sse import SSEEvent, SSEParser

STREAM = (
    b"retry: 1500\n\n"
    b": ping\n\n"
    b'event: log\nid: 7-1\ndata: {"a":1}\n\n'
    b"data: one\r\ndata:two\r\n\r\n"
    b"event: status\rid: 7-2\rdata: x\r\r"
    b"id: bad\0id\ndata: \xff\n\n"
)
EXPECTED = [
    SSEEvent("log", "7-1", '{"a":1}'),
    SSEEvent("message", "7-1", "one\ntwo"),
    SSEEvent("status", "7-2", "x"),
    SSEEvent("message", "7-2", "\ufffd"),
]


def test_parses_fields_comments_and_all_line_endings() -> None:
    parser = SSEParser()
    assert parser.feed(STREAM) == EXPECTED
    assert parser.retry_ms == 1500
    assert parser.comments == 1


def test_any_chunking_gives_the_same_events() -> None:
    for size in (1, 2, 3, 7, 64):
        parser = SSEParser()
        events = []
        for i in range(0, len(STREAM), size):
            events += parser.feed(STREAM[i : i + size])
        assert events == EXPECTED, size


def test_partial_event_waits_for_its_blank_line() -> None:
    parser = SSEParser()
    assert parser.feed(b"event: log\ndata: x\n") == []
    assert parser.feed(b"\n") == [SSEEvent("log", "", "x")]
