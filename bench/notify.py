"""Notifications (issue #15), measured: how long from the log line that fires a rule to its
webhook arriving at a receiver; and a healthy client's log latency while a receiver hangs
on every delivery (and alerts keep firing), beside the same run without notifications.

    .venv/bin/python bench/notify.py          # ~1 minute; prints a table, saves JSON
"""

from __future__ import annotations

import json
import os
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

FIRINGS = 8
# One rule per firing: a rule firing again within a minute would be damped as flapping.
RULES = "".join(
    f'[[alerts]]\nname = "boom{i}"\nsource = "boom"\npattern = "BOOM{i}$"\nwindow = "1s"\n'
    for i in range(FIRINGS)
)


def receiver(mode: str, seconds: float) -> Json:
    """A webhook receiver on a free port: `ok` answers at once, `hang` never. Prints its
    port, then (at the end) the wall time, rule and state of each POST."""
    import asyncio

    from aiohttp import web

    arrived: list[tuple[float, str, str]] = []  # when, rule, state

    async def hook(request: web.Request) -> web.Response:
        now = time.time()
        body = await request.json()
        arrived.append((now, body["rule"], body["state"]))
        if mode == "hang":
            await asyncio.sleep(3600)
        return web.Response()

    async def serve() -> None:
        app = web.Application()
        app.router.add_post("/hook", hook)
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        print(f"ready {runner.addresses[0][1]}", flush=True)
        await asyncio.sleep(seconds)
        await runner.cleanup()

    asyncio.run(serve())
    return {"arrived": arrived}


def start_receiver(mode: str, seconds: float) -> tuple[subprocess.Popen[str], int]:
    proc = script_role(__file__, "receiver", mode, str(seconds))
    assert proc.stdout is not None
    ready = proc.stdout.readline().split()
    assert ready[0] == "ready", ready
    return proc, int(ready[1])


def config(tmp: str, port: int | None) -> str:
    path = os.path.join(tmp, f"c-{time.monotonic_ns()}.toml")
    hook = (
        f'[[notify]]\nname = "hook"\nkind = "webhook"\nurl = "http://127.0.0.1:{port}/hook"\n'
        'timeout = "10s"\n'
        if port
        else ""
    )
    Path(path).write_text(RULES + hook)
    return path


def bench_delivery(tmp: str) -> Json:
    """Line written -> webhook received, for FIRINGS rules firing one after the other."""
    proc, port = start_receiver("ok", FIRINGS + 10)
    boom = fresh(tmp, "boom.log")
    Server(fresh(tmp, "app.log"), tmp, "--config", config(tmp, port), "--log", f"boom={boom}")
    try:
        written = []
        time.sleep(1.5)
        for i in range(FIRINGS):
            written.append(time.time())
            with open(boom, "a") as f:
                f.write(f"BOOM{i}\n")
            time.sleep(1)
        firing = {rule: at for at, rule, state in last_json(proc, FIRINGS + 20)["arrived"]
                  if state == "firing"}  # fmt: skip
        ms = sorted((firing[f"boom{i}"] - w) * 1000 for i, w in enumerate(written))
        return {"firings": len(ms), "p50_ms": ms[len(ms) // 2], "max_ms": ms[-1]}
    finally:
        cleanup()


def bench_isolation(tmp: str) -> Json:
    """A healthy client's log latency at 100 lines/s: without notifications, and with a
    receiver that hangs on every delivery while rules fire and resolve, two a second."""
    out: Json = {}
    for label, hanging in (("no notifications", False), ("a receiver that hangs", True)):
        port = None
        if hanging:
            _, port = start_receiver("hang", 40)
        app, boom = fresh(tmp, f"app{hanging}.log"), fresh(tmp, f"boom{hanging}.log")
        srv = Server(app, tmp, "--config", config(tmp, port), "--log", f"boom={boom}")
        try:
            path = "/events?types=log&sources=app"
            sse = role("sse", "127.0.0.1", str(srv.port), path, "1500", "60", "60")
            wait_ready(sse)
            writer = role("write-paced", app, "100", "15")
            end = time.monotonic() + 15
            i = 0
            while time.monotonic() < end:
                with open(boom, "a") as f:
                    f.write(f"BOOM{i % FIRINGS}\n")
                i += 1
                time.sleep(0.5)
            last_json(writer, 40)
            result = last_json(sse, 60)
            out[label] = {k: result[k] for k in ("p50_ms", "p99_ms", "max_ms", "lost")}
        finally:
            cleanup()
    return out


def table(r: Json) -> str:
    d, iso = r["delivery"], r["isolation"]
    rows = [
        (
            f"line that fires a rule -> webhook received, {d['firings']} firings",
            f"p50 {d['p50_ms']:.1f} ms, max {d['max_ms']:.1f} ms",
        )
    ]
    for label, x in iso.items():
        rows.append(
            (
                f"healthy client p50 / p99 / max ms, 100 lines/s, {label}",
                f"{x['p50_ms']:.3f} / {x['p99_ms']:.3f} / {x['max_ms']:.1f} (lost {x['lost']})",
            )
        )
    return plain_table(rows)


def main() -> None:
    if sys.argv[1:2] == ["role"]:
        print(json.dumps(receiver(sys.argv[3], float(sys.argv[4]))), flush=True)
        return
    with tempfile.TemporaryDirectory() as tmp:
        results = {"delivery": bench_delivery(tmp), "isolation": bench_isolation(tmp)}
    print(table(results))
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    Path(ROOT, "bench", "results", f"notify-{stamp}.json").write_text(json.dumps(results))


if __name__ == "__main__":
    main()
