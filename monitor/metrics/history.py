"""MetricsHistory: a hub consumer keeping recent metrics as chart columns, every sample then
per-bucket stats."""

from __future__ import annotations

import json
import math
from array import array
from bisect import bisect_right
from collections.abc import Collection, Hashable, Mapping
from typing import Any, Generic, TypeVar

from monitor.hub.events import METRICS
from monitor.hub.interface import Consumable
from monitor.metrics.paths import as_float, flatten
from monitor.tasks import consume

K = TypeVar("K", bound=Hashable)
STATS = ("min", "avg", "max")
NAN = math.nan  # a gap inside the float arrays; None outside them
# Constants and clock readings: a chart of them says nothing, and each series kept costs
# ~42 KB (a day of per-minute min/avg/max).
NOT_SERIES = frozenset(
    {"uptime_s", "cpu.count", "memory.total", "swap.total", "processes.sampled_at"}
)
# Of each disk's figures, the ones that change (total is constant, free mirrors used).
DISK_SERIES = (".percent", ".used")


def series_of(payload: Mapping[str, Any]) -> dict[str, float | None]:
    """The values of a metrics payload worth a chart, by metric path (monitor.metrics.paths):
    no constants or clock readings (NOT_SERIES), and of each disk only `percent` and `used`."""
    values = flatten(payload)
    for name in NOT_SERIES.intersection(values):
        del values[name]
    for name in [n for n in values if n.startswith("disks.")]:
        if not name.endswith(DISK_SERIES):
            del values[name]
    return values


def _stats(values: array[float]) -> tuple[float, float, float] | None:
    present = [v for v in values if not math.isnan(v)]
    if not present:
        return None
    return min(present), math.fsum(present) / len(present), max(present)


