"""`sse-monitor tail` as a subprocess against a real server, and GET /tail/{name}."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import signal
import socket
import ssl
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import aiohttp
import bcrypt
import pytest
from aiohttp import web
from helpers import MONITOR, Server, StreamReader, tls_files, wait_until
from pytest_aiohttp import AiohttpServer
from yarl import URL

from monitor.client.printer import TailPrinter
from monitor.hub.sse import MAX_LINE_BYTES, SSEEvent


class Tail:
    """A `python -m monitor tail` process; its stdout and stderr lines, collected as they come."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.out: list[str] = []
        self.err: list[str] = []
        self.out_bytes: list[bytes] = []  # stdout lines as written, newline and all
        assert proc.stdout is not None and proc.stderr is not None
        self._pumps = [
            asyncio.create_task(self._pump(proc.stdout, self.out, self.out_bytes)),
            asyncio.create_task(self._pump(proc.stderr, self.err, [])),
        ]

    @classmethod
    async def start(cls, *args: str) -> Tail:
        proc = await asyncio.create_subprocess_exec(
            *MONITOR, "tail", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        return cls(proc)

    @staticmethod
    async def _pump(stream: asyncio.StreamReader, into: list[str], raw: list[bytes]) -> None:
        async for line in stream:
            raw.append(line)
            into.append(line.decode().rstrip("\n"))

    async def lines(self, n: int, timeout_s: float = 5.0) -> list[str]:
        """The first `n` stdout lines, once there are that many."""
        await wait_until(lambda: len(self.out) >= n or self.proc.returncode is not None, timeout_s)
        assert len(self.out) >= n, (self.out, self.err)
        return self.out[:n]

    async def finish(self, timeout_s: float = 5.0) -> int:
        """Wait for the exit status, with stdout and stderr read to their end."""
        async with asyncio.timeout(timeout_s):
            status = await self.proc.wait()
            await asyncio.gather(*self._pumps)
        return status

    async def stop(self) -> int:
        """Ctrl-C, then the exit status."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGINT)
        return await self.finish()


@pytest.fixture
def log_files(tmp_path: Path) -> tuple[Path, Path]:
    """app.log with 20 lines and db.log with 5, written before any server starts."""
    app, db = tmp_path / "app.log", tmp_path / "db.log"
    app.write_text("".join(f"app {i}\n" for i in range(1, 21)))
    db.write_text("".join(f"db {i}\n" for i in range(1, 6)))
    return app, db


@pytest.fixture
def two_sources(start_server: Callable[..., Server], log_files: tuple[Path, Path]) -> Server:
    """A server following app.log as `app` and db.log as `db`."""
    app, db = log_files
    return start_server("--log", f"app={app}", "--log", f"db={db}")


def append(path: Path, *lines: str) -> None:
    with path.open("a") as f:
        f.write("".join(f"{line}\n" for line in lines))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_one_source_prints_raw_lines_then_live_ones(
    two_sources: Server, log_files: tuple[Path, Path]
) -> None:
    tail = await Tail.start(two_sources.url, "--source", "app", "--lines", "3")
    assert await tail.lines(3) == ["app 18", "app 19", "app 20"]
    append(log_files[0], "app 21", "app 22")
    assert await tail.lines(5) == ["app 18", "app 19", "app 20", "app 21", "app 22"]
    assert await tail.stop() == 0
    assert tail.out == ["app 18", "app 19", "app 20", "app 21", "app 22"]
    assert tail.err == []


async def test_two_sources_are_prefixed_json_and_grep(
    two_sources: Server, log_files: tuple[Path, Path]
) -> None:
    both = await Tail.start(two_sources.url, "--lines", "2")
    as_json = await Tail.start(two_sources.url, "--source", "db", "--json", "--lines", "1")
    grep = await Tail.start(two_sources.url, "--grep", r"^(app|db) 1\d?$", "--lines", "0")
    assert await both.lines(2) == ["db: db 4", "db: db 5"]
    [row] = map(json.loads, await as_json.lines(1))
    assert row.keys() == {"source", "file", "line", "id"}
    assert (row["source"], row["file"], row["line"]) == ("db", str(log_files[1]), "db 5")
    # --lines 0 prints nothing of the backlog: a status event first proves it is connected.
    await wait_until(lambda: stream_clients(two_sources) >= 3)
    append(log_files[0], "app 1", "app 21", "app 10")
    assert await grep.lines(2) == ["app: app 1", "app: app 10"]
    assert await both.lines(5) == [
        "db: db 4",
        "db: db 5",
        "app: app 1",
        "app: app 21",
        "app: app 10",
    ]
    for tail in (both, as_json, grep):
        assert await tail.stop() == 0
        assert tail.err == []
    assert grep.out == ["app: app 1", "app: app 10"]


def stream_clients(server: Server) -> int:
    """How many streams the server has open."""
    with urllib.request.urlopen(f"{server.url}/healthz", timeout=5) as resp:
        clients: int = json.load(resp)["clients"]
        return clients


async def test_server_restart_resumes_without_repeating_a_line(
    start_server: Callable[..., Server], log_files: tuple[Path, Path]
) -> None:
    app, _ = log_files
    port = str(free_port())
    server = start_server("--log", f"app={app}", "--port", port)
    tail = await Tail.start(server.url, "--lines", "2")
    assert await tail.lines(2) == ["app 19", "app 20"]
    append(app, "app 21")
    await tail.lines(3)
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=5) == 0
    await wait_until(lambda: any("connection lost" in line for line in tail.err))
    append(app, "app 22 written while down", "app 23 written while down")
    start_server("--log", f"app={app}", "--port", port)
    await tail.lines(5, timeout_s=8)
    append(app, "app 24")
    expected = ["app 19", "app 20", "app 21", "app 22 written while down"]
    expected += ["app 23 written while down", "app 24"]
    assert await tail.lines(6) == expected
    assert await tail.stop() == 0
    assert tail.out == expected
    assert any("reconnected" in line for line in tail.err), tail.err
    assert any("server restarted" in line for line in tail.err), tail.err
    assert "Traceback" not in "\n".join(tail.err)


async def test_head_ends_the_pipeline_quietly(two_sources: Server) -> None:
    command = [*MONITOR, "tail", two_sources.url, "--source", "app"]
    shell = " ".join(command) + " | head -2"
    started = time.monotonic()
    proc = await asyncio.create_subprocess_shell(
        f"set -o pipefail; {shell}",
        executable="/bin/bash",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(5):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err
    assert out.decode().splitlines() == ["app 11", "app 12"]
    assert err == b""
    assert time.monotonic() - started < 5


async def test_ctrl_c_exits_0_without_traceback(two_sources: Server) -> None:
    tail = await Tail.start(two_sources.url, "--source", "app", "--lines", "1")
    await tail.lines(1)
    assert await tail.stop() == 0
    assert tail.err == []


async def test_unknown_source_is_one_line_and_exit_1(two_sources: Server) -> None:
    tail = await Tail.start(two_sources.url, "--source", "app", "--source", "nope")
    assert await tail.finish() == 1
    assert tail.out == []
    assert tail.err == [
        f"sse-monitor tail: {two_sources.url}: unknown source 'nope' (known: app, db)"
    ]


async def test_nothing_listening_is_one_line_and_exit_1() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    tail = await Tail.start(url)
    assert await tail.finish() == 1
    assert tail.err == [f"sse-monitor tail: {url}: cannot connect: connection refused"]


async def test_bad_regex_is_a_usage_error() -> None:
    tail = await Tail.start("http://127.0.0.1:9", "--grep", "(")
    assert await tail.finish() == 2
    assert len(tail.err) == 1 and tail.err[0].startswith("sse-monitor tail: --grep '(':")


async def test_plain_text_tail_sends_last_lines_then_live(
    two_sources: Server, log_files: tuple[Path, Path]
) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{two_sources.url}/tail/app?lines=3") as resp,
    ):
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert resp.headers["Cache-Control"] == "no-cache, no-transform"
        assert resp.headers["X-Accel-Buffering"] == "no"
        assert "Content-Encoding" not in resp.headers
        got = b""
        async with asyncio.timeout(5):
            while got.count(b"\n") < 3:
                got += await resp.content.readany()
            append(log_files[1], "db 6")
            append(log_files[0], "app 21")
            while got.count(b"\n") < 4:
                got += await resp.content.readany()
        assert got.decode().splitlines() == ["app 18", "app 19", "app 20", "app 21"]


ERRORS = [
    ("/tail/nope", 404, "unknown source 'nope'"),
    ("/tail/..", 404, "unknown source '..'"),
    ("/tail/%2e%2e", 404, "unknown source '..'"),
    ("/tail/..%2f..%2fetc%2fpasswd", 404, "unknown source '../../etc/passwd'"),
    ("/tail/%2e%2e%2fapp.log", 404, "unknown source '../app.log'"),
    ("/tail/app?lines=-1", 400, "lines: expected a whole number from 0 to 10000, got '-1'"),
    ("/tail/app?lines=10001", 400, None),
    ("/tail/app?lines=%C2%B2", 400, None),
    ("/tail/app?lines=1&lines=2", 400, None),
    ("/tail/app?file=/etc/passwd", 400, "unknown query parameter 'file'"),
]


async def test_plain_text_tail_errors_are_json(two_sources: Server) -> None:
    async with aiohttp.ClientSession() as session:
        for path, status, error in ERRORS:
            async with session.get(URL(two_sources.url + path, encoded=True)) as resp:
                assert resp.status == status, path
                assert resp.content_type == "application/json", path
                body = await resp.json()
                assert error is None or body["error"] == error, (path, body)
                assert "root:" not in json.dumps(body)


async def test_tail_over_https_with_basic_auth(
    start_server: Callable[..., Server], log_files: tuple[Path, Path], tmp_path: Path
) -> None:
    certfile, keyfile, cafile = tls_files(tmp_path)
    users = tmp_path / "users"
    users.write_text("ops:" + bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode() + "\n")
    good, bad = tmp_path / "pw", tmp_path / "wrong"
    good.write_text("s3cret\n")
    bad.write_text("guess\n")
    context = ssl.create_default_context(cafile=str(cafile))
    server = start_server(
        *("--log", f"app={log_files[0]}", "--users-file", str(users)),
        *("--certfile", str(certfile), "--keyfile", str(keyfile)),
        ssl_context=context,
    )
    tls = ("--cafile", str(cafile))
    tail = await Tail.start(
        server.url, "--lines", "2", "--user", "ops", "--password-file", str(good), *tls
    )
    assert await tail.lines(2) == ["app 19", "app 20"]
    assert await tail.stop() == 0
    refused = await Tail.start(server.url, "--user", "ops", "--password-file", str(bad), *tls)
    assert await refused.finish() == 1
    assert len(refused.err) == 1 and "authentication failed" in refused.err[0]
    untrusted = await Tail.start(server.url, "--user", "ops", "--password-file", str(good))
    assert await untrusted.finish() == 1
    assert len(untrusted.err) == 1 and "certificate not trusted" in untrusted.err[0]


# Escape sequences a log line could carry to the operator's terminal: clear the screen, write
# the clipboard (OSC 52), overwrite the line (CR), hide the next lines (U+2028/9, BS, DEL),
# CSI as one C1 character, and a right-to-left override (a file name that reads backwards).
HOSTILE = (
    "\x1b[2J\x1b]52;c;ZXZpbA==\x07 ok\r overwritten\u2028next\u2029\x08\x7f"
    " \x9b2J \u202egnp.exe\u2066\tend"
)
SHOWN = (
    rb"\x1b[2J\x1b]52;c;ZXZpbA==\x07 ok\r overwritten\u2028next\u2029\x08\x7f"
    rb" \x9b2J \u202egnp.exe\u2066" + b"\tend\n"
)


@pytest.fixture
def hostile_server(start_server: Callable[..., Server], tmp_path: Path) -> Server:
    """A server following a log whose last line is HOSTILE."""
    log = tmp_path / "app.log"
    log.write_text(f"fine\n{HOSTILE}\n", encoding="utf-8")
    return start_server("--log", f"app={log}")


async def test_control_characters_are_shown_not_acted_on(hostile_server: Server) -> None:
    tail = await Tail.start(hostile_server.url, "--lines", "2")
    await tail.lines(2)
    assert await tail.stop() == 0
    assert tail.out_bytes == [b"fine\n", SHOWN]
    assert tail.err == []


async def test_json_is_ascii_and_gives_the_exact_line(hostile_server: Server) -> None:
    tail = await Tail.start(hostile_server.url, "--lines", "1", "--json")
    [row] = await tail.lines(1)
    assert await tail.stop() == 0
    assert tail.out_bytes[0].isascii()
    assert json.loads(row)["line"] == HOSTILE


async def test_raw_prints_exactly_what_the_server_sent(hostile_server: Server) -> None:
    tail = await Tail.start(hostile_server.url, "--lines", "1", "--raw")
    await tail.lines(1)
    assert await tail.stop() == 0
    assert tail.out_bytes == [HOSTILE.encode() + b"\n"]


async def test_server_text_on_stderr_is_made_visible(aiohttp_server: AiohttpServer) -> None:
    async def refuse(request: web.Request) -> web.Response:
        body = {"error": "unknown source '\x1b]52;c;ZXZpbA==\x07'", "known": ["a\x9b2J\u2028"]}
        return web.json_response(body, status=404)

    app = web.Application()
    app.router.add_get("/events", refuse)
    url = str((await aiohttp_server(app)).make_url(""))
    tail = await Tail.start(url, "--source", "x")
    assert await tail.finish() == 1
    shown = r"unknown source '\x1b]52;c;ZXZpbA==\x07' (known: a\x9b2J\u2028)"
    assert tail.err == [f"sse-monitor tail: {url}: {shown}"]


async def test_redirect_is_not_followed_and_takes_no_password(
    aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    authorizations: list[str | None] = []

    async def record(request: web.Request) -> web.Response:
        authorizations.append(request.headers.get("Authorization"))
        return web.json_response({"error": "not here"}, status=404)

    elsewhere = web.Application()
    elsewhere.router.add_get("/events", record)
    target = (await aiohttp_server(elsewhere)).make_url("/events")

    async def redirect(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": str(target)})

    async def redirect_with_password(request: web.Request) -> web.Response:
        location = str(target.with_user("ops").with_password("s3cret"))
        return web.Response(status=302, headers={"Location": location})

    app = web.Application()
    app.router.add_get("/events", redirect)
    app.router.add_get("/in-url/events", redirect_with_password)
    url = str((await aiohttp_server(app)).make_url(""))
    password = tmp_path / "pw"
    password.write_text("s3cret\n")
    tail = await Tail.start(url, "--user", "ops", "--password-file", str(password))
    assert await tail.finish() == 1
    assert tail.err == [f"sse-monitor tail: {url}: redirected (302) to {target}; not followed"]
    tail = await Tail.start(url.replace("http://", "http://ops:s3cret@") + "/in-url")
    assert await tail.finish() == 1
    [message] = tail.err
    redacted = url.replace("http://", "http://ops:***@")
    target_redacted = str(target).replace("http://", "http://ops:***@")
    assert message == (
        f"sse-monitor tail: {redacted}/in-url: redirected (302) to {target_redacted}; not followed"
    )
    assert authorizations == []


async def test_password_in_the_url_is_never_shown() -> None:
    address = f"127.0.0.1:{free_port()}"
    tail = await Tail.start(f"https://ops:s3cret@{address}/")
    assert await tail.finish() == 1
    assert tail.err == [
        f"sse-monitor tail: https://ops:***@{address}/: cannot connect: connection refused"
    ]


async def test_over_long_line_is_skipped_with_a_note(aiohttp_server: AiohttpServer) -> None:
    async def stream(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b"event: log\nid: 1-1\ndata: ")
        block = b"x" * (1 << 20)
        for _ in range(MAX_LINE_BYTES // len(block) + 1):
            await resp.write(block)
        payload = {"source": "app", "file": "app.log", "lines": ["after"]}
        await resp.write(f"\n\nevent: log\nid: 1-2\ndata: {json.dumps(payload)}\n\n".encode())
        with contextlib.suppress(ConnectionError):
            for _ in range(50):  # heartbeats, until the client is gone (or 10 s)
                await resp.write(b": hb\n\n")
                await asyncio.sleep(0.2)
        return resp

    app = web.Application()
    app.router.add_get("/events", stream)
    tail = await Tail.start(str((await aiohttp_server(app)).make_url("")), "--source", "app")
    try:
        assert await tail.lines(1, timeout_s=20) == ["after"]
    finally:
        status = await tail.stop()  # a client stuck in the line would hold the server up
    assert status == 0
    assert tail.err == [
        f"sse-monitor tail: skipped a stream line over {MAX_LINE_BYTES >> 20} MiB, larger than "
        "any sse-monitor event (1 so far)"
    ]


async def test_lines_reach_past_the_servers_buffer_into_the_files(
    start_server: Callable[..., Server], tmp_path: Path
) -> None:
    """--lines N gets N lines although the server's snapshot holds far fewer: the rest come
    from /api/logs, read again from the file, in order, before the live ones."""
    log = tmp_path / "app.log"
    log.touch()
    config = tmp_path / "c.toml"
    config.write_text("[stream]\nhistory_events = 2\n[tail]\nbacklog_lines = 0\n")
    server = start_server("--config", str(config), "--log", f"app={log}")
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{server.url}/events?types=log") as resp:
            reader = StreamReader(resp)
            await reader.until("hello")
            for start in range(0, 3000, 100):  # thirty events of 100 lines: a snapshot has 2
                with log.open("a") as f:
                    f.write("".join(f"app {i}\n" for i in range(start, start + 100)))
                await reader.until("log")
    tail = await Tail.start(server.url, "--lines", "2500")
    assert await tail.lines(2500, timeout_s=10) == [f"app {i}" for i in range(500, 3000)]
    with log.open("a") as f:
        f.write("app live\n")
    assert (await tail.lines(2501, timeout_s=10))[-1] == "app live"
    assert await tail.stop() == 0


def test_a_gap_is_told_with_what_is_known_of_it() -> None:
    notes: list[str] = []
    printer = TailPrinter(
        io.StringIO(), sources=(), pattern=None, lines=10, as_json=False, note=notes.append
    )
    for counts in ({"missed": 4, "lines": 0}, {"missed": 4, "lines": 12}, {"missed": 4,
                   "lines": None}, {"missed": None, "lines": None}):  # fmt: skip
        printer.on_event(SSEEvent("gap", "1-9", json.dumps(counts)))
    assert notes == [  # the first lost no lines: metrics only
        "12 lines missed (no longer in the log files; this client fell behind)",
        "4 events missed (no longer in the log files; this client fell behind)",
        "an unknown number of events missed (no longer in the log files; this client fell behind)",
    ]
