"""Child processes of the benchmark: a line writer and two readers (SSE, tail -F).

Every line written is ``"<seq> <time_ns of the write> <padding>"``; readers record
receive time minus write time per line and whether sequence numbers arrive in order.
Run as ``python bench/procs.py ROLE ...``; each role prints one JSON line at the end.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypedDict


class PacedWrite(TypedDict):
    lines: int
    seconds: float
    late_writes: int  # written more than 1 ms after their due time


class BulkWrite(TypedDict):
    lines: int
    bytes: int
    seconds: float
    lines_per_s: float
    mb_per_s: float


class Received(TypedDict):
    """What a reader (SSE or tail -F) got; None where it got no line at all."""

    received: int
    gaps: int
    lost: int
    in_order: bool
    p50_ms: float | None
    p99_ms: float | None
    p999_ms: float | None
    max_ms: float | None
    span_s: float | None
    lines_per_s: float | None
    mb_per_s: float | None
    reader_cpu_s: float | None
    recv_lines_per_s: float | None


class IdleConns(TypedDict):
    open: int


class Fanout(TypedDict):
    clients: int
    complete: int
    events: int
    metrics_events: int
    log_lines: int
    gaps: int
    worst_lines: int
    cpu_s: float  # this client process's own CPU from every stream's hello to the end
    seconds: float  # its wall time over the same span


def line(seq: int, t_ns: int, width: int) -> bytes:
    head = f"{seq} {t_ns} "
    return (head + "x" * max(0, width - 1 - len(head)) + "\n").encode()


def write_paced(path: str, rate: float, seconds: float, width: int = 100) -> PacedWrite:
    """Append rate lines/s for seconds, one write(2) per line, stamped just before it.

    It sleeps to each line's due time rather than spinning, so it leaves the CPU to the
    server and the readers; a line written late is still stamped at its actual write."""
    n = int(rate * seconds)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    start = time.perf_counter()
    late = 0
    for seq in range(n):
        target = start + seq / rate
        d = target - time.perf_counter()
        if d > 0:
            time.sleep(d)
        if time.perf_counter() - target > 0.001:
            late += 1
        os.write(fd, line(seq, time.time_ns(), width))
    os.close(fd)
    return {"lines": n, "seconds": time.perf_counter() - start, "late_writes": late}


def bulk_write(n: int, nbytes: int, seconds: float) -> BulkWrite:
    return {
        "lines": n,
        "bytes": nbytes,
        "seconds": seconds,
        "lines_per_s": n / seconds,
        "mb_per_s": nbytes / seconds / 1e6,
    }


def write_bulk(path: str, n: int, width: int = 100, chunk: int = 5000) -> BulkWrite:
    """Append n lines as fast as possible in large buffered chunks."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    t0 = time.perf_counter()
    seq = 0
    nbytes = 0
    while seq < n:
        t_ns = time.time_ns()
        k = min(chunk, n - seq)
        buf = b"".join(line(seq + i, t_ns, width) for i in range(k))
        os.write(fd, buf)
        nbytes += len(buf)
        seq += k
    dt = time.perf_counter() - t0
    os.close(fd)
    return bulk_write(n, nbytes, dt)


@dataclass(frozen=True)
class LineShape:
    """How the bench's lines look in what a reader gets: `stamps` pulls each line's sequence
    number and write time out, `seqs` its sequence number alone, found after `lead` (what
    comes before every line; a reader's text starts at a line's start)."""

    stamps: re.Pattern[bytes]
    seqs: re.Pattern[bytes]
    lead: bytes = b""


# A line as it appears in an SSE log event (a JSON string) and as tail prints it.
SSE_LINES = LineShape(re.compile(rb'"(\d+) (\d+) x*"'), re.compile(rb'"(\d+) '))
TAIL_LINES = LineShape(re.compile(rb"(?m)^(\d+) (\d+) x*$"), re.compile(rb"\n(\d+) "), b"\n")


