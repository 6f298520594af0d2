"""Fixtures: configs, the `serve` subprocess, and the in-process server's config."""

from __future__ import annotations

import resource
import ssl
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import MONITOR, Server, base_path, hash_pw, stop_all
from redis_server import RedisServer

from monitor.config import Config, LogSource, StreamConfig


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Starts `serve --port 0 <flags>` and waits until it answers; kills leftovers at the end."""
    started: list[Server] = []

    def start(
        *flags: str, ssl_context: ssl.SSLContext | None = None, max_open_files: int | None = None
    ) -> Server:
        def limit_open_files() -> None:
            if max_open_files is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (max_open_files, max_open_files))

        proc = subprocess.Popen(
            [*MONITOR, "serve", "--port", "0", *flags],
            cwd=tmp_path,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=limit_open_files,
        )
        server = Server(proc)
        started.append(server)
        server.url = server.wait_for_url()
        # An answered request means serve() reached stop.wait(): its signal handlers are in place
        # (the log line alone does not; see test_sigterm_once_accepting_exits_0).
        healthz = f"{server.url}{base_path(flags)}/healthz"
        with urllib.request.urlopen(healthz, timeout=5, context=ssl_context) as resp:
            assert resp.status == 200
        return server

    yield start
    stop_all(started)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A real redis-server on a unix socket in the test's directory (no persistence)."""
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.kill()


@pytest.fixture
def start_agent(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Starts `agent <flags>` (stderr read like serve's); kills leftovers at the end."""
    started: list[Server] = []

    def start(*flags: str, wait_for: str | None = "redis: publishing host") -> Server:
        proc = subprocess.Popen(
            [*MONITOR, "agent", *flags], cwd=tmp_path, stderr=subprocess.PIPE, text=True
        )
        agent = Server(proc)
        started.append(agent)
        if wait_for is not None:
            agent.wait_for_line(wait_for)
        return agent

    yield start
    stop_all(started)


@pytest.fixture
def config() -> Config:
    """A config with two log sources and a short heartbeat, for in-process servers."""
    return Config(
        port=0,
        logs=(LogSource("app", "/nonexistent/app.log"), LogSource("db", "/nonexistent/db.log")),
        stream=StreamConfig(
            heartbeat_s=0.2, buffer_events=1000, buffer_bytes=1024 * 1024, history_events=5
        ),
    )


@pytest.fixture
def users_file(tmp_path: Path) -> Path:
    """alice ("wonder land") and bob ("bü€r:colon", with htpasswd -B's $2y$ prefix), in a file
    only its owner may read."""
    path = tmp_path / "users"
    bob = hash_pw("bü€r:colon").replace("$2b$", "$2y$", 1)
    path.write_text(f"# who may look\n\nalice:{hash_pw('wonder land')}\n  bob:{bob}  \n")
    path.chmod(0o600)
    return path
