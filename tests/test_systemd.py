"""systemd integration against real sockets: sd_notify datagrams, socket activation, journald."""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Collection, Iterator
from pathlib import Path

import psutil
import pytest
from helpers import MONITOR, Server

from monitor import systemd as notify_module
from monitor.systemd import notify, watchdog_interval_s

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    """An AF_UNIX datagram socket bound in tmp_path, as systemd's NOTIFY_SOCKET."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(tmp_path / "notify"))
        sock.settimeout(5)
        yield sock


def receive_until(sock: socket.socket, wanted: str, timeout_s: float = 5.0) -> list[str]:
    """Datagrams received up to and including the first that starts with `wanted`."""
    deadline = time.monotonic() + timeout_s
    seen: list[str] = []
    while not seen or not seen[-1].startswith(wanted):
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            seen.append(sock.recv(4096).decode())
        except TimeoutError:
            raise AssertionError(f"no {wanted!r} after {timeout_s}s; got {seen}") from None
    return seen


def spawn(
    tmp_path: Path,
    env: dict[str, str],
    *argv: str,
    pass_fds: Collection[int] = (),
    preexec_fn: Callable[[], object] | None = None,
) -> Server:
    """A `serve` subprocess with extra environment; stderr drained by a Server."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("LISTEN_", "NOTIFY_"))}
    proc = subprocess.Popen(
        argv or [*MONITOR, "serve", "--port", "0"],
        cwd=tmp_path,
        env=base | env,
        stderr=subprocess.PIPE,
        text=True,
        pass_fds=pass_fds,
        preexec_fn=preexec_fn,
    )
    return Server(proc)


def get_ok(url: str) -> None:
    with urllib.request.urlopen(f"{url}/healthz", timeout=5) as resp:
        assert resp.status == 200


def stop(server: Server) -> str:
    """SIGTERM, assert exit 0 within 5 s, return stderr."""
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=5) == 0, server.all_stderr()
    return server.all_stderr()


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    """Servers started by a test; any still running at the end are killed."""
    started: list[Server] = []
    yield started
    for server in started:
        if server.proc.poll() is None:
            server.proc.kill()
        server.proc.wait(timeout=10)


def test_ready_status_watchdog_and_stopping(
    tmp_path: Path, notify_socket: socket.socket, servers: list[Server]
) -> None:
    env = {"NOTIFY_SOCKET": notify_socket.getsockname(), "WATCHDOG_USEC": "200000"}
    server = spawn(tmp_path, env)
    servers.append(server)
    before_ready = receive_until(notify_socket, "READY=1")
    assert before_ready.count("READY=1") == 1
    get_ok(server.wait_for_url())  # READY=1 means the port answers
    after_ready = receive_until(notify_socket, "WATCHDOG=1")
    after_ready += receive_until(notify_socket, "WATCHDOG=1")
    status = [m for m in before_ready + after_ready if m.startswith("STATUS=")]
    assert status and re.fullmatch(r"STATUS=\d+ clients, \d+ log sources", status[0]), status
    server.proc.send_signal(signal.SIGTERM)
    receive_until(notify_socket, "STOPPING=1")
    assert server.proc.wait(timeout=5) == 0, server.all_stderr()


def test_abstract_notify_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"sse-monitor-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        notify("STATUS=abstract")
        sock.settimeout(5)
        assert sock.recv(4096) == b"STATUS=abstract"


def test_without_notify_socket_notify_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notify("READY=1")


def test_unreachable_notify_socket_is_logged_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(notify_module, "_has_failed", False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "absent"))
    with caplog.at_level(logging.WARNING, logger="monitor.systemd"):
        notify("WATCHDOG=1")
        notify("WATCHDOG=1")
    assert len(caplog.records) == 1
    assert "absent" in caplog.records[0].getMessage()


def test_watchdog_for_another_pid_is_not_ours(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval_s() == 0.1
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert watchdog_interval_s() is None
    monkeypatch.delenv("WATCHDOG_USEC")
    assert watchdog_interval_s() is None


def test_socket_activation_serves_the_passed_socket(tmp_path: Path, servers: list[Server]) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        def as_fd_3() -> None:  # in the child, before close_fds: fd 3 is kept by pass_fds
            os.dup2(listener.fileno(), 3)

        # As systemd does: the socket at fd 3, LISTEN_PID naming the process that serves.
        script = 'LISTEN_PID=$$ LISTEN_FDS=1 exec "$@"'
        argv = ("sh", "-c", script, "sh", *MONITOR, "serve", "--port", "0")
        server = spawn(tmp_path, {}, *argv, pass_fds=(3,), preexec_fn=as_fd_3)
        servers.append(server)
        url = server.wait_for_url()
    assert url == f"http://127.0.0.1:{port}"
    get_ok(url)
    listening = [
        c.laddr
        for c in psutil.Process(server.proc.pid).net_connections("tcp")
        if c.status == psutil.CONN_LISTEN
    ]
    assert listening == [("127.0.0.1", port)]  # its own --port 0 was never bound
    assert "(socket activation)" in stop(server)


def test_a_passed_socket_off_loopback_is_refused_without_users(
    tmp_path: Path, servers: list[Server]
) -> None:
    # --host says loopback (the default), but the socket systemd hands over is what serves.
    with socket.socket() as exposed:
        exposed.bind(("0.0.0.0", 0))  # never listening: nothing can connect to it

        def as_fd_3() -> None:
            os.dup2(exposed.fileno(), 3)

        script = 'LISTEN_PID=$$ LISTEN_FDS=1 exec "$@"'
        argv = ("sh", "-c", script, "sh", *MONITOR, "serve", "--port", "0")
        server = spawn(tmp_path, {}, *argv, pass_fds=(3,), preexec_fn=as_fd_3)
        servers.append(server)
        assert server.proc.wait(timeout=15) == 1
    stderr = server.all_stderr()
    assert "the socket systemd passed, on 0.0.0.0: refusing to expose the dashboard" in stderr
    assert "listening on" not in stderr


def test_under_journald_lines_carry_priority_and_no_timestamp(
    tmp_path: Path, servers: list[Server]
) -> None:
    server = spawn(tmp_path, {"JOURNAL_STREAM": "8:12345"})
    servers.append(server)
    get_ok(server.wait_for_url())
    lines = stop(server).splitlines()
    assert lines and all(line.startswith("<6>") for line in lines), lines
    # journald stamps each record; ours would be a second one (aiohttp's access lines keep theirs)
    assert not any(TIMESTAMP.match(line[3:]) for line in lines), lines
    assert lines[0].startswith("<6>monitor: listening on http://"), lines
