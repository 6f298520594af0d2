"""The files are the history: a client the replay buffer has lapped is caught up from the log
files, every line once and in order, across a rotation by rename; a `gap` only for lines no
longer on disk; and a stuck client holds nobody back. Real server, real files, real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
from helpers import MONITOR, Server, StreamReader

from monitor.hub.sse import SSEEvent, SSEParser

LINES = 100_000
PAD = "x" * 70  # ~8 MB in all: far more than the 64 KiB replay buffer and socket buffers


class StuckClient:
    """A raw /events client with a small receive buffer that stops reading after its hello."""

    def __init__(self, port: int, query: str) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect(("127.0.0.1", port))
        self.sock.sendall(f"GET /events?{query} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        self.parser = SSEParser()
        self.events: list[SSEEvent] = []
        self.lines: list[str] = []
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)  # the headers alone: the body goes to the parser
        self.sock.setblocking(False)

    async def read_until(self, done: Callable[[], bool], timeout_s: float) -> None:
        """Start reading at last: events until `done` says so."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout_s):
            while not done():
                data = await loop.sock_recv(self.sock, 1 << 20)
                assert data, "the server closed the stream"
                for event in self.parser.feed(data):
                    self.events.append(event)
                    if event.type == "log":
                        self.lines += event.json()["lines"]

    async def hello(self) -> None:
        await self.read_until(lambda: any(e.type == "hello" for e in self.events), 10)

    async def read_through(self, last: str) -> None:
        await self.read_until(lambda: self.lines[-1:] == [last], 60)


@asynccontextmanager
async def stuck_and_seen(
    server: Server,
) -> AsyncIterator[tuple[StuckClient, Callable[[int], Awaitable[None]]]]:
    """A stuck client of source `app`, and seen(n): until a client that keeps up has line n
    (so the server has read that far)."""
    stuck = StuckClient(int(server.url.rsplit(":", 1)[1]), "types=log&sources=app")
    await stuck.hello()
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{server.url}/events?types=log&sources=app") as resp:
            follower = StreamReader(resp)
            await follower.until("hello")

            async def seen(n: int) -> None:
                while (await follower.next()).json()["lines"][-1] != f"app {n} {PAD}":
                    pass

            yield stuck, seen


def write_burst(log: Path, first: int, count: int) -> None:
    with log.open("a") as f:
        for start in range(first, first + count, 1000):
            end = min(start + 1000, first + count)
            f.write("".join(f"app {i} {PAD}\n" for i in range(start, end)))
            f.flush()


def config(tmp_path: Path) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(
        "[stream]\nbuffer_bytes = 65536\nbuffer_events = 64\nhistory_events = 0\n"
        "send_timeout_s = 120\n[tail]\nbacklog_lines = 0\n"
    )
    return path


