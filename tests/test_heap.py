"""The heap: start-up objects kept out of full collections; the trim gives freed memory back
to the system (glibc)."""

from __future__ import annotations

import asyncio
import subprocess
import sys

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


# In a fresh interpreter (freezing is for the whole process): the server's modules loaded,
# garbage left from start-up, then frozen; then garbage made by the running server.
FROZEN = """
import gc, weakref
import monitor.server, monitor.cli
from monitor.heap import freeze_start_up

class Node:
    pass

def cycle():
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)

before = cycle()
tracked = len(gc.get_objects())
freeze_start_up()
after = cycle()
print(before() is None, gc.get_freeze_count() >= tracked // 2, len(gc.get_objects()) < 1000)
gc.collect()
print(after() is None)
"""


def test_start_up_objects_leave_the_full_collections_and_later_garbage_is_still_collected() -> None:
    out = subprocess.run(
        [sys.executable, "-c", FROZEN], capture_output=True, text=True, timeout=60, check=True
    ).stdout.split()
    # start-up's garbage collected before the freeze; what lives frozen; a full collection
    # now walks only what came after; and that is still collected
    assert out == ["True", "True", "True", "True"]
