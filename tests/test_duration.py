"""Durations: one grammar for a rule's `for`/`window` and a history `?window=`."""

from __future__ import annotations

from typing import Any

import pytest

from monitor.duration import format_duration, parse_duration


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("300", 300),
        ("90s", 90),
        ("5m", 300),
        ("15m", 900),
        ("1h", 3600),
        ("24h", 86400),
        ("1.5s", 1.5),
        ("1.5m", 90),  # once valid as a rule window but not as ?window=: one grammar now
        ("1.5h", 5400),
        (" 2 M ", 120),
        (45, 45),
        (0.5, 0.5),
    ],
)
def test_durations_in_every_form(value: Any, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("", "expected a duration such as 30s, 5m, 1h or 24h, got ''"),
        ("abc", "expected a duration such as 30s, 5m, 1h or 24h, got 'abc'"),
        ("5x", "got '5x'"),
        ("-5m", "got '-5m'"),
        ("1 week", "got '1 week'"),
        (True, "got True"),
        (-1, "got -1"),
        ("0", "longer than 0s"),
        ("0m", "longer than 0s"),
        ("25h", "at most 24h, got '25h'"),
        ("9" * 30, "at most 24h"),
        ("x" * 100, "got 'xxxxxxxx"),
    ],
)
def test_bad_durations_say_what_a_duration_looks_like(value: Any, problem: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_duration(value)
    assert problem in str(err.value)
    assert len(str(err.value)) < 120  # a long value is cut, not echoed whole


def test_zero_and_the_maximum_are_the_callers_choice() -> None:
    assert parse_duration("0s", allow_zero=True) == 0
    assert parse_duration("1h", max_s=3600) == 3600
    with pytest.raises(ValueError, match="at most 15m"):
        parse_duration("1h", max_s=900)


@pytest.mark.parametrize(("seconds", "text"), [(86400, "24h"), (900, "15m"), (90, "90s")])
def test_format_duration_is_the_shortest_exact_form(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
