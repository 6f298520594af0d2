"""The users file: only a small regular file is read, never blocking the server; weak hashes and
a file others can read are warned about; unknown names are checked like the costliest user."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import MONITOR, Server, hash_pw

from monitor.config import ConfigError
from monitor.http.users import FALLBACK_HASH, UsersFile, costliest_hash, read_users


def status_of(url: str, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def make_fifo(path: Path) -> None:
    os.mkfifo(path)


def link_to_dev_zero(path: Path) -> None:
    path.symlink_to("/dev/zero")


@pytest.mark.parametrize(
    ("make", "expected"),
    [(make_fifo, "is a FIFO, not a regular file"), (link_to_dev_zero, "is a character device")],
)
def test_users_file_that_is_not_a_regular_file_is_one_line_and_exit_2(
    tmp_path: Path, make: Callable[[Path], None], expected: str
) -> None:
    users = tmp_path / "users"
    make(users)
    # The memory cap keeps an unbounded read of /dev/zero from hurting this machine.
    done = subprocess.run(
        ["sh", "-c", 'ulimit -v 1000000 && exec "$@"', "sh", *MONITOR, "serve", "--port", "0"]
        + ["--users-file", str(users)],
        capture_output=True,
        text=True,
        timeout=15,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert f"users file {users}: {expected}" in done.stderr


def test_users_file_over_1_mib_is_refused(tmp_path: Path) -> None:
    users = tmp_path / "users"
    line = f"alice:{hash_pw('wonder land')}\n"
    users.write_text(line + "#" * (1024 * 1024) + "\n")
    with pytest.raises(ConfigError, match=re.escape(f"users file {users}: is over 1 MiB")):
        read_users(str(users))


def test_users_file_replaced_by_a_fifo_while_serving_does_not_stall_it(
    start_server: Callable[..., Server], users_file: Path, tmp_path: Path
) -> None:
    server = start_server("--users-file", str(users_file))
    alice = {"Authorization": "Basic YWxpY2U6d29uZGVyIGxhbmQ="}  # alice:wonder land
    assert status_of(f"{server.url}/api/sources", alice) == 200
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    os.replace(fifo, users_file)
    # The request that notices the change fails closed instead of hanging the event loop.
    assert status_of(f"{server.url}/api/sources", alice) == 401
    assert status_of(f"{server.url}/healthz") == 200
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=5) == 0
    assert f"users file {users_file}: is a FIFO, not a regular file" in server.all_stderr()


def test_unknown_users_are_checked_against_the_costliest_hash(tmp_path: Path) -> None:
    cheap, costly = hash_pw("a", cost=4).encode(), hash_pw("b", cost=6).encode()
    assert costliest_hash({"cheap": cheap, "costly": costly}) == costly
    assert costliest_hash({"costly": costly, "cheap": cheap}) == costly
    assert costliest_hash({}) == FALLBACK_HASH
    users = tmp_path / "users"
    users.write_text(f"cheap:{cheap.decode()}\ncostly:{costly.decode()}\n")
    assert UsersFile(str(users)).fallback == costly


def test_weak_hashes_and_a_file_others_can_read_are_warned_once_each(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    users = tmp_path / "users"
    users.write_text(f"weak:{hash_pw('a', cost=5)}\nstrong:{hash_pw('b', 10)}\n")
    users.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="monitor.http.users"):
        UsersFile(str(users))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, warnings
    assert "user 'weak' has bcrypt cost 5" in warnings[0]
    assert f"users file {users} is readable by every local user" in warnings[1]
    caplog.clear()
    users.write_text(f"strong:{hash_pw('b', 10)}\n")
    users.chmod(0o600)
    with caplog.at_level(logging.WARNING, logger="monitor.http.users"):
        UsersFile(str(users))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