class Recorder:
    """What a reader got. With `latency`, every line's write stamp is parsed and kept (the
    latency runs); without, only the sequence numbers are checked, as bytes, against the
    expected ones (the throughput run: ~0.15 µs a line instead of ~0.7, so the reader keeps
    ahead of what it measures)."""

    def __init__(self, expected: int, *, latency: bool = True) -> None:
        self.expected = expected
        self.latency = latency
        self.lat_ns: list[int] = []
        self.seqs: list[int] = []
        self.bytes = 0
        self.first_write_ns: int | None = None
        self.first_recv_ns = 0
        self.last_recv_ns = 0
        self.gaps = 0  # `gap` events: the server said this client missed events
        self.first_cpu_s = 0.0
        # Without latency: the expected numbers as the lines spell them; how many arrived in
        # order; whether any did not (then the numbers are kept, as with latency).
        self.ids = [] if latency else [b"%d" % i for i in range(expected)]
        self.in_order_count = 0
        self.is_exact = latency

    def _first(self, write_ns: int, now: int) -> None:
        if self.first_write_ns is None:
            self.first_write_ns = write_ns
            self.first_recv_ns = now
            self.first_cpu_s = time.process_time()

    def add(self, whole: bytes, now: int, shape: LineShape) -> None:
        """The whole lines in `whole`, received at `now`."""
        if self.latency:
            self.add_bulk(shape.stamps.findall(whole), len(whole), now)
            return
        first = shape.stamps.search(whole) if self.first_write_ns is None else None
        seqs = shape.seqs.findall(shape.lead + whole)
        self.add_seqs(seqs, int(first[2]) if first else 0, len(whole), now)

    def add_bulk(self, stamps: list[tuple[bytes, bytes]], nbytes: int, now: int) -> None:
        """Lines received together: (seq, write time) pairs pulled out by a regex."""
        if not stamps:
            return
        self._first(int(stamps[0][1]), now)
        self.seqs.extend(map(int, (seq for seq, _ in stamps)))
        self.lat_ns.extend([now - t for t in map(int, (t for _, t in stamps))])
        self.bytes += nbytes
        self.last_recv_ns = now

    def add_seqs(self, seqs: list[bytes], first_write_ns: int, nbytes: int, now: int) -> None:
        """Lines received together, by sequence number alone (no latency)."""
        if not seqs:
            return
        self._first(first_write_ns, now)
        k = self.in_order_count
        if not self.is_exact and seqs == self.ids[k : k + len(seqs)]:
            self.in_order_count += len(seqs)
        else:  # out of order, or lost: count exactly from here on
            if not self.is_exact:
                self.is_exact, self.seqs = True, list(range(k))
            self.seqs.extend(map(int, seqs))
        self.bytes += nbytes
        self.last_recv_ns = now

    def received(self) -> int:
        return len(self.seqs) if self.is_exact else self.in_order_count

    def done(self) -> bool:
        return self.received() >= self.expected

    def result(self) -> Received:
        lat = sorted(self.lat_ns)
        if self.is_exact:
            got = len(set(self.seqs))
            in_order = got == len(self.seqs) and all(
                a < b for a, b in zip(self.seqs, self.seqs[1:], strict=False)
            )
        else:
            got, in_order = self.in_order_count, True

        def pct(p: float) -> float | None:
            return lat[min(len(lat) - 1, int(p * len(lat)))] / 1e6 if lat else None

        span = (self.last_recv_ns - self.first_write_ns) / 1e9 if self.first_write_ns else None
        recv_span = (self.last_recv_ns - self.first_recv_ns) / 1e9
        return {
            "received": self.received(),
            "gaps": self.gaps,
            "lost": self.expected - got,
            "in_order": in_order,
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
            "p999_ms": pct(0.999),
            "max_ms": lat[-1] / 1e6 if lat else None,
            "span_s": span,
            "lines_per_s": got / span if span else None,
            "mb_per_s": self.bytes / span / 1e6 if span else None,
            # The reader's own CPU from its first line to its last: near span_s, the reader
            # was the bottleneck.
            "reader_cpu_s": time.process_time() - self.first_cpu_s if got else None,
            # From the reader's first line to its last: its own pace, for the ceiling rows
            # (their lines were written before the reader started).
            "recv_lines_per_s": got / recv_span if recv_span > 0 else None,
        }


