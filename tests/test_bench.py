"""The benchmark harness (bench/run.py) at tiny sizes: it runs, and nothing it sends is lost.

Its numbers are not asserted (benchmarks are not timed tests); this keeps `make bench`
working on a fresh machine and checks what every benchmark row stands on: complete, in-order
delivery to each client.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_benchmark_harness_runs_and_every_client_gets_every_line(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--smoke", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "| measure" in run.stdout
    res = json.loads(next(tmp_path.glob("*.json")).read_text())
    for latency in res["latency"]:
        assert latency["sse"]["lost"] == 0 and latency["sse"]["in_order"], latency
    throughput = res["throughput"]["sse"]
    assert throughput["lost"] == 0 and throughput["in_order"] and throughput["gaps"] == 0
    fanout = res["fanout"]
    assert fanout["complete"] == fanout["clients"] and fanout["gaps"] == 0, fanout
    assert res["conns"]["open"] == res["conns"]["connections"]
    assert res["idle"]["fill_lines"] == 250_000
    if "page" in res:
        assert res["page"]["pane"]["has_last_line"] and res["page"]["errors"] == []
