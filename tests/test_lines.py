"""A log read's lines made the fast way (LogLines, their JSON written from the whole text) are
the lines, and the bytes a client gets, that splitting the text gives."""

from __future__ import annotations

import json
import random

import pytest

from monitor.hub.lines import LogLines
from monitor.hub.sse import compact_json
from monitor.sources.follower import decode_lines, lines_of

# What logs hold that JSON or the reader treat specially, or that the fast way relies on.
PIECES = [
    b"GET /index.html",
    b'"quoted"',
    b"back\\slash \\n not a newline",
    b"\t",
    b"\x1b[31mred\x1b[0m",
    b"\x7f",
    b"\0",
    b"\r",
    b"\xff\xfe bad utf-8",
    b"\xf0\x9f\x98",  # a truncated 4-byte sequence
    "caf\u00e9 \u2028 \U0001f600".encode(),
    b"x" * 300,
    b"\n",
    b"\n\n",
]


def blobs(n: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [b"".join(rng.choices(PIECES, k=rng.randint(0, 40))) for _ in range(n)]


@pytest.mark.parametrize("most", [16, 200, 64 * 1024])
def test_the_fast_lines_are_the_split_lines_and_encode_to_the_same_bytes(most: int) -> None:
    fast = 0
    for blob in blobs(3000, seed=most):
        want = decode_lines(blob, most)
        got = lines_of(blob, most)
        fast += isinstance(got, LogLines)
        assert list(got) == want, blob
        assert len(got) == len(want), blob
        payload = {"source": "app", "lines": got}
        assert compact_json(payload) == compact_json({"source": "app", "lines": want}), blob
    assert fast > 100  # the fast way was taken, not only the split


def test_a_read_just_over_the_maximum_without_a_long_line_goes_the_fast_way() -> None:
    # 64 KiB read after a held partial line: over max_line_bytes, no line near it.
    blob = b"\n".join(b"%d " % i + b"y" * 90 for i in range(700))
    assert len(blob) > 64 * 1024
    lines = lines_of(blob, 64 * 1024)
    assert isinstance(lines, LogLines)
    assert lines == decode_lines(blob, 64 * 1024)


def test_a_line_over_the_maximum_is_cut_as_before() -> None:
    blob = b"short\n" + b"z" * 100 + b"\nend"
    assert lines_of(blob, 50) == ["short", "z" * 50 + " […line truncated]", "end"]


def test_log_lines_without_orjson_encode_through_the_standard_library() -> None:
    lines = lines_of(b'a "b"\nc\\d', 1024)
    assert isinstance(lines, LogLines)
    # What compact_json falls back to (a payload orjson refuses: an integer over 64 bits).
    body = compact_json({"lines": lines, "big": 2**70})
    assert json.loads(body) == {"lines": ['a "b"', "c\\d"], "big": 2**70}