def read_sse(
    host: str,
    port: int,
    path: str,
    expected: int,
    deadline_s: float,
    idle_s: float,
    latency: bool = True,
) -> Received:
    """Parses in bulk: one regex pass per read pulls every line's stamps (or, without
    latency, only its sequence number) out of whole events, so the measuring client keeps
    well ahead of the server."""
    rec = Recorder(expected, latency=latency)
    conn = http.client.HTTPConnection(host, port, timeout=idle_s)
    conn.request("GET", path, headers={"Accept": "text/event-stream"})
    resp = conn.getresponse()
    assert resp.status == 200, resp.status
    buf = b""
    ready = False
    end = time.monotonic() + deadline_s
    while not rec.done() and time.monotonic() < end:
        try:
            data = resp.read1(1 << 20)
        except (TimeoutError, http.client.HTTPException, OSError):
            break  # idle timeout, or the server went away
        if not data:
            break
        now = time.time_ns()
        buf += data
        cut = buf.rfind(b"\n\n")
        if cut < 0:
            continue
        whole, buf = buf[: cut + 2], buf[cut + 2 :]
        if not ready:
            ready = True
            print("ready", flush=True)
            continue  # hello and history: nothing of this run's lines yet
        rec.gaps += whole.count(b"event: gap")
        rec.add(whole, now, SSE_LINES)
    conn.close()
    return rec.result()


def read_tail(
    path: str,
    expected: int,
    deadline_s: float,
    idle_s: float,
    latency: bool = True,
    command: tuple[str, ...] = ("tail", "-F", "-n", "0"),
) -> Received:
    import select
    import subprocess

    rec = Recorder(expected, latency=latency)
    proc = subprocess.Popen([*command, path], stdout=subprocess.PIPE)
    try:
        time.sleep(0.3)  # tail opens the file and seeks to its end
        print("ready", flush=True)
        assert proc.stdout is not None  # stdout=PIPE
        fd = proc.stdout.fileno()
        buf = b""
        end = time.monotonic() + deadline_s
        while not rec.done() and time.monotonic() < end:
            r, _, _ = select.select([fd], [], [], idle_s)
            if not r:
                break
            data = os.read(fd, 1 << 20)
            if not data:
                break
            now = time.time_ns()
            buf += data
            cut = buf.rfind(b"\n")
            if cut < 0:
                continue
            whole, buf = buf[: cut + 1], buf[cut + 1 :]
            rec.add(whole, now, TAIL_LINES)
    finally:
        proc.kill()
        proc.wait()
    return rec.result()


def serve_recorded(n: int, width: int = 100, per_frame: int = 650) -> BulkWrite:
    """The SSE reader's ceiling: n lines in frames shaped like the server's (a 64 KiB read
    each), made before the client comes and sent to it as fast as its socket takes them.
    Prints its port first."""
    frames = [b"event: hello\nid: 1-0\ndata: {}\n\n"]
    for first in range(0, n, per_frame):
        t_ns = time.time_ns()
        lines = [
            line(seq, t_ns, width)[:-1].decode() for seq in range(first, min(n, first + per_frame))
        ]
        payload = {"source": "app", "file": "/bench/app.log", "lines": lines}
        body = json.dumps(payload, separators=(",", ":"))  # compact, as the server writes
        frames.append(b"event: log\nid: 1-%d\ndata: %b\n\n" % (first + 1, body.encode()))
    chunks = [b"%x\r\n%b\r\n" % (len(f), f) for f in frames]
    srv = socket.create_server(("127.0.0.1", 0))
    print(srv.getsockname()[1], flush=True)
    conn, _ = srv.accept()
    got = b""
    while b"\r\n\r\n" not in got:
        got += conn.recv(4096)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n")
    conn.sendall(b"Transfer-Encoding: chunked\r\n\r\n" + chunks[0])
    time.sleep(0.3)  # the reader takes the hello as the start: the lines come after it
    t0 = time.perf_counter()
    conn.sendall(b"".join(chunks[1:]))
    dt = time.perf_counter() - t0
    conn.close()
    nbytes = sum(map(len, chunks))
    return bulk_write(n, nbytes, dt)


def hold_idle(host: str, port: int, path: str, n: int, hold_s: float) -> IdleConns:
    """Open n SSE connections, wait for each one's first event, hold them for hold_s."""
    socks = []
    req = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n".encode()
    for _ in range(n):
        s = socket.create_connection((host, port))
        s.sendall(req)
        socks.append(s)
    ok = 0
    for s in socks:
        s.settimeout(10)
        got = b""
        while b"event: hello" not in got:
            d = s.recv(65536)
            if not d:
                break
            got += d
        ok += b"event: hello" in got
    print(json.dumps({"open": ok}), flush=True)
    time.sleep(hold_s)
    for s in socks:
        s.close()
    return {"open": ok}


