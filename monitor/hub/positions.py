"""PositionLog: where every published event came from, by sequence number, kept on disk.

The ring holds the recent frames themselves; this log holds, for many more, a fixed-size
record per event: its type, its source, and for a log event read from a file, the file's
identity and the byte range its lines came from (with a CRC of those bytes). A client the
ring has lapped is caught up from those records by reading the lines again from the file,
which holds them anyway: the file is the history, the ring only the cache of its live edge.

Records live in a file of `capacity` slots, slot = seq % capacity: appending is one pwrite,
finding a seq one pread; nothing grows in memory. The kernel's page cache keeps what is hot.
In a state directory the file outlives the process: a restarted server goes on with the same
run id after the last recorded seq, clients resume across the restart, and each log source
learns where the last run left each of its files.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import tempfile
import weakref
from dataclasses import dataclass

from monitor.hub.events import ALERT, LOG, METRICS, STATUS
from monitor.hub.interface import Origin, Resumed
from monitor.state import StateDir

log = logging.getLogger(__name__)

# seq, dev, inode, start, end, read time, crc32, lines, source index, flags; padded to 64.
RECORD = struct.Struct("<qQQqqdIIHH4x")
SIZE = RECORD.size
HAS_ORIGIN = 1
IS_BACKLOG = 2
IS_CUT = 4
TYPE_SHIFT = 8  # the event type's index in TYPES, in the flags' high byte
TYPES = ("", LOG, METRICS, STATUS, ALERT)  # "": some other type
DEFAULT_CAPACITY = 256 * 1024  # 16 MiB of records
FILE, META = "positions", "positions.json"  # in the state directory


@dataclass(frozen=True, slots=True)
class Record:
    """One published event, as the log remembers it."""

    seq: int
    type: str
    source: str | None
    lines: int  # of a log event
    origin: Origin | None
    ts: float


class PositionLog:
    """Records for the last `capacity` sequence numbers: in the state directory if given
    (kept across restarts), else in an unlinked temporary file."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY, state: StateDir | None = None) -> None:
        self.capacity = capacity
        self.head = 1  # the next seq
        self.run_id: str | None = None  # the previous run's, when this one goes on from it
        # Where the previous run left each source's files: the last origin of each file.
        self.resumed: dict[str, Resumed] = {}
        self._write_failed = False
        self._sources: list[str] = []  # index - 1 -> source name, as records store it
        self._index: dict[str, int] = {}
        self._state = state
        if state is None:
            fd, path = tempfile.mkstemp(prefix="sse-monitor-positions-")
            os.unlink(path)  # nobody else needs a name for it; it goes when it is closed
        else:
            fd = os.open(state.path(FILE), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._fd = fd
        # The file's blocks now, not a hole per record later: a full disk is found at start.
        with contextlib.suppress(OSError):
            os.posix_fallocate(fd, 0, capacity * SIZE)
        # A hub nobody closes (tests, a failed start) still gives its descriptor back.
        self._closer = weakref.finalize(self, os.close, fd)
        if state is not None:
            self._recover(state)

    def _recover(self, state: StateDir) -> None:
        """Go on from the previous run's records if they are ours and whole; else start the
        file afresh (with a warning if there was something that could not be used)."""
        meta = state.read_json(META)
        sources = meta.get("sources") if meta else None
        run_id = meta.get("run_id") if meta else None
        if not (
            meta
            and meta.get("capacity") == self.capacity
            and isinstance(run_id, str)
            and run_id.isascii()
            and run_id.isdigit()
            and isinstance(sources, list)
            and all(isinstance(s, str) for s in sources)
        ):
            if meta is not None:
                log.warning("state %s: not usable by this version or size; starting afresh", META)
            os.ftruncate(self._fd, 0)
            return
        self._sources = list(sources)
        self._index = {name: i + 1 for i, name in enumerate(self._sources)}
        data = os.pread(self._fd, self.capacity * SIZE, 0)
        last: dict[tuple[int, int, int], tuple[int, Origin]] = {}
        until: dict[int, float] = {}
        head = 0
        for slot, fields in enumerate(RECORD.iter_unpack(data[: len(data) // SIZE * SIZE])):
            seq, dev, ino, start, end, ts, crc, lines, index, flags = fields
            if not self._is_sound(seq, slot, index, flags, start, end):
                continue  # never written, or not a record of ours
            head = max(head, seq)
            if index:
                until[index] = max(until.get(index, 0.0), ts)
            if flags & HAS_ORIGIN and index:
                key = (index, dev, ino)
                if key not in last or last[key][0] < seq:
                    origin = _origin(dev, ino, start, end, crc, lines, flags)
                    last[key] = (seq, origin)
        if head == 0:  # nothing to go on from: a new run, so no id is used twice
            os.ftruncate(self._fd, 0)
            return
        self.head, self.run_id = head + 1, run_id
        files: dict[int, dict[tuple[int, int], Origin]] = {}
        for (index, dev, ino), (_, origin) in last.items():
            files.setdefault(index, {})[(dev, ino)] = origin
        for index, at in until.items():
            self.resumed[self._sources[index - 1]] = Resumed(files.get(index, {}), at)

    def _is_sound(self, seq: int, slot: int, index: int, flags: int, start: int, end: int) -> bool:
        """A record this log wrote, in its own slot, naming a known source and type."""
        return (
            seq > 0
            and seq % self.capacity == slot
            and index <= len(self._sources)
            and (flags >> TYPE_SHIFT) < len(TYPES)
            and 0 <= start <= end
        )

    def start(self, run_id: str) -> None:
        """Say which run the records belong to (saved with the state, if any)."""
        self.run_id = run_id
        self._save_meta()

    def _save_meta(self) -> None:
        if self._state is not None and self.run_id is not None:
            meta = {"run_id": self.run_id, "capacity": self.capacity, "sources": self._sources}
            self._state.write_json(META, meta)

    @property
    def tail(self) -> int:
        """The oldest seq whose record is still held."""
        return max(1, self.head - self.capacity)

    def close(self) -> None:
        """Drop the records; writes and reads afterwards are harmless and find nothing."""
        self._closer()
        self._fd = -1

    def write(
        self,
        seq: int,
        event_type: str,
        source: str | None,
        origin: Origin | None,
        ts: float,
        lines: int = 0,
    ) -> None:
        """Record event `seq` (one pwrite, before any client can have seen the event)."""
        if self._fd < 0:
            return
        index = 0  # no source; else 1 + its place in self._sources
        if source is not None:
            index = self._index.get(source, 0)
            if not index:
                self._sources.append(source)
                index = self._index[source] = len(self._sources)
                self._save_meta()  # before any record names it
        flags = (TYPES.index(event_type) if event_type in TYPES else 0) << TYPE_SHIFT
        if origin is None:
            record = RECORD.pack(seq, 0, 0, 0, 0, ts, 0, lines, index, flags)
        else:
            flags |= HAS_ORIGIN | (IS_BACKLOG if origin.is_backlog else 0)
            flags |= IS_CUT if origin.is_cut else 0
            dev, ino = origin.key
            record = RECORD.pack(
                seq, dev, ino, origin.start, origin.end, ts, origin.crc, lines, index, flags
            )
        try:
            os.pwrite(self._fd, record, (seq % self.capacity) * SIZE)
        except OSError as exc:  # a full disk: the event still goes out, its record does not
            if not self._write_failed:
                log.error("position log: %s; events are not recorded meanwhile", exc.strerror)
            self._write_failed = True
        self.head = max(self.head, seq + 1)

    def read(self, lo: int, hi: int) -> list[Record | None]:
        """Records lo..hi-1 (None for one no longer held); hi - lo at most `capacity`."""
        lo, hi = max(lo, 1), min(hi, self.head)
        if lo >= hi or self._fd < 0:
            return []
        first = lo % self.capacity
        count = hi - lo
        data = os.pread(self._fd, min(count, self.capacity - first) * SIZE, first * SIZE)
        if first + count > self.capacity:  # wraps around the end of the file
            data += os.pread(self._fd, (first + count - self.capacity) * SIZE, 0)
        out: list[Record | None] = []
        for i, fields in enumerate(RECORD.iter_unpack(data[: len(data) // SIZE * SIZE])):
            seq, dev, ino, start, end, ts, crc, lines, index, flags = fields
            slot = (lo + i) % self.capacity
            if seq != lo + i or not self._is_sound(seq, slot, index, flags, start, end):
                out.append(None)  # overwritten by a newer event, never written, or damaged
                continue
            origin = None
            if flags & HAS_ORIGIN:
                origin = _origin(dev, ino, start, end, crc, lines, flags)
            source = self._sources[index - 1] if index else None
            out.append(Record(seq, TYPES[flags >> TYPE_SHIFT], source, lines, origin, ts))
        return out


def _origin(dev: int, ino: int, start: int, end: int, crc: int, lines: int, flags: int) -> Origin:
    return Origin(
        (dev, ino), start, end, crc, lines, bool(flags & IS_BACKLOG), bool(flags & IS_CUT)
    )
