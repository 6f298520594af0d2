"""Connections before any request, over real sockets against the real server: the caps in all
and per address, a response nobody reads, and running out of file descriptors."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import resource
import signal
import socket
import ssl
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp import web
from helpers import Server, tls_files, wait_until_sync
from pytest_aiohttp import AiohttpServer

from monitor.config import Config
from monitor.http.app import create_app

HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"


def port_of(server: Server) -> int:
    return int(server.url.rsplit(":", 1)[1])


def ask(sock: socket.socket, request: bytes = HEALTHZ) -> bytes:
    """Send a request on an open connection; the response's head and as much body as came."""
    sock.settimeout(5)
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data or not data.endswith((b"}", b"\n")):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def refused_body(response: bytes) -> dict[str, str]:
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 "), head
    assert b"Retry-After: 5" in head and b"application/json" in head
    parsed: dict[str, str] = json.loads(body)
    return parsed


def test_connections_beyond_the_cap_get_503_at_once(
    start_server: Callable[..., Server], tmp_path: Path
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        "[stream]\nmax_clients = 2\nmax_connections = 5\nmax_clients_per_address = 1\n"
        "max_connections_per_address = 2\n"
        "idle_timeout_s = 60\n"
    )
    server = start_server("--config", str(config))
    port = port_of(server)
    # Loopback counts against the total only (this machine, or a proxy for everyone): five
    # connections from 127.0.0.1 pass a per-address cap of two. Each asks once, so each is
    # known to be in before the next.
    with ExitStack() as stack:
        held = [stack.enter_context(socket.create_connection(("127.0.0.1", port))) for _ in "12345"]
        for sock in held:
            assert ask(sock).startswith(b"HTTP/1.1 200 ")
        with socket.create_connection(("127.0.0.1", port)) as extra:
            extra.settimeout(5)
            response = extra.recv(4096)  # answered before it sends a byte
            assert refused_body(response) == {
                "error": "too many open connections (5); try again later"
            }
            assert extra.recv(4096) == b""  # and closed
        held.pop().close()

        def admitted() -> bool:  # once the server has seen the closed one go
            with socket.create_connection(("127.0.0.1", port)) as again:
                return ask(again).startswith(b"HTTP/1.1 200 ")

        assert wait_until_sync(admitted)
        for sock in held:
            assert ask(sock).startswith(b"HTTP/1.1 200 ")  # the others were never disturbed


def non_loopback_ipv4() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks a route
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") else address


def test_one_address_gets_at_most_its_share_of_connections(
    start_server: Callable[..., Server], tmp_path: Path
) -> None:
    address = non_loopback_ipv4()
    if address is None:
        pytest.skip("no non-loopback IPv4 address to connect from")
    config = tmp_path / "c.toml"
    config.write_text(
        "[stream]\nmax_clients_per_address = 2\nmax_connections_per_address = 3\n"
        "idle_timeout_s = 60\n"
    )
    server = start_server("--config", str(config), "--host", address, "--allow-anonymous")
    port = port_of(server)
    host = f"GET /healthz HTTP/1.1\r\nHost: {address}\r\n\r\n".encode()
    with ExitStack() as stack:
        for _ in range(3):
            sock = stack.enter_context(socket.create_connection((address, port)))
            assert ask(sock, host).startswith(b"HTTP/1.1 200 ")
        with socket.create_connection((address, port)) as fourth:
            fourth.settimeout(5)
            assert refused_body(fourth.recv(4096)) == {
                "error": "too many open connections from your address (3)"
            }


def test_a_response_nobody_reads_is_cut_off_at_the_send_deadline(
    start_server: Callable[..., Server], tmp_path: Path
) -> None:
    log = tmp_path / "app.log"
    log.write_text("")
    config = tmp_path / "c.toml"
    config.write_text(
        "[stream]\nsend_timeout_s = 1\nidle_timeout_s = 60\nbuffer_bytes = 33554432\n"
        "buffer_events = 1000000\nhistory_events = 100000\n"
    )
    server = start_server("--config", str(config), "--log", f"app={log}")
    port = port_of(server)
    with log.open("a") as f:  # ~20 MB of lines: /api/state then far exceeds socket buffers
        for i in range(100):
            f.write("".join(f"line {i} {j} {'x' * 180}\n" for j in range(1000)))
    request = b"GET /api/state HTTP/1.1\r\nHost: localhost\r\n\r\n"

    def state_size() -> int:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            head = ask(sock, request).partition(b"\r\n\r\n")[0]
        return int(re.search(rb"Content-Length: (\d+)", head).group(1))  # type: ignore[union-attr]

    assert wait_until_sync(lambda: state_size() > 16_000_000, timeout_s=30)
    stuck = socket.socket()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.connect(("127.0.0.1", port))
    stuck.sendall(request)
    time.sleep(3)  # the client under test reads nothing for three times the deadline
    stuck.settimeout(10)
    received = 0
    size = state_size()
    try:
        while chunk := stuck.recv(1 << 20):
            received += len(chunk)
    except ConnectionResetError:
        pass
    stuck.close()
    assert received < size  # cut off, not sent in full once it started reading
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=10) == 0


