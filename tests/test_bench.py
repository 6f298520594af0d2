"""The benchmark harness (bench/run.py) at tiny sizes: it runs, and nothing it sends is lost.

Its numbers are not asserted (benchmarks are not timed tests); this keeps `make bench`
working on a fresh machine and checks what every benchmark row stands on: complete, in-order
delivery to each client.
"""

from __future__ import annotations

import importlib.util
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
    for run in [*res["throughput"]["sse_runs"], *res["throughput"]["tail_runs"]]:
        assert run["lost"] == 0 and run["in_order"] and run["gaps"] == 0, run
    for alone in ("sse_reader_alone", "tail_reader_alone"):
        assert res["throughput"][alone]["lost"] == 0, res["throughput"][alone]
    fanout = res["fanout"]
    assert fanout["complete"] == fanout["clients"] and fanout["gaps"] == 0, fanout
    assert res["conns"]["open"] == res["conns"]["connections"]
    assert res["idle"]["fill_lines"] == 250_000
    if "page" in res:
        assert res["page"]["pane"]["has_last_line"] and res["page"]["errors"] == []


def test_the_throughput_reader_counts_a_lost_or_misplaced_line() -> None:
    """The throughput run checks order by comparing sequence numbers as bytes, in bulk; a
    batch that is not the next lines in order makes it count exactly."""
    spec = importlib.util.spec_from_file_location("bench_procs", ROOT / "bench" / "procs.py")
    assert spec is not None and spec.loader is not None
    procs = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = procs  # its dataclasses look their module up
    spec.loader.exec_module(procs)
    Recorder = procs.Recorder

    def received(*batches: list[int]) -> tuple[int, bool, int]:
        rec = Recorder(10, latency=False)
        for i, batch in enumerate(batches):
            rec.add_seqs([b"%d" % n for n in batch], 1, 100, 2 + i)
        got = rec.result()
        return got["lost"], got["in_order"], got["received"]

    assert received([0, 1, 2], [3, 4, 5, 6, 7, 8, 9]) == (0, True, 10)
    assert received([0, 1, 2], [3, 5, 6, 7, 8, 9]) == (1, True, 9)  # 4 lost
    assert received([0, 1, 2], [4, 3, 5, 6, 7, 8, 9]) == (0, False, 10)  # 3 and 4 swapped
    assert received([0, 1, 2], [2, 3, 4, 5, 6, 7, 8]) == (1, False, 10)  # 2 twice, 9 lost
