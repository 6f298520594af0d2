"""LogLines: a log event's lines, held as the JSON array they are sent as.

A 64 KiB read of a log is ~650 lines. Splitting it into 650 strings only for orjson to write
them out again, then dropping them, cost ~0.15 µs a line: a quarter of the server's CPU per
line at 10^6 lines (py-spy), paid again for each line a lagging client is caught up with from
the file. When orjson can splice JSON (`Fragment`), the array is written from the whole text
at once instead (~50 ns a line): DEL, which JSON leaves as it is, stands for the newlines while
orjson escapes the rest, then becomes `","`. The list is made only if something in the
process reads the lines (an alert rule, a test); clients get the same bytes either way.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, overload

try:
    import orjson

    FRAGMENT = getattr(orjson, "Fragment", None)  # JSON spliced in verbatim, where it has it
except ImportError:  # pragma: no cover - a platform without orjson's wheel
    orjson = None  # type: ignore[assignment]
    FRAGMENT = None

NEWLINE_STAND_IN = "\x7f"  # DEL: a control character JSON does not escape


class LogLines(Sequence[str]):
    """Lines as their JSON array (`json`); the list itself on first read."""

    __slots__ = ("json", "_count", "_list")

    def __init__(self, json: bytes, count: int) -> None:
        self.json = json
        self._count = count
        self._list: list[str] | None = None

    @classmethod
    def of_text(cls, text: str) -> LogLines | None:
        """The lines of `text` (split at each newline), if made the fast way can: orjson
        with Fragment, and no DEL in the text. None otherwise: split it."""
        if FRAGMENT is None or NEWLINE_STAND_IN in text:
            return None
        body = orjson.dumps(text.replace("\n", NEWLINE_STAND_IN))
        array = b"[%b]" % body.replace(NEWLINE_STAND_IN.encode(), b'","')
        # Each newline became 3 bytes for 1: the count falls out of the lengths.
        return cls(array, (len(array) - 2 - len(body)) // 2 + 1)

    def tolist(self) -> list[str]:
        """The lines as a list (made once)."""
        if self._list is None:
            self._list = orjson.loads(self.json)
        return self._list

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> list[str]: ...

    def __getitem__(self, index: int | slice) -> str | list[str]:
        return self.tolist()[index]

    def __iter__(self) -> Iterator[str]:
        return iter(self.tolist())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LogLines):
            return self.json == other.json
        return (
            isinstance(other, Sequence)
            and not isinstance(other, str | bytes)
            and (self.tolist() == list(other))
        )

    __hash__ = None  # type: ignore[assignment]  # mutable-looking, like the list it stands for

    def __repr__(self) -> str:
        return f"LogLines({self.tolist()!r})"


def as_fragment(value: Any) -> Any:
    """orjson's `default`: LogLines spliced as their JSON."""
    if isinstance(value, LogLines) and FRAGMENT is not None:
        return FRAGMENT(value.json)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def as_list(value: Any) -> Any:
    """json.dumps' `default`: LogLines as their list."""
    if isinstance(value, LogLines):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