async def test_a_stuck_client_gets_every_line_from_the_files_and_holds_nobody_back(
    tmp_path: Path, start_server: Callable[..., Server]
) -> None:
    app, db = tmp_path / "app.log", tmp_path / "db.log"
    app.touch()
    db.touch()
    server = start_server(
        "--config", str(config(tmp_path)), "--log", f"app={app}", "--log", f"db={db}"
    )
    port = int(server.url.rsplit(":", 1)[1])
    stuck = StuckClient(port, "types=log&sources=app")
    await stuck.hello()
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{server.url}/events?types=log&sources=db") as resp:
            healthy = StreamReader(resp)
            await healthy.until("hello")
            write_burst(app, 0, LINES // 2)
            app.rename(tmp_path / "app.log.1")  # rotated by rename, mid-burst
            write_burst(app, LINES // 2, LINES // 2)
            # The healthy client on another source is not held back by the stuck one.
            for i in range(20):
                with db.open("a") as f:
                    f.write(f"db {i}\n")
                event = await healthy.next(timeout_s=5)
                assert event.json()["lines"] == [f"db {i}"]
    await stuck.read_through(f"app {LINES - 1} {PAD}")
    assert stuck.lines == [f"app {i} {PAD}" for i in range(LINES)]  # all, once, in order
    assert not [e for e in stuck.events if e.type == "gap"]
    stuck.sock.close()
    with urllib_get(f"{server.url}/metrics") as text:
        replayed = next(
            float(line.split()[1])
            for line in text.splitlines()
            if line.startswith("sse_monitor_events_replayed_total ")
        )
    assert replayed > 0  # it really was caught up from the files, not from memory


async def test_lines_no_longer_on_disk_are_a_gap_that_counts_them(
    tmp_path: Path, start_server: Callable[..., Server]
) -> None:
    app = tmp_path / "app.log"
    app.touch()
    server = start_server("--config", str(config(tmp_path)), "--log", f"app={app}")
    async with stuck_and_seen(server) as (stuck, seen):
        write_burst(app, 0, LINES // 2)
        rotated = tmp_path / "app.log.1"
        app.rename(rotated)
        write_burst(app, LINES // 2, LINES // 2)
        # Once the server has read past the rotated file, it is emptied (its bytes gone,
        # though the server may still hold it open).
        await seen(LINES - 1)
    os.truncate(rotated, 0)
    await stuck.read_through(f"app {LINES - 1} {PAD}")
    gaps = [e.json() for e in stuck.events if e.type == "gap"]
    got = stuck.lines
    assert gaps and all(g["lines"] > 0 for g in gaps)
    assert len(got) + sum(g["lines"] for g in gaps) == LINES  # what it got plus what it was told
    assert got[-(LINES // 2) :] == [f"app {i} {PAD}" for i in range(LINES // 2, LINES)]
    stuck.sock.close()


class urllib_get:  # noqa: N801 - reads like the function it stands for
    def __init__(self, url: str) -> None:
        self.url = url

    def __enter__(self) -> str:
        import urllib.request

        with urllib.request.urlopen(self.url, timeout=5) as resp:
            return str(resp.read().decode())

    def __exit__(self, *exc: object) -> None:
        pass


async def test_a_stuck_client_gets_lines_from_the_copy_after_copytruncate(
    tmp_path: Path, start_server: Callable[..., Server]
) -> None:
    """logrotate's copytruncate empties the file the records point into; the copy holds the
    same bytes at the same offsets, and the CRC finds them there."""
    app = tmp_path / "app.log"
    app.touch()
    conf = tmp_path / "logrotate.conf"
    conf.write_text(f"{app} {{\n  copytruncate\n  rotate 5\n  nocompress\n}}\n")
    server = start_server("--config", str(config(tmp_path)), "--log", f"app={app}")
    async with stuck_and_seen(server) as (stuck, seen):
        write_burst(app, 0, LINES // 2)
        await seen(LINES // 2 - 1)
        state = tmp_path / "logrotate.state"
        rotate = await asyncio.create_subprocess_exec(
            "logrotate", "-f", "-s", str(state), str(conf)
        )
        assert await rotate.wait() == 0
        assert (tmp_path / "app.log.1").stat().st_size > 0 and app.stat().st_size == 0
        write_burst(app, LINES // 2, LINES // 2)
        await seen(LINES - 1)
    await stuck.read_through(f"app {LINES - 1} {PAD}")
    assert stuck.lines == [f"app {i} {PAD}" for i in range(LINES)]  # all, once, in order
    assert not [e for e in stuck.events if e.type == "gap"]
    stuck.sock.close()


async def test_sse_monitor_tail_behind_a_slow_link_gets_every_line(
    tmp_path: Path, start_server: Callable[..., Server]
) -> None:
    """The tail client's output read at ~6 MB/s, its input written at once: the client (and
    so its connection) falls far behind the burst, and still prints every line, in order."""
    app = tmp_path / "app.log"
    app.touch()
    server = start_server("--config", str(config(tmp_path)), "--log", f"app={app}")
    tail = await asyncio.create_subprocess_exec(
        *MONITOR,
        "tail",
        server.url,
        "--lines",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert tail.stdout is not None and tail.stderr is not None
    # Lines before the client connected are its snapshot (--lines 0 shows none of them):
    # warm-up lines until one comes out say it is connected.
    async with asyncio.timeout(15):
        for k in range(1000):
            with app.open("a") as f:
                f.write(f"warm {k}\n")
            with contextlib.suppress(TimeoutError):
                if await asyncio.wait_for(tail.stdout.readline(), 0.2):
                    break
    async with stuck_and_seen(server) as (stuck, seen):  # a client that keeps up says when
        write_burst(app, 0, LINES)  # ~8 MB at once
        await seen(LINES - 1)
    stuck.sock.close()
    got: list[str] = []
    rest = b""
    async with asyncio.timeout(60):
        while got[-1:] != [f"app {LINES - 1} {PAD}"]:
            chunk = await tail.stdout.read(64 * 1024)  # ~6 MB/s: far slower than the burst
            assert chunk, (await tail.stderr.read()).decode()
            *whole, rest = (rest + chunk).split(b"\n")
            got += [line.decode() for line in whole]
            await asyncio.sleep(0.01)
    tail.send_signal(signal.SIGINT)
    await tail.wait()
    assert [line for line in got if not line.startswith("warm")] == [
        f"app {i} {PAD}" for i in range(LINES)
    ]


async def test_a_line_cut_at_the_maximum_is_caught_up_like_the_others(
    tmp_path: Path, start_server: Callable[..., Server]
) -> None:
    """A line over max_line_bytes goes out cut; a lapped client gets the same cut line from
    the file (its first bytes, by their own origin), not a gap."""
    app = tmp_path / "app.log"
    app.touch()
    conf = config(tmp_path)
    conf.write_text(conf.read_text() + "max_line_bytes = 1000\n")
    long = "L" * 100_000  # longer than a read: always cut, its rest skipped
    server = start_server("--config", str(conf), "--log", f"app={app}")
    async with stuck_and_seen(server) as (stuck, seen):
        with app.open("a") as f:
            for start in range(0, LINES, 1000):
                f.write("".join(f"app {i} {PAD}\n" for i in range(start, start + 1000)))
                f.write(f"{long} {start}\n")
                f.flush()
            f.write(f"app {LINES} {PAD}\n")
        await seen(LINES)
    await stuck.read_through(f"app {LINES} {PAD}")
    cut = "L" * 1000 + " […line truncated]"
    expected = []
    for start in range(0, LINES, 1000):
        expected += [f"app {i} {PAD}" for i in range(start, start + 1000)] + [cut]
    expected.append(f"app {LINES} {PAD}")
    assert stuck.lines == expected  # the cut lines too: all, once, in order
    assert not [e for e in stuck.events if e.type == "gap"]
    stuck.sock.close()
