"""Many hosts on Redis Streams (issue #16), measured with a real redis-server, real agents,
real dashboard servers, and a fleet simulator that publishes N hosts' worth of real-shaped
events (a real metrics sample each second per host, log lines on some) the way agents do.

    .venv/bin/python bench/fleet.py            # ~3 minutes; prints a table, saves JSON
    .venv/bin/python bench/fleet.py --hosts 100 --seconds 10   # smaller, quicker

Rows: the agent's publishing rate; the hop through Redis (a line written on a host to the
frame an SSE client of a dashboard reads), beside the same line read from `serve` directly
and from `tail -F` in the same run, with 50 hosts publishing; one dashboard following 500
hosts with the fleet page open (its CPU and RSS, the page's frames); a client moved from a
killed dashboard to another (resume time, lost, repeated); an idle agent beside an idle serve.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).parent))
from procs import line  # noqa: E402
from run import (  # noqa: E402
    PY,
    ROOT,
    Json,
    cleanup,
    f,
    fresh,
    has_chromium,
    last_json,
    page_role,
    plain_table,
    role,
    script_role,
    spawn,
    wait_ready,
)

PROBE_WAIT_S = 6.0


def start_redis(tmp: str) -> str:
    """A redis-server on a unix socket in `tmp`; its URL."""
    sock = os.path.join(tmp, "redis.sock")
    argv = ["redis-server", "--port", "0", "--unixsocket", sock, "--save", "", "--dir", tmp]
    spawn(subprocess.Popen([*argv, "--loglevel", "warning"], stdout=subprocess.DEVNULL))
    end = time.monotonic() + 10
    while not os.path.exists(sock):
        if time.monotonic() > end:
            raise RuntimeError("redis-server did not start")
        time.sleep(0.02)
    return f"unix://{sock}"


class Proc:
    """A `sse-monitor` subprocess (agent or serve), its stderr in a file."""

    def __init__(self, tmp: str, *args: str, wait_for: str) -> None:
        self.err = open(os.path.join(tmp, f"p-{time.monotonic_ns()}.err"), "w+")
        cmd = [PY, "-m", "monitor", *args]
        self.proc = spawn(subprocess.Popen(cmd, stderr=self.err, stdout=subprocess.DEVNULL))
        self.ps = psutil.Process(self.proc.pid)
        end = time.monotonic() + 20
        while time.monotonic() < end:
            text = Path(self.err.name).read_text()
            if m := re.search(wait_for, text):
                self.match = m
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"{args[0]} did not start: {Path(self.err.name).read_text()[-2000:]}")

    def cpu_s(self) -> float:
        t = self.ps.cpu_times()
        return float(t.user + t.system)

    def rss_mb(self) -> float:
        return float(self.ps.memory_info().rss) / 2**20


def dashboard(tmp: str, redis_url: str) -> tuple[Proc, int]:
    p = Proc(
        tmp,
        "serve",
        "--port",
        "0",
        "--redis",
        redis_url,
        "--no-publish",
        wait_for=r"listening on http://127\.0\.0\.1:(\d+)",
    )
    return p, int(p.match.group(1))


def agent(tmp: str, redis_url: str, name: str, log: str) -> Proc:
    state = os.path.join(tmp, f"state-{name}")
    return Proc(
        tmp,
        "agent",
        "--redis",
        redis_url,
        "--name",
        name,
        "--log",
        f"app={log}",
        "--state-dir",
        state,
        wait_for="redis: publishing host",
    )


def wait_hosts(port: int, n: int, timeout: float = 30) -> None:
    import urllib.request

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/hosts", timeout=5) as r:
            if len(json.load(r)["hosts"]) >= n:
                return
        time.sleep(0.2)
    raise RuntimeError(f"the dashboard did not list {n} hosts")


# --- roles (separate processes, so no measured loop is shared) ---


def simulate(
    redis_url: str, hosts: int, seconds: float, loud: int, lines_s: int, probe: int = 0
) -> Json:
    """`hosts` hosts' metrics at 1 Hz each (spread over the second), `lines_s` lines/s on the
    first `loud` of them, written as agents write them (fleet/publisher.py's fields). With
    `probe`, a host "probe" gets that many lines in all, 100 a second, each an XADD of its
    own stamped just before it is sent (procs.py's line format), after a second's wait."""
    import redis

    sys.path.insert(0, str(ROOT))
    from monitor.fleet.keys import events_key, metrics_key, sticky_key
    from monitor.sources.sampler import MetricsSampler

    client = redis.Redis.from_url(redis_url)
    sample = MetricsSampler(1.0).measure()
    chart = {k: v for k, v in sample.items() if k != "processes"}
    names = [f"sim{i:03d}" for i in range(hosts)]
    for name in names:
        hello = {
            "host": name,
            "version": "sim",
            "interval_s": 1.0,
            "sources": [{"name": "app", "kind": "log"}],
        }
        client.hset(sticky_key(name), "hello", json.dumps(hello))
    if probe:
        threading.Thread(target=send_probe, args=(redis_url, probe), daemon=True).start()
    print("ready", flush=True)
    start, seq, written, late = time.monotonic(), 0, 0, 0
    tick = 0
    while time.monotonic() - start < seconds:
        due = start + tick * 0.1
        if (d := due - time.monotonic()) > 0:
            time.sleep(d)
        elif d < -0.05:
            late += 1
        pipe = client.pipeline(transaction=False)
        for name in names[tick % 10 :: 10]:  # a tenth of the hosts every 100 ms
            sample["cpu"]["percent"] = chart["cpu"]["percent"] = random.uniform(0, 100)
            sample["ts"] = chart["ts"] = time.time()
            seq += 1
            pipe.xadd(
                events_key(name),
                {"t": "metrics", "i": f"1-{seq}", "d": json.dumps(sample)},
                maxlen=3000,
                approximate=True,
            )
            pipe.xadd(
                metrics_key(name),
                {"t": "metrics", "d": json.dumps(chart)},
                maxlen=900,
                approximate=True,
            )
            written += 1
        for name in names[:loud]:
            n = lines_s // 10
            payload = {
                "source": "app",
                "file": "/var/log/app.log",
                "lines": [f"{time.time():.6f} sim line {seq} {i}" for i in range(n)],
            }
            seq += 1
            pipe.xadd(
                events_key(name),
                {"t": "log", "s": "app", "i": f"1-{seq}", "d": json.dumps(payload)},
                maxlen=3000,
                approximate=True,
            )
            written += 1
        pipe.execute()
        tick += 1
    return {"entries": written, "seconds": time.monotonic() - start, "late_ticks": late}


def send_probe(redis_url: str, n: int, rate: float = 100) -> None:
    """Host "probe": n log events of one stamped line each, at `rate` a second."""
    import redis

    from monitor.fleet.keys import events_key, metrics_key, sticky_key

    client = redis.Redis.from_url(redis_url)
    hello = {"host": "probe", "interval_s": 1.0, "sources": [{"name": "app", "kind": "log"}]}
    client.hset(sticky_key("probe"), "hello", json.dumps(hello))
    client.xadd(metrics_key("probe"), {"t": "metrics", "d": json.dumps({"ts": time.time()})})
    time.sleep(PROBE_WAIT_S)  # the dashboard finds the host and the reader connects
    start = time.perf_counter()
    for seq in range(n):
        if (d := start + seq / rate - time.perf_counter()) > 0:
            time.sleep(d)
        text = line(seq, time.time_ns(), 100).decode().rstrip("\n")
        body = json.dumps({"source": "app", "lines": [text]})
        client.xadd(events_key("probe"), {"t": "log", "i": f"1-{seq}", "s": "app", "d": body})


def failover_client(
    ports: list[int], host: str, total: int, retry_ms: int, deadline: float
) -> Json:
    """Reads `host`'s log lines (`<seq> <stamp>`) from the first dashboard; when its stream
    drops, waits `retry_ms` as a browser would and resumes from the next with its last id.
    Counts lines lost and repeated, and how long each resume took past the retry delay."""
    import http.client

    seen: set[int] = set()
    dup = 0
    last_id = ""
    resumes: list[float] = []
    end = time.monotonic() + deadline
    which = 0
    dropped_at = None
    print("ready", flush=True)
    while len(seen) < total and time.monotonic() < end:
        port = ports[which % len(ports)]
        headers = {"Accept": "text/event-stream"}
        if last_id:
            headers["Last-Event-ID"] = last_id
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", f"/events?host={host}&types=log", headers=headers)
            resp = conn.getresponse()
            buf = b""
            while True:
                data = resp.read1(1 << 16)
                if not data:
                    break
                buf += data
                *events, buf = buf.split(b"\n\n")
                for ev in events:
                    if b"event: log" not in ev:
                        continue
                    if dropped_at is not None:
                        resumes.append(time.monotonic() - dropped_at - retry_ms / 1000)
                        dropped_at = None
                    for field in ev.split(b"\n"):
                        if field.startswith(b"id: "):
                            last_id = field[4:].decode()
                        elif field.startswith(b"data: "):
                            for text in json.loads(field[6:])["lines"]:
                                n = int(text.split()[0])
                                dup += n in seen
                                seen.add(n)
        except (OSError, http.client.HTTPException):
            pass
        dropped_at = dropped_at or time.monotonic()
        which += 1
        time.sleep(retry_ms / 1000)
    lost = total - len(seen)
    return {"received": len(seen), "lost": lost, "repeated": dup, "resume_s": resumes}


def main_role(argv: list[str]) -> None:
    kind, *a = argv
    if kind == "simulate":
        out = simulate(a[0], int(a[1]), float(a[2]), int(a[3]), int(a[4]), int(a[5]))
    elif kind == "failover":
        ports = [int(p) for p in a[0].split(",")]
        out = failover_client(ports, a[1], int(a[2]), int(a[3]), float(a[4]))
    else:
        raise SystemExit(f"unknown role {kind}")
    print(json.dumps(out), flush=True)


# --- the measurements ---


def bench_publish(tmp: str, redis_url: str, n: int = 100_000) -> Json:
    """The agent's publishing path alone: a hub and a RedisPublisher in one process, events
    published as fast as the publisher takes them."""
    sys.path.insert(0, str(ROOT))
    from monitor.config import RedisConfig
    from monitor.fleet.publisher import RedisPublisher
    from monitor.hub.memory import MemoryHub

    async def run() -> Json:
        hub = MemoryHub(max_events=20_000, max_bytes=64 * 2**20)
        pub = RedisPublisher(RedisConfig(url=redis_url), "pubbench", {"host": "pubbench"}, 900)
        task = asyncio.create_task(pub.run(hub))
        while not pub.is_connected:
            await asyncio.sleep(0.01)
        line = "x" * 100
        t0, cpu0 = time.perf_counter(), time.process_time()
        for i in range(n):
            hub.publish("log", {"source": "app", "lines": [f"{i} {line}"]}, "app")
            if i % 1000 == 999:
                while pub.published < i - 5000:  # keep within the hub's ring
                    await asyncio.sleep(0)
        while pub.published < n:
            await asyncio.sleep(0.001)
        dt, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        task.cancel()
        return {"events": n, "events_per_s": n / dt, "cpu_us_per_event": cpu / n * 1e6}

    return asyncio.run(run())


def bench_hop(tmp: str, redis_url: str, hosts: int, seconds: float, rate: int = 100) -> Json:
    """The hop through Redis: an XADD (stamped just before it is sent) to the frame an SSE
    client of a dashboard reads, while `hosts` hosts publish. And a line written on a host,
    read by an SSE client through a real agent, Redis and the dashboard; from `serve` on that
    host directly; and by tail -F, all in the same run."""
    n = int(rate * seconds)
    sim = script_role(
        __file__, "simulate", redis_url, str(hosts - 2), str(seconds + 30), "0", "0", str(n)
    )
    wait_ready(sim)
    log = fresh(tmp, "hop.log")
    agent(tmp, redis_url, "real", log)
    dash, port = dashboard(tmp, redis_url)
    wait_hosts(port, hosts)
    direct = Proc(
        tmp,
        "serve",
        "--port",
        "0",
        "--log",
        f"app={log}",
        wait_for=r"listening on http://127\.0\.0\.1:(\d+)",
    )
    deadline = str(seconds + 40)
    readers = {
        "hop": role(
            "sse", "127.0.0.1", str(port), "/events?host=probe&types=log", str(n), deadline, "15"
        ),
        "agent": role(
            "sse", "127.0.0.1", str(port), "/events?host=real&types=log", str(n), deadline, "15"
        ),
        "direct": role(
            "sse", "127.0.0.1", direct.match.group(1), "/events?types=log", str(n), deadline, "15"
        ),
        "tail": role("tail", log, str(n), deadline, "15"),
    }
    for r in readers.values():
        wait_ready(r)
    time.sleep(1)
    c0 = dash.cpu_s()
    last_json(role("write-paced", log, str(rate), str(seconds)), seconds + 30)
    out: Json = {k: last_json(r, seconds + 60) for k, r in readers.items()}
    out["dashboard_cpu_pct"] = (dash.cpu_s() - c0) / seconds * 100
    out["hosts"], out["rate"] = hosts, rate
    cleanup()
    return out


def bench_scale(tmp: str, redis_url: str, hosts: int, seconds: float) -> Json:
    """One dashboard following `hosts` hosts (1 Hz metrics each, 20 lines/s on 10), with
    the fleet page open (in Chromium if installed, else an SSE client of /fleet/events)."""
    sim = script_role(
        __file__, "simulate", redis_url, str(hosts), str(seconds + 60), "10", "20", "0"
    )
    wait_ready(sim)
    dash, port = dashboard(tmp, redis_url)
    wait_hosts(port, hosts, 60)
    if has_chromium():
        page, kind = page_role(port, seconds), "fleet page in Chromium"
    else:
        page = role(
            "sse", "127.0.0.1", str(port), "/fleet/events", "1000000000", str(seconds), "10"
        )
        kind = "SSE client of /fleet/events"
    wait_ready(page)
    time.sleep(2)
    c0, t0 = dash.cpu_s(), time.monotonic()
    time.sleep(seconds)
    cpu = (dash.cpu_s() - c0) / (time.monotonic() - t0) * 100
    out: Json = {"hosts": hosts, "client": kind, "cpu_pct": cpu, "rss_mb": dash.rss_mb()}
    if has_chromium():
        result = last_json(page, seconds + 60)
        out["page"] = {
            k: result[k]
            for k in (
                "frames_per_s",
                "busy_pct",
                "script_pct",
                "recalcstyle_pct",
                "layout_pct",
                "long_tasks",
                "dom_elements",
                "errors",
            )
        }
        out["page"]["dom_elements"] = [min(result["dom_elements"]), max(result["dom_elements"])]
    cleanup()
    return out


def bench_failover(tmp: str, redis_url: str, seconds: float = 12, rate: int = 50) -> Json:
    """A client reading a host from dashboard A; A is killed; it resumes from B."""
    log = fresh(tmp, "failover.log")
    agent(tmp, redis_url, "moved", log)
    dash_a, port_a = dashboard(tmp, redis_url)
    _dash_b, port_b = dashboard(tmp, redis_url)
    wait_hosts(port_a, 1)
    wait_hosts(port_b, 1)
    total = int(rate * seconds)
    client = script_role(
        __file__, "failover", f"{port_a},{port_b}", "moved", str(total), "2000", str(seconds + 30)
    )
    wait_ready(client)
    time.sleep(0.5)
    writer = role("write-paced", log, str(rate), str(seconds))
    time.sleep(seconds / 3)
    dash_a.proc.kill()
    last_json(writer, seconds + 30)
    out = last_json(client, seconds + 40)
    out["retry_ms"] = 2000
    cleanup()
    return out


def bench_idle(tmp: str, redis_url: str, seconds: float) -> Json:
    """An agent and a serve on the same idle host (1 Hz metrics, one quiet log), measured
    over the same window, side by side: values under 1 % of a core differ by less than a
    30 s window's noise when measured one after the other."""
    log = fresh(tmp, "idle.log")
    procs = {
        "agent": agent(tmp, redis_url, "idle", log),
        "serve": Proc(tmp, "serve", "--port", "0", "--log", f"app={log}", "--state-dir",
                      os.path.join(tmp, "idle-serve"), wait_for="listening on"),
    }  # fmt: skip
    time.sleep(3)
    c0, t0 = {k: p.cpu_s() for k, p in procs.items()}, time.monotonic()
    time.sleep(seconds)
    wall = time.monotonic() - t0
    out: Json = {
        k: {"cpu_pct": (p.cpu_s() - c0[k]) / wall * 100, "rss_mb": p.rss_mb()}
        for k, p in procs.items()
    }
    cleanup()
    return out


def table(r: Json) -> str:
    pub, hop, scale, fo, idle = r["publish"], r["hop"], r["scale"], r["failover"], r["idle"]
    rows = [("measure", "result", "target")]
    rows.append(
        (
            f"agent publishing ({pub['events']:,} log events)",
            f"{pub['events_per_s']:,.0f} events/s, {pub['cpu_us_per_event']:.0f} µs CPU each",
            ">= 20,000 events/s",
        )
    )
    for key, label in (
        ("hop", "Redis hop: XADD -> SSE client of a dashboard"),
        ("agent", "line written -> agent -> Redis -> dashboard -> client"),
        ("direct", "line written -> serve -> client (no Redis)"),
        ("tail", "line written -> tail -F (baseline)"),
    ):
        x = hop[key]
        rows.append(
            (
                f"{label}, {hop['rate']}/s, {hop['hosts']} hosts",
                f"p50 {f(x['p50_ms'])} ms, p99 {f(x['p99_ms'])} ms, "
                f"max {f(x['max_ms'], '.1f')} ms, lost {x['lost']}",
                "p50 <= 2 ms, p99 <= 10 ms" if key == "hop" else "",
            )
        )
    rows.append(
        (
            f"dashboard following {scale['hosts']} hosts, {scale['client']}",
            f"{scale['cpu_pct']:.1f} % of a core, {scale['rss_mb']:.0f} MiB RSS",
            "<= 25 %, <= 150 MiB",
        )
    )
    if "page" in scale:
        pg = scale["page"]
        rows.append(
            (
                "  the fleet page",
                f"{pg['frames_per_s']:.0f} frames/s, main thread {pg['busy_pct']:.0f} % busy, "
                f"{pg['long_tasks']} long tasks, DOM {pg['dom_elements'][0]}-"
                f"{pg['dom_elements'][1]} elements",
                "60 frames/s",
            )
        )
    resume = fo["resume_s"]
    rows.append(
        (
            "client moved from a killed dashboard to another",
            f"resumed {max(resume) * 1000:.0f} ms past its retry delay"
            f" ({fo['retry_ms']} ms), lost {fo['lost']}, repeated {fo['repeated']}"
            if resume
            else f"never resumed (lost {fo['lost']})",
            "<= retry + 100 ms, 0, 0",
        )
    )
    rows.append(
        (
            "idle: serve / agent",
            f"{idle['serve']['cpu_pct']:.2f} / "
            f"{idle['agent']['cpu_pct']:.2f} % of a core, {idle['serve']['rss_mb']:.1f} / "
            f"{idle['agent']['rss_mb']:.1f} MiB",
            "agent within 10 % of serve",
        )
    )
    return plain_table(rows)


def main() -> None:
    if sys.argv[1:2] == ["role"]:
        main_role(sys.argv[2:])
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=500)
    ap.add_argument("--seconds", type=float, default=30)
    args = ap.parse_args()
    if not shutil.which("redis-server"):
        raise SystemExit("redis-server missing: make system-deps")
    results: Json = {}
    try:
        runs: list[tuple[str, Callable[[str, str], Json]]] = [
            ("publish", lambda t, u: bench_publish(t, u)),
            ("hop", lambda t, u: bench_hop(t, u, 50, args.seconds / 2)),
            ("scale", lambda t, u: bench_scale(t, u, args.hosts, args.seconds)),
            ("failover", lambda t, u: bench_failover(t, u)),
            ("idle", lambda t, u: bench_idle(t, u, max(60, args.seconds * 2))),
        ]
        for name, run in runs:
            with tempfile.TemporaryDirectory() as tmp:
                url = start_redis(tmp)
                results[name] = run(tmp, url)
                cleanup()
    finally:
        cleanup()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    Path(ROOT, "bench", "results", f"fleet-{stamp}.json").write_text(json.dumps(results))
    print(table(results))


if __name__ == "__main__":
    main()
