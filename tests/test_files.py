"""FileSource on real files: backlog, appends, rotation, truncation, late, bad and refused
files, many files."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import subprocess
import time
import tracemalloc
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import MONITOR, Published, Server, wait_until

from monitor.config import TailConfig
from monitor.hub.events import LOG, STATUS
from monitor.hub.interface import Selector
from monitor.hub.memory import MemoryHub
from monitor.logspecs import default_logs
from monitor.sources.files import FileSource
from monitor.sources.follower import TRUNCATED


class Tail(Published):
    """A running FileSource and everything it published, read back from the hub."""

    def __init__(self, hub: MemoryHub, tailer: FileSource) -> None:
        super().__init__(hub)
        self.tailer = tailer

    def status(self) -> dict[str, Any]:
        self.poll()
        return self.statuses[-1] if self.statuses else {}

    async def wait_state(self, state: str, timeout_s: float = 5.0) -> dict[str, Any]:
        await wait_until(lambda: self.status().get("state") == state, timeout_s)
        return self.status()


@pytest.fixture
async def tail() -> AsyncIterator[Callable[..., Tail]]:
    tasks: list[asyncio.Task[None]] = []

    def start(pattern: str | Path, **options: Any) -> Tail:
        hub = MemoryHub(max_events=100_000, max_bytes=256 * 1024 * 1024)
        tailer = FileSource("app", str(pattern), TailConfig(**options))
        tasks.append(asyncio.create_task(tailer.run(hub)))
        return Tail(hub, tailer)

    yield start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def following_empty_log(
    tail: Callable[..., Tail], tmp_path: Path, **options: Any
) -> tuple[Path, Tail]:
    log = tmp_path / "app.log"
    log.touch()
    t = tail(log, **options)
    await t.wait_state("following")
    return log, t


def append(path: Path, text: str | bytes) -> None:
    with open(path, "ab") as f:
        f.write(text.encode() if isinstance(text, str) else text)


def numbered(start: int, stop: int) -> str:
    return "".join(f"line {i}\n" for i in range(start, stop))


async def test_backlog_is_the_last_n_lines(tmp_path: Path, tail: Callable[..., Tail]) -> None:
    log = tmp_path / "app.log"
    append(log, numbered(0, 500))
    t = tail(log, backlog_lines=100)
    assert await t.wait_lines(100) == [f"line {i}" for i in range(400, 500)]
    assert all(e["backlog"] for e in t.events)
    append(log, "live\n")
    assert (await t.wait_lines(101))[-1] == "live"
    assert "backlog" not in t.events[-1]
    status = await t.wait_state("following")
    assert status["mode"] == "inotify" and status["files"] == [str(log)]


async def test_backlog_of_a_huge_file_reads_only_its_end(
    tmp_path: Path, tail: Callable[..., Tail]
) -> None:
    log = tmp_path / "big.log"
    with open(log, "wb") as f:
        f.truncate(2 * 1024**3)  # 2 GiB of NULs, sparse: reading it all would take seconds
    append(log, "\nlast line\n")
    started = time.monotonic()
    t = tail(log, backlog_lines=1)
    assert await t.wait_lines(1) == ["last line"]
    print(f"backlog of a 2 GiB file in {time.monotonic() - started:.3f}s")


@pytest.mark.parametrize("use_inotify", [True, False])
async def test_appended_lines_arrive_once_in_order(
    tmp_path: Path, tail: Callable[..., Tail], use_inotify: bool
) -> None:
    log, t = await following_empty_log(tail, tmp_path, use_inotify=use_inotify)
    assert t.status()["mode"].startswith("inotify" if use_inotify else "polling")
    for start in range(0, 20_000, 1000):
        append(log, numbered(start, start + 1000))
        await asyncio.sleep(0)
    assert await t.wait_lines(20_000) == [f"line {i}" for i in range(20_000)]


async def test_crlf_line_ends_leave_no_carriage_return(
    tmp_path: Path, tail: Callable[..., Tail]
) -> None:
    log = tmp_path / "app.log"
    append(log, "backlog one\r\nbacklog two\r\n")
    t = tail(log)
    await t.wait_lines(2)
    append(log, "live\r\nbare \r inside\r\n")
    lines = await t.wait_lines(4)
    assert lines == ["backlog one", "backlog two", "live", "bare \r inside"]


async def test_file_that_appears_later_is_read_from_its_start(
    tmp_path: Path, tail: Callable[..., Tail]
) -> None:
    log = tmp_path / "later.log"
    t = tail(log, backlog_lines=1)
    status = await t.wait_state("waiting")
    assert str(log) in status["detail"]
    append(log, numbered(0, 5))  # more than the backlog: a new file is read whole
    assert await t.wait_lines(5) == [f"line {i}" for i in range(5)]
    await t.wait_state("following")


async def test_deleted_then_recreated_file_is_picked_up(
    tmp_path: Path, tail: Callable[..., Tail]
) -> None:
    log = tmp_path / "app.log"
    append(log, "before\n")
    t = tail(log)
    await t.wait_lines(1)
    log.unlink()
    await t.wait_state("waiting")
    assert any("gone" in s.get("change", "") for s in t.statuses)
    append(log, "after 1\nafter 2\n")
    assert await t.wait_lines(3) == ["before", "after 1", "after 2"]
    await t.wait_state("following")


async def test_glob_picks_up_files_added_later(tmp_path: Path, tail: Callable[..., Tail]) -> None:
    append(tmp_path / "a.log", "a1\n")
    t = tail(tmp_path / "*.log")
    await t.wait_lines(1)
    append(tmp_path / "b.log", "b1\n")
    append(tmp_path / "ignored.txt", "no\n")
    await t.wait_lines(2)
    append(tmp_path / "a.log", "a2\n")
    await t.wait_lines(3)
    by_file = {(e["file"], line) for e in t.events for line in e["lines"]}
    assert by_file == {
        (str(tmp_path / "a.log"), "a1"),
        (str(tmp_path / "b.log"), "b1"),
        (str(tmp_path / "a.log"), "a2"),
    }
    assert (await t.wait_state("following"))["files"] == [
        str(tmp_path / "a.log"),
        str(tmp_path / "b.log"),
    ]


async def test_rename_rotation_reads_old_file_to_its_end_then_new(
    tmp_path: Path, tail: Callable[..., Tail]
) -> None:
    log = tmp_path / "app.log"
    append(log, "one\n")
    t = tail(log)
    await t.wait_lines(1)
    log.rename(tmp_path / "app.log.1")
    append(tmp_path / "app.log.1", "two (old file, after rename)\n")
    append(log, "three (new file)\n")
    assert await t.wait_lines(3) == ["one", "two (old file, after rename)", "three (new file)"]
    assert any("rotated" in s.get("change", "") for s in t.statuses)
    assert t.tailer.stats.rotations == 1


async def test_truncation_is_detected_and_reported(
    tmp_path: Path, tail: Callable[..., Tail]
) -> None:
    log = tmp_path / "app.log"
    append(log, "a long first line before truncation\n")
    t = tail(log)
    await t.wait_lines(1)
    with open(log, "r+b") as f:
        f.truncate(0)
    append(log, "short\n")
    assert await t.wait_lines(2) == ["a long first line before truncation", "short"]
    # truncated and refilled past the old offset before anyone looked
    with open(log, "wb") as f:
        f.write(b"rewritten: longer than what was there before, so size alone can't tell\n")
    assert (await t.wait_lines(3))[-1].startswith("rewritten")
    assert sum("truncated" in s.get("change", "") for s in t.statuses) == 2


async def test_partial_line_is_flushed_after_a_timeout(
    tmp_path: Path, tail: Callable[..., Tail]
) -> None:
    log, t = await following_empty_log(tail, tmp_path, partial_flush_s=0.2)
    append(log, "whole\nno newline yet")
    assert await t.wait_lines(2) == ["whole", "no newline yet"]
    assert t.events[-1]["partial"] is True
    append(log, "next\n")
    assert (await t.wait_lines(3))[-1] == "next"


async def test_partial_line_completed_in_time_is_one_line(
    tmp_path: Path, tail: Callable[..., Tail]
) -> None:
    log, t = await following_empty_log(tail, tmp_path, partial_flush_s=30)
    append(log, "first half ")
    # the tailer has read the first half (and holds it: nothing published)
    await wait_until(lambda: t.tailer._live[str(log)].pos == 11)
    assert t.lines() == []
    append(log, "second half\n")
    assert await t.wait_lines(1) == ["first half second half"]


async def test_bad_bytes_become_replacement_characters_and_the_stream_goes_on(
    tmp_path: Path, tail: Callable[..., Tail]
) -> None:
    log, t = await following_empty_log(tail, tmp_path)
    append(log, b"bad \xff\xfe utf8\nnul \x00 byte\nhalf \xe2\x82 euro\nfine\n")
    assert await t.wait_lines(4) == [
        "bad \ufffd\ufffd utf8",
        "nul \ufffd byte",
        "half \ufffd euro",
        "fine",
    ]


async def test_overlong_lines_are_cut_and_memory_stays_bounded(
    tmp_path: Path, tail: Callable[..., Tail]
) -> None:
    log, t = await following_empty_log(tail, tmp_path, max_line_bytes=64 * 1024)
    tracemalloc.start()
    with open(log, "ab") as f:
        block = b"x" * (1024 * 1024)
        for _ in range(100):  # 100 MB without a newline
            f.write(block)
        f.write(b"\nshort one\n" + b"y" * 70_000 + b"\nlast\n")
    lines = await t.wait_lines(4, timeout_s=30)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"100 MB line: peak traced memory {peak / 1e6:.1f} MB")
    assert lines[0] == "x" * 64 * 1024 + TRUNCATED
    assert lines[1:] == ["short one", "y" * 64 * 1024 + TRUNCATED, "last"]
    assert peak < 16 * 1024 * 1024


async def test_directory_and_fifo_are_errors_that_clear_when_fixed(
    tmp_path: Path, tail: Callable[..., Tail]
) -> None:
    log = tmp_path / "app.log"
    log.mkdir()
    t = tail(log)
    status = await t.wait_state("error")
    assert "is a directory" in status["detail"]
    log.rmdir()
    os.mkfifo(log)
    await wait_until(lambda: "FIFO" in t.status().get("detail", ""))
    log.unlink()
    append(log, "a real file at last\n")
    assert await t.wait_lines(1) == ["a real file at last"]
    await t.wait_state("following")


async def test_unreadable_file_is_an_error_status(
    tmp_path: Path, tail: Callable[..., Tail]
) -> None:
    if os.geteuid() == 0:
        # root reads any mode-000 file, and procfs (a write-only file there stood in for one)
        # is refused before it is opened: test_kernel_pseudo_files_are_refused
        pytest.skip("root reads every file: nothing stands for an unreadable log")
    target = tmp_path / "secret.log"
    append(target, "x\n")
    target.chmod(0)
    t = tail(target)
    status = await t.wait_state("error")
    assert "Permission denied" in status["detail"]


async def test_a_burst_does_not_stall_the_event_loop(
    tmp_path: Path, tail: Callable[..., Tail]
) -> None:
    log, t = await following_empty_log(tail, tmp_path)
    lags: list[float] = []

    async def ticker() -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.005)
            lags.append(time.monotonic() - before - 0.005)

    ticking = asyncio.create_task(ticker())
    append(log, numbered(0, 1_000_000))  # ~13 MB in one write
    await wait_until(lambda: t.tailer.stats.lines_read >= 1_000_000, timeout_s=60)
    ticking.cancel()
    print(f"1M-line burst: worst loop lag {max(lags) * 1000:.1f} ms over {len(lags)} ticks")
    assert max(lags) < 0.25
    assert t.lines()[-1] == "line 999999"


def test_default_logs_are_the_readable_ones(tmp_path: Path) -> None:
    append(tmp_path / "syslog", "x\n")
    (tmp_path / "dir").mkdir()
    candidates = {
        "syslog": str(tmp_path / "syslog"),
        "missing": str(tmp_path / "missing"),
        "dir": str(tmp_path / "dir"),
    }
    assert default_logs(candidates) == {"syslog": str(tmp_path / "syslog")}


async def test_status_events_are_published_only_on_change(
    tmp_path: Path, tail: Callable[..., Tail]
) -> None:
    log, t = await following_empty_log(tail, tmp_path)
    for i in range(20):
        append(log, f"{i}\n")
        await t.wait_lines(i + 1)
    t.poll()
    assert len([s for s in t.statuses if s["state"] == "following"]) == 1
    assert t.hub.latest(STATUS)["app"]["state"] == "following"


async def test_a_burst_larger_than_the_ring_reaches_a_reader_that_fell_behind_complete(
    tmp_path: Path,
) -> None:
    """The file is the history: a reader that read nothing while a burst lapped the ring is
    caught up from the file, every line once and in order, without a gap."""
    log = tmp_path / "app.log"
    log.touch()
    hub = MemoryHub(max_events=1000, max_bytes=256 * 1024)  # 32 KiB per read
    tailer = FileSource("app", str(log), TailConfig(backlog_lines=0))
    task = asyncio.create_task(tailer.run(hub))
    got: list[str] = []
    gaps = 0
    try:
        await wait_until(lambda: hub.latest(STATUS).get("app", {}).get("state") == "following")
        async with hub.subscribe(Selector(types=frozenset({LOG}))) as chunks:
            await anext(chunks)  # the hello; then the reader reads nothing for a while
            append(log, numbered(0, 200_000))  # ~2.5 MB: ten rings' worth
            await wait_until(lambda: tailer.stats.lines_read == 200_000, timeout_s=30)
            async with asyncio.timeout(60):
                async for frames in chunks:
                    for frame in frames:
                        gaps += frame.type == "gap"
                        if frame.type == LOG:
                            got.extend(json.loads(frame.json)["lines"])
                    if len(got) >= 200_000:
                        break
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert gaps == 0 and hub.stats().replayed > 0
    assert got == numbered(0, 200_000).splitlines()


async def test_glob_refuses_symlinks_out_of_its_directory_and_into_proc(
    tmp_path: Path, tail: Callable[..., Tail]
) -> None:
    """Another user who can write the log directory must not get /etc/shadow or the
    server's environment shown to every viewer (#13.12)."""
    app, outside = tmp_path / "app", tmp_path / "outside"
    app.mkdir()
    outside.mkdir()
    append(outside / "secret", "SECRET\n")
    append(app / "a.log", "a1\n")
    append(app / "real.txt", "sibling1\n")
    (app / "current.log").symlink_to(app / "real.txt")  # within the directory: allowed
    (app / "zz.log").symlink_to(outside / "secret")
    (app / "env.log").symlink_to("/proc/self/environ")
    t = tail(app / "*.log")
    await t.wait_lines(2)
    append(app / "real.txt", "sibling2\n")  # the kernel names real.txt, not current.log
    append(outside / "secret", "SECRET2\n")
    append(app / "a.log", "a2\n")
    await t.wait_lines(4)
    status = await t.wait_state("following")
    assert status["files"] == [str(app / "a.log"), str(app / "current.log")]
    assert status["errors"] == [
        f"{app / 'env.log'} resolves to /proc/{os.getpid()}/environ, a kernel pseudo-file "
        "(procfs, sysfs); not followed",
        f"{app / 'zz.log'} is a symlink out of {app}; not followed",
    ]
    by_file = {(Path(e["file"]).name, line) for e in t.events for line in e["lines"]}
    assert by_file == {
        ("a.log", "a1"),
        ("a.log", "a2"),
        ("current.log", "sibling1"),
        ("current.log", "sibling2"),
    }


