"""The SSE parser against the event-stream rules, in any chunking; linear time, bounded lines."""

from __future__ import annotations

import json
import time
import tracemalloc

import pytest

from monitor.hub.sse import SSEEvent, SSEParser, encode_frame

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


def test_line_ends_split_across_chunks() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\ndata: b\r\n") == []
    assert parser.feed(b"\r") == [SSEEvent("message", "", "a\nb")]  # at once, not on the next
    assert parser.feed(b"\n") == []  # the \n of that \r\n: no second blank line
    assert parser.feed(b"data: c\r") == []
    assert parser.feed(b"\r") == [SSEEvent("message", "", "c")]
    assert parser.feed(b"data: d\n\n") == [SSEEvent("message", "", "d")]
    assert parser.feed(b"data: e\r\r") == [SSEEvent("message", "", "e")]


def test_a_long_line_feeds_in_linear_time() -> None:
    step = 64 * 1024
    line = b"data: " + b"x" * 40_000_000
    parser = SSEParser()
    started = time.process_time()
    for i in range(0, len(line), step):
        assert parser.feed(line[i : i + step]) == []
        assert time.process_time() - started < 2.0, f"{i} bytes fed"  # 0.2 s here; 37 s before
    [event] = parser.feed(b"\n\n")
    assert len(event.data) == 40_000_000


def test_an_over_long_line_is_dropped_and_parsing_resumes() -> None:
    limit = 1024 * 1024
    huge = b"event: log\nid: 1-1\ndata: " + b"x" * (5 * limit) + b"\ndata: rest\n\n"
    after = b"event: log\nid: 1-2\ndata: next\n\n"
    parser = SSEParser(max_line_bytes=limit)
    tracemalloc.start()
    try:
        events = [e for i in range(0, len(huge), 65536) for e in parser.feed(huge[i : i + 65536])]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * limit  # never the whole line
    assert events == []
    assert parser.feed(after) == [SSEEvent("log", "1-2", "next")]
    assert parser.dropped_lines == 1
    assert parser.feed(huge + after) == [SSEEvent("log", "1-2", "next")]  # in one chunk too
    assert parser.dropped_lines == 2


PAYLOADS = [
    {"source": "app", "lines": ["plain", "é ü 日本", "tab\there", "esc \x1b[31m red", 'q"b\\s']},
    {"lines": ["line\u2028sep", "nul \x00", "\x7f del"]},
    {"lone surrogate": "\ud800 from a journal's JSON"},  # orjson refuses: the fallback's way
    {"big": 2**70, "small": -1, "f": 0.1, "e": 1e16},  # over 64 bits: the fallback's way
    {1: "an int key"},
]


def test_a_frame_is_one_line_of_json_that_reads_back_as_its_payload() -> None:
    """Whatever a payload holds (control bytes, a line separator, a lone surrogate, an
    integer over 64 bits), its frame's data is one line of valid JSON giving it back, and
    the bytes are the standard library's (orjson writes the same, 30 times faster)."""
    for i, payload in enumerate(PAYLOADS):
        frame = encode_frame("log", i + 1, "7", payload)
        (event,) = SSEParser().feed(frame.data)
        assert event.type == "log" and event.id == f"7-{i + 1}"
        want = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        assert frame.data.endswith(b"\n\n") and frame.data.count(b"\n") == 4
        assert frame.json.decode() == event.data
        assert frame.json == want.encode("utf-8", "backslashreplace")
        assert json.loads(event.data) == json.loads(want)


def test_a_figure_that_is_not_a_number_is_null_not_invalid_json() -> None:
    """json.dumps writes NaN, which no browser's JSON.parse reads; a frame says null."""
    frame = encode_frame("metrics", 1, "7", {"cpu": float("nan"), "ok": 1.5})
    assert json.loads(frame.json, parse_constant=lambda c: pytest.fail(c)) == {
        "cpu": None,
        "ok": 1.5,
    }
