"""The files as the history (issue #14), measured: a healthy client's latency with a stuck
and a slow client present during a 5 MB/s burst on another source; catch-up from the file to
a client that stopped reading while 1,000,000 lines were written; and a `kill -9` and restart
with a client resuming by its last event id; scroll-back and jump-to-moment in 2 GiB, within
the records and past them (rotated and gzip-compressed files).

    .venv/bin/python bench/history.py          # ~1.5 min; prints a table, saves JSON
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from procs import SSE_LINES  # noqa: E402
from run import (  # noqa: E402
    ROOT,
    Json,
    Server,
    cleanup,
    fresh,
    last_json,
    plain_table,
    role,
    script_role,
    wait_ready,
)


def open_stream(port: int, path: str, rcvbuf: int = 0) -> socket.socket:
    """An SSE request whose response head has been read; the body is the caller's."""
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    return sock


def slow_reader(port: int, path: str, bytes_per_s: int, seconds: float) -> Json:
    """Reads at most bytes_per_s, in tenths of a second."""
    sock = open_stream(port, path, rcvbuf=16384)
    print("ready", flush=True)
    got, end = 0, time.monotonic() + seconds
    sock.settimeout(1)
    while time.monotonic() < end:
        try:
            got += len(sock.recv(bytes_per_s // 10))
        except TimeoutError:
            pass
        time.sleep(0.1)
    sock.close()
    return {"bytes": got}


def burst_writer(path: str, mb_per_s: float, seconds: float) -> Json:
    """Lines of 100 bytes, 1/100 s worth per write."""
    per_tick = int(mb_per_s * 1e6 / 100 / 100)
    line = b"burst " + b"x" * 93 + b"\n"
    written, start = 0, time.monotonic()
    with open(path, "ab", buffering=0) as f:
        while time.monotonic() - start < seconds:
            f.write(line * per_tick)
            written += per_tick
            time.sleep(max(0.0, start + written / per_tick / 100 - time.monotonic()))
    return {"lines": written, "seconds": time.monotonic() - start}


def catch_up_reader(port: int, path: str, expected: int, go_file: str) -> Json:
    """Reads its hello, then nothing until `go_file` exists; then everything, timed. (A
    normal receive buffer: a small one would cap the rate by the TCP window it offers.)"""
    sock = open_stream(port, path)
    buf = b""
    while b"event: hello" not in buf:
        buf += sock.recv(65536)
    print("ready", flush=True)
    while not os.path.exists(go_file):
        time.sleep(0.05)
    seqs: list[int] = []
    start, gaps, buf = time.monotonic(), 0, b""
    sock.settimeout(30)
    while len(seqs) < expected:
        data = sock.recv(1 << 20)
        if not data:
            break
        buf += data
        cut = buf.rfind(b"\n\n")
        if cut < 0:
            continue
        whole, buf = buf[: cut + 2], buf[cut + 2 :]
        gaps += whole.count(b"event: gap")
        seqs += [int(seq) for seq, _ in SSE_LINES.stamps.findall(whole)]
    span = time.monotonic() - start
    in_order = seqs == list(range(len(seqs)))
    return {
        "lines": len(seqs),
        "gaps": gaps,
        "in_order": in_order,
        "span_s": span,
        "lines_per_s": len(seqs) / span if span else None,
    }


def bench_isolation(tmp: str) -> Json:
    out: Json = {}
    for label, hostile in (("alone", False), ("with a stuck and a slow client", True)):
        # The healthy client follows source "app"; the stuck and slow ones, and the burst,
        # are on source "other".
        healthy_log, other_log = fresh(tmp, f"h{hostile}.log"), fresh(tmp, f"o{hostile}.log")
        srv = Server(healthy_log, tmp, "--log", f"other={other_log}")
        try:
            sse = role(
                "sse",
                "127.0.0.1",
                str(srv.port),
                "/events?types=log&sources=app",
                "1500",
                "60",
                "60",
            )
            wait_ready(sse)
            others = []
            if hostile:
                other = "/events?types=log&sources=other"
                stuck = bench_role("stuck", str(srv.port), other, "30")
                slow = bench_role("slow", str(srv.port), other, "100000", "25")
                wait_ready(stuck)
                wait_ready(slow)
                others = [stuck, slow, bench_role("burst", other_log, "5", "16")]
            time.sleep(0.5)
            last_json(role("write-paced", healthy_log, "100", "15"), 40)
            result = last_json(sse, 60)
            for p in others:
                p.kill()
            out[label] = {k: result[k] for k in ("p50_ms", "p99_ms", "max_ms", "lost")}
        finally:
            cleanup()
    return out


def bench_catch_up(tmp: str, lines: int) -> Json:
    log = fresh(tmp, "catchup.log")
    srv = Server(log, tmp)
    go = os.path.join(tmp, "go")
    try:
        reader = bench_role(
            "catch-up", str(srv.port), "/events?types=log&sources=app", str(lines), go
        )
        wait_ready(reader)
        last_json(role("write-bulk", log, str(lines)), 120)
        time.sleep(1)  # the server has read the burst: the reader is far behind its buffer
        Path(go).touch()
        return {"lines_written": lines, **last_json(reader, 120)}
    finally:
        cleanup()


def median_run(run: Callable[[], Json], times: int = 3) -> Json:
    """The run with the median rate of `times` (the machine's two cores are shared by the
    writer, the server and the reader: one run varies by half), with every run's rate."""
    runs = sorted((run() for _ in range(times)), key=lambda r: float(r["lines_per_s"] or 0))
    return {**runs[len(runs) // 2], "runs_lines_per_s": [r["lines_per_s"] for r in runs]}


def bench_restart(tmp: str) -> Json:
    log = fresh(tmp, "restart.log")
    state = os.path.join(tmp, "state")
    flags = ("--state-dir", state)
    srv = Server(log, tmp, *flags)
    path = "/events?types=log&sources=app"
    sock = open_stream(srv.port, path)
    with open(log, "a") as f:
        f.write("".join(f"{i} 0 x\n" for i in range(1000)))
    buf, last_id = b"", ""
    while b'"999 0 x"' not in buf:
        buf += sock.recv(65536)
    for block in buf.split(b"\n\n"):
        if b"event: log" in block:
            last_id = block.split(b"id: ")[1].split(b"\n")[0].decode()
    sock.close()
    os.kill(srv.proc.pid, signal.SIGKILL)
    srv.proc.wait()
    with open(log, "a") as f:  # written while the server is down
        f.write("".join(f"{i} 0 x\n" for i in range(1000, 2000)))
    started = time.monotonic()
    srv = Server(log, tmp, *flags)
    listening = time.monotonic() - started
    sock = socket.socket()
    sock.connect(("127.0.0.1", srv.port))
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: localhost\r\nLast-Event-ID: {last_id}\r\n\r\n".encode()
    )
    buf, first_at = b"", None
    while b'"1999 0 x"' not in buf:
        buf += sock.recv(65536)
        if first_at is None and b"event: log" in buf:
            first_at = time.monotonic() - started
    sock.close()
    seqs = [int(s) for s, _ in SSE_LINES.stamps.findall(buf)]
    cleanup()
    return {
        "restart_to_listening_s": listening,
        "restart_to_first_resumed_line_s": first_at,
        "lost": len(set(range(1000, 2000)) - set(seqs)),
        "duplicated": len(seqs) - len(set(seqs)),
        "resets": buf.count(b"event: reset"),
    }


def timed_get(url: str) -> tuple[Json, float]:
    """A JSON GET and how long it took, in ms."""
    import urllib.request

    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as resp:
        body = json.load(resp)
    return body, (time.perf_counter() - started) * 1000


def numbered(first: int, count: int, line_bytes: int) -> bytes:
    """Lines `first`.. of `line_bytes` bytes each, numbered at their start."""
    return b"".join(
        b"%d 0 %s\n" % (i, b"x" * (line_bytes - 4 - len(str(i))))
        for i in range(first, first + count)
    )


def bench_lookup(tmp: str, file_mb: int = 512, files: int = 4) -> Json:
    """Scroll-back and jump-to-moment in a 2 GiB log with 3 rotated siblings: the time of
    /api/logs for 1,000 lines at the newest end and deep in each rotated file."""
    log = fresh(tmp, "big.log")
    srv = Server(log, tmp)
    base = f"http://127.0.0.1:{srv.port}/api/logs?source=app"

    def get(query: str) -> tuple[Json, float]:
        return timed_get(base + query)

    try:
        line_bytes, seq, moments = 100, 0, []
        per_file = file_mb * 1024 * 1024 // line_bytes
        for k in range(files):
            moments.append(time.time())
            with open(log, "ab") as f:
                for start in range(seq, seq + per_file, 100_000):
                    f.write(numbered(start, min(100_000, seq + per_file - start), line_bytes))
            seq += per_file
            # The server reads the file to its end; then it is rotated away by rename.
            while not get("&limit=1")[0]["events"][-1]["lines"][-1].startswith(f"{seq - 1} "):
                time.sleep(0.2)
            if k < files - 1:
                os.rename(log, f"{log}.{files - 1 - k}")
        timings: dict[str, list[float]] = {"scroll_back": [], "jump": []}
        for at in [*moments[1:], time.time()]:  # a moment in each file but the first, and now
            for _ in range(3):
                page, ms = get(f"&at={at - 1:.3f}&before=500&after=500")
                timings["jump"].append(ms)
                back, ms = get(f"&before={page['at'] or page['events'][-1]['id']}&limit=1000")
                timings["scroll_back"].append(ms)
                assert sum(len(e["lines"]) for e in back["events"]) >= 1000
        return {
            "total_mb": file_mb * files,
            "files": files,
            **{f"{k}_ms_median": sorted(v)[len(v) // 2] for k, v in timings.items()},
            **{f"{k}_ms_max": max(v) for k, v in timings.items()},
        }
    finally:
        cleanup()


def bench_older(tmp: str, file_mb: int = 512, files: int = 4, gz_mb: int = 64) -> Json:
    """Scroll-back past the hub's records: a 2 GiB log in 4 files (3 rotated, written before
    the server started, so no record covers them) and a gzip-compressed older one: the time
    of /api/logs for 1,000 lines from positions deep in each."""
    import gzip

    log = fresh(tmp, "old.log")
    line_bytes = 100
    per_file = file_mb * 1024 * 1024 // line_bytes

    def lines(first: int, count: int) -> bytes:
        return numbered(first, count, line_bytes)

    gz_lines = gz_mb * 1024 * 1024 // line_bytes
    with gzip.open(f"{log}.{files}.gz", "wb", compresslevel=1) as gz:
        for start in range(0, gz_lines, 100_000):
            gz.write(lines(start, min(100_000, gz_lines - start)))
    for k in range(files):  # app.log.3 is the oldest plain one; app.log the live one
        name = log if k == files - 1 else f"{log}.{files - 1 - k}"
        with open(name, "wb") as f:
            for start in range(0, per_file, 100_000):
                f.write(lines(gz_lines + k * per_file + start, min(100_000, per_file - start)))
    srv = Server(log, tmp)
    base = f"http://127.0.0.1:{srv.port}/api/logs?source=app&limit=1000"

    def get(query: str) -> tuple[Json, float]:
        return timed_get(base + query)

    try:
        timings: dict[str, list[float]] = {"plain": [], "gzip": []}
        first_of = {}  # the first line's number in each file
        for k in range(files):
            name = log if k == files - 1 else f"{log}.{files - 1 - k}"
            first_of[name] = gz_lines + k * per_file
        for name, first in first_of.items():
            st = os.stat(name)
            for depth in (0.9, 0.5, 0.1):  # a line's start, 10 %, 50 %, 90 % back
                line = int(per_file * depth)
                page, ms = get(f"&before=file-{st.st_dev}-{st.st_ino}-{line * line_bytes}")
                got = [x for e in page["events"] for x in e["lines"]]
                assert len(got) == 1000 and got[-1].startswith(f"{first + line - 1} "), got[-1]
                timings["plain"].append(ms)
        st = os.stat(f"{log}.{files}.gz")
        for depth in (1.0, 0.5, 0.1):
            line = int(gz_lines * depth)
            page, ms = get(f"&before=file-{st.st_dev}-{st.st_ino}-{line * line_bytes}")
            got = [x for e in page["events"] for x in e["lines"]]
            assert len(got) == 1000 and got[-1].startswith(f"{line - 1} "), got[-1]
            timings["gzip"].append(ms)
        return {
            "total_mb": file_mb * files,
            "files": files,
            "gz_mb": gz_mb,
            **{f"{k}_ms_median": sorted(v)[len(v) // 2] for k, v in timings.items()},
            **{f"{k}_ms_max": max(v) for k, v in timings.items()},
        }
    finally:
        cleanup()


def bench_role(*args: str) -> subprocess.Popen[str]:
    return script_role(__file__, *args)


def table(r: Json) -> str:
    alone, busy = r["isolation"]["alone"], r["isolation"]["with a stuck and a slow client"]
    cu, rs, lk, od = r["catch_up"], r["restart"], r["lookup"], r["older"]
    rows = [
        ("healthy client p50 / p99 ms, alone", f"{alone['p50_ms']:.3f} / {alone['p99_ms']:.3f}"),
        (
            "... with a stuck and a 100 KB/s client, 5 MB/s burst on another source",
            f"{busy['p50_ms']:.3f} / {busy['p99_ms']:.3f}",
        ),
        (
            "catch-up from the file to one client: lines/s (median of 3)",
            f"{cu['lines_per_s']:,.0f} ({cu['lines']:,} of {cu['lines_written']:,}, "
            f"in order: {cu['in_order']}, gaps: {cu['gaps']})",
        ),
        (
            "kill -9, restart: to listening / to the resumed client's first line s",
            f"{rs['restart_to_listening_s']:.2f} / {rs['restart_to_first_resumed_line_s']:.2f}",
        ),
        (
            "lines written while down: lost / duplicated / resets",
            f"{rs['lost']} / {rs['duplicated']} / {rs['resets']}",
        ),
        (
            f"{lk['total_mb'] // 1024} GiB in {lk['files']} files: scroll back 1,000 lines, ms",
            f"median {lk['scroll_back_ms_median']:.1f}, max {lk['scroll_back_ms_max']:.1f}",
        ),
        (
            "... jump to a moment, 500 lines each side, ms",
            f"median {lk['jump_ms_median']:.1f}, max {lk['jump_ms_max']:.1f}",
        ),
        (
            f"past the records: {od['total_mb'] // 1024} GiB in {od['files']} files, "
            "scroll back 1,000 lines, ms",
            f"median {od['plain_ms_median']:.1f}, max {od['plain_ms_max']:.1f}",
        ),
        (
            f"... in a gzip-compressed file ({od['gz_mb']} MiB of lines), ms",
            f"median {od['gzip_ms_median']:.1f}, max {od['gzip_ms_max']:.1f}",
        ),
    ]
    return plain_table(rows)


def main() -> None:
    if sys.argv[1:2] == ["role"]:
        what, *a = sys.argv[2:]
        if what == "stuck":
            sock = open_stream(int(a[0]), a[1], rcvbuf=4096)
            print("ready", flush=True)
            time.sleep(float(a[2]))
            sock.close()
            out: Json = {}
        elif what == "slow":
            out = slow_reader(int(a[0]), a[1], int(a[2]), float(a[3]))
        elif what == "burst":
            out = burst_writer(a[0], float(a[1]), float(a[2]))
        else:
            out = catch_up_reader(int(a[0]), a[1], int(a[2]), a[3])
        print(json.dumps(out), flush=True)
        return
    only = {"--lookup": bench_lookup, "--older": bench_older}.get(
        sys.argv[1] if sys.argv[1:] else ""
    )
    with tempfile.TemporaryDirectory() as tmp:
        if only:
            print(json.dumps(only(tmp)))
            return
        results = {
            "isolation": bench_isolation(tmp),
            "catch_up": median_run(lambda: bench_catch_up(tmp, 1_000_000)),
            "restart": bench_restart(tmp),
            "lookup": bench_lookup(tmp),
            "older": bench_older(tmp),
        }
    print(table(results))
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    Path(ROOT, "bench", "results", f"history-{stamp}.json").write_text(json.dumps(results))


if __name__ == "__main__":
    main()