async def test_glob_refuses_a_symlinked_directory_out_of_it(
    tmp_path: Path, tail: Callable[..., Tail]
) -> None:
    app, outside = tmp_path / "app", tmp_path / "outside"
    (app / "web").mkdir(parents=True)
    outside.mkdir()
    append(app / "web" / "x.log", "web\n")
    append(outside / "x.log", "SECRET\n")
    (app / "evil").symlink_to(outside)
    t = tail(app / "*" / "x.log")
    assert await t.wait_lines(1) == ["web"]
    status = await t.wait_state("following")
    assert status["files"] == [str(app / "web" / "x.log")]
    assert status["errors"] == [f"{app / 'evil' / 'x.log'} is a symlink out of {app}; not followed"]


async def test_configured_symlink_is_followed(tmp_path: Path, tail: Callable[..., Tail]) -> None:
    """A path the operator named (no glob) may be a symlink anywhere but /proc and /sys."""
    (tmp_path / "data").mkdir()
    target = tmp_path / "data" / "app.log"
    append(target, "one\n")
    link = tmp_path / "app.log"
    link.symlink_to(target)
    t = tail(link)
    await t.wait_lines(1)
    append(target, "two\n")
    assert await t.wait_lines(2) == ["one", "two"]
    assert (await t.wait_state("following"))["files"] == [str(link)]


