"""The dashboard's JS unit tests (tests/js/*.test.mjs, node:test), run as part of the suite."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_js_unit_tests_pass() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is missing: the JS unit tests need Node.js 20+ (apt-get install nodejs)")
    # Files, not the folder: node 22+ reads `--test tests/js/` as a file and fails.
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests" / "js").glob("*.test.mjs"))
    assert files, "no tests/js/*.test.mjs"
    result = subprocess.run(
        [node, "--test", *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, (
        f"node --test {' '.join(files)} failed:\n{result.stdout}{result.stderr}"
    )
