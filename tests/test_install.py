"""The wheel, installed into a fresh venv, runs the server without the checkout."""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterable
from pathlib import Path

import pytest

import monitor

REPO = Path(__file__).resolve().parent.parent
LISTENING = re.compile(r"listening on (http://\S+)")
ASSET = re.compile(r'(?:href|src)="(/static/(css/main\.css|js/main\.js)\?v=[^"]+)"')
# Build from a copy: an in-tree build would write build/ into the checkout, and a stale
# build/lib there could put files into the wheel that the checkout no longer has.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache"
)


def clean_env() -> dict[str, str]:
    """The environment minus anything that would point Python at the checkout or its venv."""
    drop = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def run(*cmd: str | Path, cwd: Path, timeout_s: float = 600) -> str:
    """Run a command to success; its stdout."""
    result = subprocess.run(
        [str(c) for c in cmd],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    assert result.returncode == 0, f"{cmd}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def build_wheel(tmp_path: Path) -> Path:
    """The checkout's wheel, built with the test's own Python."""
    src, out = tmp_path / "src", tmp_path / "wheelhouse"
    shutil.copytree(REPO, src, ignore=NOT_SOURCE)
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", out, src, cwd=tmp_path)
    [wheel] = out.glob("*.whl")
    assert wheel.name.startswith(f"sse_monitor-{monitor.__version__}-")
    return wheel


def wait_for_url(lines: queue.Queue[str | None], timeout_s: float = 20.0) -> str:
    """The URL of the first `listening on` stderr line; fail at EOF or after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    seen: list[str] = []
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"no 'listening on' after {timeout_s}s: {seen}") from None
        assert line is not None, f"stderr ended before 'listening on': {seen}"
        seen.append(line)
        if match := LISTENING.search(line):
            return match.group(1)


def drain(stream: Iterable[str], lines: queue.Queue[str | None]) -> None:
    """Copy a text stream's lines into `lines`, then None at EOF."""
    for line in stream:
        lines.put(line)
    lines.put(None)


def get(url: str) -> tuple[int, str, bytes]:
    """Status, Content-Type and body of a GET."""
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.status, resp.headers.get_content_type(), resp.read()


def check_server(venv: Path, workdir: Path) -> None:
    """`sse-monitor serve --port 0` serves the page and its assets, then stops cleanly."""
    proc = subprocess.Popen(
        [venv / "bin" / "sse-monitor", "serve", "--port", "0"],
        cwd=workdir,
        env=clean_env(),
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    assert proc.stderr is not None
    with proc.stderr:
        pump = threading.Thread(target=drain, args=(proc.stderr, lines), daemon=True)
        pump.start()
        try:
            url = wait_for_url(lines)
            status, kind, body = get(f"{url}/")
            assert (status, kind) == (200, "text/html")
            assets = ASSET.findall(body.decode())
            assert len(assets) == 2, body.decode()
            for path, name in assets:
                status, _, data = get(f"{url}{path}")
                assert status == 200
                assert data == (REPO / "web" / "static" / name).read_bytes()
            start = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
            assert time.monotonic() - start < 3.0
        finally:
            proc.kill()
            proc.wait(timeout=10)
            pump.join(timeout=5)


@pytest.mark.slow
def test_wheel_installs_and_serves_from_a_fresh_venv(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    venv, workdir = tmp_path / "venv", tmp_path / "elsewhere"
    workdir.mkdir()
    run(sys.executable, "-m", "venv", venv, cwd=workdir)
    python = venv / "bin" / "python"
    run(python, "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel, cwd=workdir)

    version = run(python, "-m", "monitor", "--version", cwd=workdir)
    assert version.strip() == f"sse-monitor {monitor.__version__}"
    where = run(python, "-c", "import monitor; print(monitor.__file__)", cwd=workdir)
    site = run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=workdir)
    installed = Path(where.strip()).resolve()
    assert installed.is_relative_to(Path(site.strip()).resolve())
    assert installed.is_relative_to(venv.resolve())
    assert (installed.parent / "web" / "templates" / "dashboard.html").is_file()

    check_server(venv, workdir)