@pytest.mark.parametrize("via_symlink", [False, True])
async def test_kernel_pseudo_files_are_refused(
    tmp_path: Path, tail: Callable[..., Tail], via_symlink: bool
) -> None:
    """/proc/self/environ is the server's secrets; /proc/kmsg is consumed by reading."""
    path = Path("/proc/self/environ")
    if via_symlink:
        path = tmp_path / "app.log"
        path.symlink_to("/proc/self/environ")
    t = tail(path)
    status = await t.wait_state("error")
    assert status["detail"].endswith("a kernel pseudo-file (procfs, sysfs); not followed")
    assert status["detail"].startswith(f"{path} resolves to /proc/")
    assert t.lines() == []


async def test_glob_over_the_cap_follows_the_newest(
    tmp_path: Path, tail: Callable[..., Tail]
) -> None:
    now = time.time()
    for i in range(300):
        log = tmp_path / f"{i:03}.log"
        log.touch()
        os.utime(log, (now - 300 + i, now - 300 + i))
    t = tail(tmp_path / "*.log")
    status = await t.wait_state("following")
    assert status["files"] == [str(tmp_path / f"{i:03}.log") for i in range(44, 300)]
    assert status["errors"] == ["300 files match; following the 256 newest (cap)"]


async def test_a_write_is_read_from_the_file_inotify_names_only(
    tmp_path: Path, tail: Callable[..., Tail]
) -> None:
    """With many files, a write reads only its file; the safety poll still reads them all."""
    logs, elsewhere = tmp_path / "logs", tmp_path / "elsewhere"
    logs.mkdir()
    elsewhere.mkdir()
    for i in range(50):
        (logs / f"{i:02}.log").touch()
    # Written through a hard link in an unwatched directory, the kernel reports the write
    # there, not in logs/: only the safety poll can see it.
    os.link(logs / "49.log", elsewhere / "49.log")
    t = tail(logs / "*.log")
    await t.wait_state("following")
    append(elsewhere / "49.log", "unannounced\n")
    append(logs / "00.log", "announced\n")
    assert await t.wait_lines(1) == ["announced"]
    assert await t.wait_lines(2, timeout_s=5) == ["announced", "unannounced"]


