"""The heap trim gives freed memory back to the system (glibc)."""

from __future__ import annotations

import asyncio

import pytest
from helpers import wait_until

from monitor.heap import keep_trimmed, malloc_trim


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


async def test_freed_memory_inside_the_heap_goes_back_to_the_system() -> None:
    if malloc_trim() is None:
        pytest.skip("no malloc_trim in this C library")
    # 40 MiB in blocks malloc takes from its heap (under its 128 KiB mmap threshold), each
    # followed by a block that stays, so freeing them leaves holes malloc keeps by itself.
    blocks, pinned = [], []
    for _ in range(640):
        blocks.append(bytearray(64 * 1024))
        pinned.append(bytearray(1024))  # over 512 bytes: malloc, not Python's own pools
    del blocks
    held = rss_mib()
    task = asyncio.create_task(keep_trimmed(every_s=0.05))
    try:
        await wait_until(lambda: rss_mib() < held - 20, timeout_s=5)
    finally:
        task.cancel()
    assert len(pinned) == 640
