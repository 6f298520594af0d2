"""Hostile clients against a real server, measured (issue #13's figures): a healthy stream's
log latency while 5,000 /tail streams are attempted, RSS and open connections with 2,000
idle sockets before and after the idle timeout, and RSS with 100 clients that request
/api/state and never read it.

    .venv/bin/python bench/hostile.py          # ~2 min; prints a table, saves JSON

Everything binds 127.0.0.1. The server's open-files limit is raised to 65536, as the systemd
unit sets it, so its own caps (not the shell's ulimit) are what the table shows.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
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

NOFILE = 65536


def raise_nofile() -> None:
    """Children inherit it: the server, and the roles holding thousands of sockets."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = NOFILE if hard == resource.RLIM_INFINITY else min(NOFILE, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))


def hold(port: int, n: int, request: bytes, hold_s: float, rcvbuf: int = 0) -> Json:
    """Open n connections, send `request` on each (none if empty), read nothing; after
    hold_s, count how each was answered and whether the server has closed it."""
    socks = []
    for _ in range(n):
        s = socket.socket()
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.connect(("127.0.0.1", port))
        if request:
            s.sendall(request)
        socks.append(s)
    print("ready", flush=True)
    time.sleep(hold_s)
    answers: dict[str, int] = {}
    for s in socks:
        s.setblocking(False)
        try:
            head = s.recv(64)
            status = head.split(b" ", 2)[1].decode() if head else "closed"
        except BlockingIOError:
            status = "open, no answer"
        except ConnectionResetError:
            status = "reset"
        answers[status] = answers.get(status, 0) + 1
        s.close()
    return {"answers": answers}


def rss_mib(srv: Server) -> float:
    return float(srv.ps.memory_info().rss) / 2**20


def connections(srv: Server) -> int:
    return len(srv.ps.net_connections(kind="tcp")) - 1  # less the listening socket


def bench_tail_flood(tmp: str) -> Json:
    """The healthy client connects first: a loopback flood may take every stream the total
    cap allows (loopback is not capped per address), never one already open."""
    out: Json = {}
    seconds, rate = 15, 100
    for label, attempts in (("alone", 0), ("5000 /tail attempts", 5000)):
        log = fresh(tmp, f"flood{attempts}.log")
        srv = Server(log, tmp)
        try:
            rss0 = rss_mib(srv)
            n = seconds * rate
            path = "/events?types=log&sources=app"
            sse = role("sse", "127.0.0.1", str(srv.port), path, str(n), str(seconds + 60), "60")
            wait_ready(sse)
            flood = None
            if attempts:
                req = b"GET /tail/app HTTP/1.1\r\nHost: localhost\r\n\r\n"
                flood = hostile_role("hold", str(srv.port), str(attempts), req.decode(), "25")
                wait_ready(flood)
            time.sleep(0.5)
            last_json(role("write-paced", log, str(rate), str(seconds)), seconds + 30)
            result = last_json(sse, 60)
            result["rss_mib"] = rss_mib(srv) - rss0
            if flood is not None:
                result["flood"] = last_json(flood, 60)
            out[label] = result
        finally:
            cleanup()
    return out


def bench_idle(tmp: str) -> Json:
    srv = Server(fresh(tmp, "idle.log"), tmp)
    try:
        time.sleep(1)
        rss0 = rss_mib(srv)
        idle = hostile_role("hold", str(srv.port), "2000", "", "20")
        wait_ready(idle)
        time.sleep(1)
        during = {"rss_mib": rss_mib(srv), "connections": connections(srv)}
        end = time.monotonic() + 18
        while connections(srv) > 0 and time.monotonic() < end:
            time.sleep(0.5)
        after = {"rss_mib": rss_mib(srv), "connections": connections(srv)}
        return {
            "rss_before_mib": rss0,
            "during": during,
            "after_timeout": after,
            "clients": last_json(idle, 60),
        }
    finally:
        cleanup()


def bench_unread_state(tmp: str) -> Json:
    log = fresh(tmp, "state.log")
    config = Path(tmp, "state.toml")
    config.write_text("[stream]\nsend_timeout_s = 10\n")
    srv = Server(log, tmp, "--config", str(config))
    try:
        with open(log, "a") as f:  # fill the replay buffer: /api/state is then a few MB
            for i in range(40):
                f.write("".join(f"line {i} {j} {'x' * 90}\n" for j in range(1000)))
        time.sleep(3)
        rss0 = rss_mib(srv)
        req = b"GET /api/state HTTP/1.1\r\nHost: localhost\r\n\r\n"
        unread = hostile_role("hold", str(srv.port), "100", req.decode(), "15", "4096")
        wait_ready(unread)
        time.sleep(3)
        during = {"rss_mib": rss_mib(srv) - rss0, "connections": connections(srv)}
        result = last_json(unread, 60)
        after = {"rss_mib": rss_mib(srv) - rss0, "connections": connections(srv)}
        return {"during": during, "after_deadline": after, "clients": result}
    finally:
        cleanup()


def hostile_role(*args: str) -> subprocess.Popen[str]:
    return script_role(__file__, *args)


def table(r: Json) -> str:
    alone, flood = r["tail_flood"]["alone"], r["tail_flood"]["5000 /tail attempts"]
    idle, unread = r["idle"], r["unread_state"]

    def lat(x: Json) -> str:
        return f"{x['p50_ms']:.2f} / {x['p99_ms']:.2f} / {x['max_ms']:.1f} ms, {x['lost']} lost"

    rows = [
        ("healthy /events client, 100 lines/s: p50 / p99 / max", lat(alone), ""),
        (
            "... while 5,000 /tail streams are attempted (never read)",
            lat(flood),
            ", ".join(f"{n} x {k}" for k, n in flood["flood"]["answers"].items()),
        ),
        (
            "2,000 idle connections: RSS growth, open after the idle timeout",
            f"+{idle['during']['rss_mib'] - idle['rss_before_mib']:.1f} MiB, "
            f"{idle['after_timeout']['connections']} open",
            f"{idle['during']['connections']} open at first",
        ),
        (
            "100 clients that never read /api/state: RSS growth, open after the deadline",
            f"+{unread['during']['rss_mib']:.1f} MiB, "
            f"{unread['after_deadline']['connections']} open",
            "send_timeout_s = 10",
        ),
    ]
    return plain_table(rows)


def main() -> None:
    if sys.argv[1:2] == ["role"]:
        _, _, what, port, n, request, hold_s, *rest = sys.argv
        assert what == "hold"
        rcvbuf = int(rest[0]) if rest else 0
        print(json.dumps(hold(int(port), int(n), request.encode(), float(hold_s), rcvbuf)))
        return
    raise_nofile()
    with tempfile.TemporaryDirectory() as tmp:
        results = {
            "tail_flood": bench_tail_flood(tmp),
            "idle": bench_idle(tmp),
            "unread_state": bench_unread_state(tmp),
        }
    print(table(results))
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    Path(ROOT, "bench", "results", f"hostile-{stamp}.json").write_text(json.dumps(results))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