def app_status(url: str) -> dict[str, Any]:
    """Source `app`'s latest status, from GET /api/sources."""
    request = urllib.request.Request(f"{url}/api/sources", headers={"Host": "localhost"})
    with urllib.request.urlopen(request, timeout=5) as resp:
        (app,) = [s for s in json.load(resp) if s["name"] == "app"]
    return dict(app["status"])


def test_too_many_open_files_is_a_status_and_the_server_still_listens(tmp_path: Path) -> None:
    """200 files under a 64-descriptor limit: the server listens, serves the files it could
    open, and says why the rest are not followed (#13.16: it never listened, said nothing)."""
    for i in range(200):
        append(tmp_path / f"{i:03}.log", f"line of {i}\n")

    def low_fd_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

    proc = subprocess.Popen(
        [*MONITOR, "serve", "--port", "0", "--log", f"app={tmp_path}/*.log"],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=low_fd_limit,
    )
    server = Server(proc)
    try:
        url = server.wait_for_url()
        with urllib.request.urlopen(f"{url}/healthz", timeout=5) as resp:
            assert resp.status == 200
        deadline = time.monotonic() + 5
        while (status := app_status(url))["state"] == "starting":
            assert time.monotonic() < deadline, "no status after 5s"
            time.sleep(0.02)
        assert status["state"] == "following" and 0 < len(status["files"]) < 64
        (note,) = [e for e in status["errors"] if e.startswith("too many open files: ")]
        assert note.endswith("; raise LimitNOFILE or narrow the glob")
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
        server.all_stderr()


@pytest.mark.skipif(os.geteuid() != 0, reason="the warning is for root")
def test_running_as_root_is_one_warning(
    tmp_path: Path, start_server: Callable[..., Server]
) -> None:
    server = start_server("--log", f"a={tmp_path}/a.log", "--log", f"b={tmp_path}/b.log")
    server.proc.terminate()
    assert server.proc.wait(timeout=10) == 0
    assert server.all_stderr().count("running as root") == 1