def closed_by_server(sock: socket.socket, timeout_s: float) -> bool:
    """True if the server closes (or resets) the connection within the time."""
    sock.settimeout(timeout_s)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_tls_connections_count_from_accept_not_from_the_end_of_their_handshake(
    start_server: Callable[..., Server], tmp_path: Path
) -> None:
    """A client that opens TLS connections and never sends a ClientHello fills the cap like
    any other (asyncio would count them only after a handshake, and wait a minute for it):
    beyond the cap they are closed at once, and the silent ones go at the handshake deadline
    (idle_timeout_s)."""
    certfile, keyfile, cafile = tls_files(tmp_path)
    context = ssl.create_default_context(cafile=str(cafile))
    config = tmp_path / "c.toml"
    config.write_text("[stream]\nmax_clients = 4\nmax_connections = 4\nidle_timeout_s = 2\n")
    server = start_server(
        *("--certfile", str(certfile), "--keyfile", str(keyfile), "--config", str(config)),
        ssl_context=context,
    )
    port = port_of(server)
    with ExitStack() as stack:
        silent = [
            stack.enter_context(socket.create_connection(("127.0.0.1", port))) for _ in range(4)
        ]
        fifth = stack.enter_context(socket.create_connection(("127.0.0.1", port)))
        assert closed_by_server(fifth, timeout_s=1)  # the cap is full: closed, no handshake
        started = time.monotonic()
        assert all(closed_by_server(sock, timeout_s=10) for sock in silent)
        assert time.monotonic() - started < 5  # at the 2 s deadline, not asyncio's 60 s
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            assert ask(tls).startswith(b"HTTP/1.1 200 ")  # and the slots are free again


def test_running_out_of_descriptors_is_one_line_and_passes(
    start_server: Callable[..., Server], tmp_path: Path
) -> None:
    # The caps keep connections within the open-files limit the server started with; a limit
    # lowered under it (prlimit) makes accept() fail with EMFILE, as a descriptor leak would.
    server = start_server()
    port = port_of(server)
    resource.prlimit(server.proc.pid, resource.RLIMIT_NOFILE, (64, 64))
    held = []
    for _ in range(100):
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))  # completes in the kernel's listen queue
        held.append(sock)

    def out_of_fds_logged() -> bool:
        return any("out of file descriptors" in line for line in server.stderr)

    assert wait_until_sync(out_of_fds_logged, timeout_s=10)
    time.sleep(2.5)  # asyncio retries accept() every second: two more failures, no more lines
    for sock in held:
        sock.close()

    def answers() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                return ask(sock).startswith(b"HTTP/1.1 200 ")
        except OSError:
            return False

    def answers_and_says_so() -> bool:  # once 5 s have passed without a failed accept
        return answers() and any("accepting connections again" in ln for ln in server.stderr)

    assert wait_until_sync(answers_and_says_so, timeout_s=30)
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=10) == 0
    stderr = server.all_stderr()
    assert stderr.count("out of file descriptors (limit 64") == 1, stderr
    assert stderr.count("accepting connections again") == 1, stderr
    assert "Traceback" not in stderr


async def test_every_response_has_the_send_deadline(
    aiohttp_server: AiohttpServer, config: Config
) -> None:
    """Not only the shared bodies: a handler's plain Response too (here a made-up 32 MB one,
    far beyond what socket buffers hold)."""
    app = create_app(replace(config, stream=replace(config.stream, send_timeout_s=0.5)), sources=[])
    big = b"x" * 32 * 1024 * 1024

    async def large(request: web.Request) -> web.Response:
        return web.Response(body=big)

    app.router.add_get("/large", large)
    server = await aiohttp_server(app)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /large HTTP/1.1\r\nHost: localhost\r\n\r\n")
    await asyncio.sleep(1.5)  # the client under test reads nothing for 3 deadlines
    received = 0
    with contextlib.suppress(ConnectionResetError):
        async with asyncio.timeout(10):
            while chunk := await reader.read(1 << 20):
                received += len(chunk)
    writer.close()
    assert 0 < received < len(big)  # it started, then was cut off
