"""Rotation by the real logrotate while a writer appends thousands of lines a second."""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conftest import wait_until

from monitor.client import SSEParser
from monitor.events import LOG
from monitor.hub import EventHub, Selector
from monitor.tailer import FileTailer

pytestmark = pytest.mark.skipif(not shutil.which("logrotate"), reason="needs logrotate")
WRITER = Path(__file__).with_name("log_writer.py")
LINES, RATE, ROTATIONS = 20_000, 5_000, 5


class Received:
    """Lines the tailer published, read back from the hub."""

    def __init__(self, hub: EventHub) -> None:
        self.hub, self.lines, self._cursor, self._parser = hub, list[str](), 1, SSEParser()

    def count(self) -> int:
        while True:
            data, self._cursor = self.hub.read(self._cursor, Selector(frozenset({LOG})))
            if not data:
                return len(self.lines)
            for event in self._parser.feed(data):
                self.lines += event.json()["lines"]


@pytest.fixture
async def tailer(tmp_path: Path) -> AsyncIterator[tuple[FileTailer, Received]]:
    hub = EventHub(max_events=100_000, max_bytes=64 * 1024 * 1024)
    tailer = FileTailer("app", str(tmp_path / "app.log"))
    (tmp_path / "app.log").touch()
    task = asyncio.create_task(tailer.run(hub))
    await wait_until(lambda: hub.statuses().get("app", {}).get("state") == "following")
    yield tailer, Received(hub)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def rotate_while_writing(tmp_path: Path, mode: str, seen: Received, *, reopen: bool) -> None:
    conf = tmp_path / "logrotate.conf"
    conf.write_text(f"{tmp_path / 'app.log'} {{\n  {mode}\n  rotate 50\n  nocompress\n}}\n")
    args = [str(WRITER), str(tmp_path / "app.log"), str(LINES), str(RATE)]
    writer = await asyncio.create_subprocess_exec(
        sys.executable, *args, *(["--reopen"] if reopen else [])
    )
    for n in range(1, ROTATIONS + 1):
        # rotate each time another slice of the lines has been written and seen
        await wait_until(lambda n=n: seen.count() >= n * LINES // (ROTATIONS + 1), 20)
        rotate = await asyncio.create_subprocess_exec(
            "logrotate", "-f", "-s", str(tmp_path / "state"), str(conf)
        )
        assert await rotate.wait() == 0
    assert await writer.wait() == 0


async def test_create_mode_delivers_every_line_once_in_order(
    tmp_path: Path, tailer: tuple[FileTailer, Received]
) -> None:
    tail, seen = tailer
    await rotate_while_writing(tmp_path, "create", seen, reopen=True)
    await wait_until(lambda: seen.count() >= LINES, 20)
    assert seen.lines == [f"seq {i}" for i in range(LINES)]
    assert tail.rotations == ROTATIONS
    assert len(list(tmp_path.glob("app.log.*"))) == ROTATIONS


def loss_and_duplicates(lines: list[str]) -> tuple[int, int]:
    got = [int(line.removeprefix("seq ")) for line in lines if line.startswith("seq ")]
    return LINES - len(set(got)), len(got) - len(set(got))


async def test_copytruncate_is_no_worse_than_tail_F(
    tmp_path: Path, tailer: tuple[FileTailer, Received]
) -> None:
    tail, seen = tailer
    gnu = await asyncio.create_subprocess_exec(
        "tail",
        "-F",
        "-n",
        "0",
        str(tmp_path / "app.log"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    gnu_lines: list[str] = []

    async def read_gnu() -> None:
        assert gnu.stdout is not None
        async for line in gnu.stdout:
            gnu_lines.append(line.decode().rstrip("\n"))

    reading = asyncio.create_task(read_gnu())
    await rotate_while_writing(tmp_path, "copytruncate", seen, reopen=False)
    final = LINES - 1
    await wait_until(lambda: seen.count() > 0 and seen.lines[-1] == f"seq {final}", 20)
    await wait_until(lambda: bool(gnu_lines) and gnu_lines[-1] == f"seq {final}", 20)
    gnu.terminate()
    await gnu.wait()
    reading.cancel()
    ours, theirs = loss_and_duplicates(seen.lines), loss_and_duplicates(gnu_lines)
    print(
        f"copytruncate x{ROTATIONS}, {LINES} lines at {RATE}/s: "
        f"sse-monitor lost {ours[0]} dup {ours[1]}; tail -F lost {theirs[0]} dup {theirs[1]}"
    )
    assert tail.truncations == ROTATIONS
    assert ours[0] <= theirs[0] and ours[1] <= theirs[1]