@dataclass
class Stream:
    """One of fanout()'s SSE connections, and what arrived on it."""

    sock: socket.socket
    buf: bytes = b""  # after the last whole frame
    seqs: list[int] = field(default_factory=list)  # the log lines' sequence numbers
    events: int = 0
    metrics: int = 0
    gaps: int = 0
    hello: bool = False  # the snapshot has arrived
    complete: bool = False  # every expected line has arrived


def fanout(host: str, port: int, path: str, n: int, expected: int, deadline_s: float) -> Fanout:
    """Hold n SSE streams on one selector; per stream, check every log line arrives in order.

    Frames are parsed in bulk: a regex pulls the sequence numbers of the lines out of whole
    frames, so the measuring clients cost little beside the server.
    """
    import selectors

    sel = selectors.DefaultSelector()
    req = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n".encode()
    conns: list[Stream] = []
    for _ in range(n):
        s = socket.create_connection((host, port))
        s.sendall(req)
        s.setblocking(False)
        state = Stream(s)
        conns.append(state)
        sel.register(s, selectors.EVENT_READ, state)
    ready_at, cpu0 = 0.0, 0.0
    hellos = 0
    end = time.monotonic() + deadline_s
    done = 0
    while done < n and time.monotonic() < end:
        for key, _ in sel.select(timeout=1.0):
            st: Stream = key.data
            try:
                data = st.sock.recv(1 << 18)
            except BlockingIOError:
                continue
            if not data:
                sel.unregister(st.sock)
                st.sock.close()
                done += 1
                continue
            buf = st.buf + data
            cut = buf.rfind(b"\n\n")
            if cut < 0:
                st.buf = buf
                continue
            whole, st.buf = buf[: cut + 2], buf[cut + 2 :]
            if not st.hello:
                st.hello = b"event: hello" in whole
                hellos += st.hello
                if st.hello and hellos == n:
                    ready_at, cpu0 = time.monotonic(), time.process_time()
                    print("ready", flush=True)
                continue  # the snapshot: history before this run's lines
            st.events += whole.count(b"\nevent: ") + whole.startswith(b"event: ")
            st.metrics += whole.count(b"event: metrics")
            st.gaps += whole.count(b"event: gap")
            st.seqs.extend(int(seq) for seq, _ in SSE_LINES.stamps.findall(whole))
            if len(st.seqs) >= expected and not st.complete:
                st.complete = True
                done += 1
    complete = sum(c.seqs == list(range(expected)) for c in conns)
    return {
        "clients": n,
        "complete": complete,
        "events": sum(c.events for c in conns),
        "metrics_events": sum(c.metrics for c in conns),
        "log_lines": sum(len(c.seqs) for c in conns),
        "gaps": sum(c.gaps for c in conns),
        "worst_lines": min(len(c.seqs) for c in conns),
        "cpu_s": time.process_time() - cpu0,
        "seconds": time.monotonic() - ready_at,
    }


def main() -> None:
    role, *a = sys.argv[1:]
    out: Mapping[str, object]
    if role == "write-paced":
        out = write_paced(a[0], float(a[1]), float(a[2]))
    elif role == "write-bulk":
        out = write_bulk(a[0], int(a[1]))
    elif role == "sse":  # HOST PORT PATH LINES DEADLINE IDLE [order]
        latency = a[6:] != ["order"]
        out = read_sse(a[0], int(a[1]), a[2], int(a[3]), float(a[4]), float(a[5]), latency)
    elif role == "tail":  # PATH LINES DEADLINE IDLE [order|order-cat]
        latency = not a[4:]
        command = ("cat",) if a[4:] == ["order-cat"] else ("tail", "-F", "-n", "0")
        out = read_tail(a[0], int(a[1]), float(a[2]), float(a[3]), latency, command)
    elif role == "serve-recorded":  # LINES
        out = serve_recorded(int(a[0]))
    elif role == "fanout":
        out = fanout(a[0], int(a[1]), a[2], int(a[3]), int(a[4]), float(a[5]))
    elif role == "idle-conns":
        out = hold_idle(a[0], int(a[1]), a[2], int(a[3]), float(a[4]))
    else:
        raise SystemExit(f"unknown role {role}")
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