class _Ring(Generic[K]):
    """Float columns over a fixed number of rows; appending past capacity overwrites the oldest."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.ts = array("d", [NAN]) * capacity
        self.columns: dict[K, array[float]] = {}
        self.head = 0  # where the next row goes
        self.size = 0

    def add_column(self, key: K) -> None:
        # NaN-filled, so a late series reads as gaps for the rows before it appeared
        self.columns[key] = array("d", [NAN]) * self.capacity

    def append(self, ts: float, row: Mapping[K, float | None]) -> None:
        head = self.head
        self.ts[head] = ts
        for key, column in self.columns.items():
            value = row.get(key)
            column[head] = NAN if value is None else value
        self.head = (head + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def oldest_ts(self) -> float:
        return self.ts[(self.head - self.size) % self.capacity] if self.size else math.inf

    def times(self) -> list[float]:
        return self._ordered(self.ts).tolist()

    def column(self, key: K, start: int) -> list[float | None]:
        return [None if math.isnan(v) else v for v in self._ordered(self.columns[key])[start:]]

    def tail(self, key: K, rows: int) -> array[float]:
        return self._ordered(self.columns[key])[max(self.size - rows, 0) :]

    def stored_values(self) -> int:
        return len(self.ts) + sum(len(c) for c in self.columns.values())

    def _ordered(self, values: array[float]) -> array[float]:
        if self.size < self.capacity:
            return values[: self.size]
        return values[self.head :] + values[: self.head]

    def dump(self, keys: list[K]) -> tuple[dict[str, int], list[array[float]]]:
        """Where the ring stands, and its arrays (time first, then `keys`), not copied."""
        arrays = [self.ts, *(self.columns[k] for k in keys)]
        return {"capacity": self.capacity, "head": self.head, "size": self.size}, arrays

    def load(self, where: Mapping[str, Any], keys: list[K], blobs: list[bytes]) -> None:
        """Take back what dump() gave; ValueError if it does not fit this ring."""
        if where.get("capacity") != self.capacity or len(blobs) != len(keys) + 1:
            raise ValueError("saved with other history settings")
        arrays = []
        for blob in blobs:
            values = array("d")
            values.frombytes(blob)
            if len(values) != self.capacity:
                raise ValueError("an array of the wrong length")
            arrays.append(values)
        head, size = int(where["head"]), int(where["size"])
        if not (0 <= head < self.capacity and 0 <= size <= self.capacity):
            raise ValueError("a ring position out of range")
        self.ts, self.columns = arrays[0], dict(zip(keys, arrays[1:], strict=True))
        self.head, self.size = head, size


class MetricsHistory:
    """Metrics for charts: every sample for `full_s`, then min/avg/max per `bucket_s`.

    Memory is bounded whatever is added. At most `max_series` series are kept; names beyond
    that are ignored and counted in `dropped_series`. A series is forgotten once none of its
    values are left in either ring. Each kept series owns fixed float64 arrays:
      full ring    ceil(full_s / interval_s) rows: a time column + 1 column per series
      bucket ring  ceil(downsampled_s / bucket_s) rows: a time column + 3 per series
    With the defaults that is at most 8 B x (513 x 900 + 1537 x 1440) = about 21 MB at 512
    series, about 2.5 MB for a host's typical ~60. `stored_values()` counts the floats.
    The full ring holds a number of rows: samples faster than `interval_s` span less than
    `full_s`. A bucket's stats are taken from its rows in the full ring when it closes, so a
    bucket flooded with more samples than the full ring holds covers only its newest rows.
    """

    def __init__(
        self,
        *,
        full_s: float = 900,
        interval_s: float = 1.0,
        bucket_s: float = 60,
        downsampled_s: float = 86400,
        max_series: int = 512,
    ) -> None:
        durations = {"full_s": full_s, "interval_s": interval_s, "bucket_s": bucket_s}
        for name, value in (durations | {"downsampled_s": downsampled_s}).items():
            if not 0 < value < math.inf:
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        if bucket_s > full_s:
            raise ValueError(f"bucket_s ({bucket_s:g}) must not exceed full_s ({full_s:g})")
        if max_series < 1:
            raise ValueError(f"max_series must be at least 1, got {max_series!r}")
        self.full_s = full_s
        self.interval_s = interval_s
        self.bucket_s = bucket_s
        self.downsampled_s = downsampled_s
        self.max_series = max_series
        self.dropped_series = 0
        # Names refused so far, so each is counted once; capped like the series themselves.
        self._refused: set[str] = set()
        self._reset()

    def _reset(self) -> None:
        self._full: _Ring[str] = _Ring(math.ceil(self.full_s / self.interval_s))
        self._buckets: _Ring[tuple[str, str]] = _Ring(math.ceil(self.downsampled_s / self.bucket_s))
        self._last_seen: dict[str, float] = {}  # also the registry of kept series
        self._bucket_start: float | None = None
        self._open_rows = 0  # rows of the open bucket, the newest in the full ring
        self._newest: float | None = None

    async def run(self, hub: Consumable) -> None:
        """Record every metrics event published from now on, until the hub closes."""
        await consume(hub, frozenset({METRICS}), lambda event: self.add(event.payload), "history")

    def add(self, payload: Mapping[str, Any]) -> None:
        """Record one metrics payload; its `ts` (epoch seconds) is the time axis."""
        raw_ts = payload.get("ts")
        ts = as_float(raw_ts)
        if ts is None:
            raise ValueError(f"metrics payload needs a finite number 'ts', got {raw_ts!r}")
        if self._newest is not None and ts < self._newest:
            self._reset()  # the wall clock stepped back; a chart's time axis must only grow
        values = self._admit(series_of(payload), ts)
        bucket_start = math.floor(ts / self.bucket_s) * self.bucket_s
        if self._bucket_start is not None and bucket_start != self._bucket_start:
            self._close_bucket()
        self._bucket_start = bucket_start
        self._full.append(ts, values)
        self._open_rows += 1
        self._newest = ts

    def _admit(self, values: dict[str, float | None], ts: float) -> dict[str, float | None]:
        if values.keys() <= self._last_seen.keys():  # the usual sample: no new names
            self._last_seen.update(dict.fromkeys(values, ts))
            return values
        kept: dict[str, float | None] = {}
        for name, value in values.items():
            if name not in self._last_seen:
                if len(self._last_seen) >= self.max_series:
                    self._refuse(name)
                    continue
                self._refused.discard(name)
                self._full.add_column(name)
                for stat in STATS:
                    self._buckets.add_column((name, stat))
            self._last_seen[name] = ts
            kept[name] = value
        return kept

    def _refuse(self, name: str) -> None:
        # Remembering every refused name would be unbounded; past the cap the count stops.
        if name not in self._refused and len(self._refused) < self.max_series:
            self._refused.add(name)
            self.dropped_series += 1

    def _open_stats(self, name: str) -> tuple[float, float, float] | None:
        return _stats(self._full.tail(name, self._open_rows))

    def _close_bucket(self) -> None:
        assert self._bucket_start is not None
        row: dict[tuple[str, str], float | None] = {}
        for name in self._last_seen:
            stats = self._open_stats(name)
            if stats is not None:
                row[(name, "min")], row[(name, "avg")], row[(name, "max")] = stats
        self._buckets.append(self._bucket_start, row)
        self._open_rows = 0
        self._forget_stale()

    def _forget_stale(self) -> None:
        # A series unseen since before both rings' oldest rows is all gaps: free its slot.
        horizon = min(self._full.oldest_ts(), self._buckets.oldest_ts())
        for name in [n for n, seen in self._last_seen.items() if seen < horizon]:
            del self._last_seen[name], self._full.columns[name]
            for stat in STATS:
                del self._buckets.columns[(name, stat)]

    def dump(self) -> list[bytes | array[float]]:
        """The whole history for a state file, as parts to write one after the other: a JSON
        header line, then the rings' float arrays as they are in memory (written without a
        copy: a day of a host's series is ~2.5 MB)."""
        names = list(self._last_seen)
        stat_keys = [(n, s) for n in names for s in STATS]
        full, full_blobs = self._full.dump(names)
        buckets, bucket_blobs = self._buckets.dump(stat_keys)
        blobs = [*full_blobs, *bucket_blobs]
        header = {
            "version": 1,
            "settings": [self.full_s, self.interval_s, self.bucket_s, self.downsampled_s],
            "names": names,
            "last_seen": [self._last_seen[n] for n in names],
            "full": full,
            "buckets": buckets,
            "bucket_start": self._bucket_start,
            "open_rows": self._open_rows,
            "newest": self._newest,
            "sizes": [len(b) * b.itemsize for b in blobs],
        }
        return [json.dumps(header).encode() + b"\n", *blobs]

    def load(self, data: bytes) -> None:
        """Take back what dump() gave, as if never stopped; ValueError (and no change) if it
        was saved with other settings or is damaged."""
        line, _, rest = data.partition(b"\n")
        try:
            header = json.loads(line)
            names = [str(n) for n in header["names"]]
            settings = [self.full_s, self.interval_s, self.bucket_s, self.downsampled_s]
            if header["version"] != 1 or header["settings"] != settings:
                raise ValueError("saved with other history settings")
            blobs, at = [], 0
            for size in header["sizes"]:
                blobs.append(rest[at : at + size])
                at += size
            if at != len(rest) or len(names) > self.max_series:
                raise ValueError("damaged")
            full, buckets = (
                _Ring[str](self._full.capacity),
                _Ring[tuple[str, str]](self._buckets.capacity),
            )
            full.load(header["full"], names, blobs[: len(names) + 1])
            stat_keys = [(n, s) for n in names for s in STATS]
            buckets.load(header["buckets"], stat_keys, blobs[len(names) + 1 :])
            last_seen = dict(zip(names, map(float, header["last_seen"]), strict=True))
            open_rows, newest = int(header["open_rows"]), header["newest"]
            bucket_start = header["bucket_start"]
            for value in (newest, bucket_start):
                if value is not None and not math.isfinite(float(value)):
                    raise ValueError("a time that is not a number")
            if not 0 <= open_rows <= full.size:
                raise ValueError("open_rows out of range")
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(str(exc) or type(exc).__name__) from None
        self._full, self._buckets, self._last_seen = full, buckets, last_seen
        self._open_rows, self._newest, self._bucket_start = open_rows, newest, bucket_start

    @property
    def newest_ts(self) -> float | None:
        """The time of the newest sample: what the history holds changes with it."""
        return self._newest

    def series_names(self) -> list[str]:
        """Names of the series kept now, sorted."""
        return sorted(self._last_seen)

    def stored_values(self) -> int:
        """Floats held in both rings: bounded, see the class docstring."""
        return self._full.stored_values() + self._buckets.stored_values()

    def query(self, window_s: float, keys: Collection[str] | None = None) -> dict[str, Any]:
        """Columns for the last `window_s` seconds: every sample if within `full_s`, else buckets.

        One shape either way: {"resolution_s", "is_bucketed", "ts": [...], "series": {name:
        [value | None, ...]}, "min": {name: [...]}, "max": {name: [...]}}. At full resolution
        `series` holds every sample and min/max are empty; bucketed, `ts` are bucket starts (the
        last bucket still open), `series` each bucket's average, min/max its extremes. Unknown
        keys are left out; None means no value.
        """
        if not window_s > 0:
            raise ValueError(f"window_s must be positive, got {window_s!r}")
        wanted = self.series_names() if keys is None else keys
        names = [k for k in dict.fromkeys(wanted) if k in self._last_seen]
        if window_s <= self.full_s:
            return self._query_full(window_s, names)
        return self._query_buckets(window_s, names)

    def _query_full(self, window_s: float, names: list[str]) -> dict[str, Any]:
        ts = self._full.times()
        start = bisect_right(ts, ts[-1] - window_s) if ts else 0
        series = {name: self._full.column(name, start) for name in names}
        return _shaped(self.interval_s, False, ts[start:], series, {}, {})

    def _query_buckets(self, window_s: float, names: list[str]) -> dict[str, Any]:
        if self._newest is None or self._bucket_start is None:
            return _shaped(self.bucket_s, True, [], {}, {}, {})
        ts = self._buckets.times()
        # every bucket that ends after the window starts, then the open one
        start = bisect_right(ts, self._newest - window_s - self.bucket_s)
        ts.append(self._bucket_start)
        stats: dict[str, dict[str, list[float | None]]] = {stat: {} for stat in STATS}
        for name in names:
            open_stats = self._open_stats(name) or (None, None, None)
            for stat, value in zip(STATS, open_stats, strict=True):
                stats[stat][name] = [*self._buckets.column((name, stat), start), value]
        return _shaped(self.bucket_s, True, ts[start:], stats["avg"], stats["min"], stats["max"])


def _shaped(
    resolution_s: float,
    is_bucketed: bool,
    ts: list[float],
    series: dict[str, list[float | None]],
    minima: dict[str, list[float | None]],
    maxima: dict[str, list[float | None]],
) -> dict[str, Any]:
    """The one shape of a history answer (see MetricsHistory.query)."""
    return {
        "resolution_s": resolution_s,
        "is_bucketed": is_bucketed,
        "ts": ts,
        "series": series,
        "min": minima,
        "max": maxima,
    }
