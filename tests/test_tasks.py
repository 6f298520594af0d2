"""Background tasks: a hub consumer survives an event it cannot handle; a shared run."""

from __future__ import annotations

import asyncio

import pytest
from helpers import wait_until

from monitor.hub.events import METRICS, Event
from monitor.hub.memory import MemoryHub
from monitor.tasks import SharedRuns, consume


async def test_a_consumer_skips_an_event_it_fails_on_and_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = MemoryHub()
    handled: list[int] = []

    def handle(event: Event) -> None:
        if event.payload["n"] == 1:
            raise KeyError("a bug met by one payload")
        handled.append(event.payload["n"])

    consumer = asyncio.create_task(consume(hub, frozenset({METRICS}), handle, "history"))
    # Its feed opens at the task's first step: publish until it hears one.
    await wait_until(lambda: hub.publish(METRICS, {"n": -1}) != "" and handled != [])
    for n in range(4):
        hub.publish(METRICS, {"n": n})
    await wait_until(lambda: handled[-1:] == [3])
    assert [n for n in handled if n >= 0] == [0, 2, 3]
    assert "history: could not handle a metrics event (1 so far)" in caplog.text
    hub.close()
    await asyncio.wait_for(consumer, 2)  # ends with the hub, not with the bug


async def test_a_shared_run_serves_every_caller_once_and_outlives_a_leaver() -> None:
    """Callers asking at once share one run; one leaving does not cancel it for the rest;
    a failed run reaches its callers and the next caller starts afresh."""
    runs = SharedRuns[int]()
    started = 0
    gate = asyncio.Event()

    async def read() -> int:
        nonlocal started
        started += 1
        await gate.wait()
        if started == 2:
            raise OSError("refused")
        return started

    leaver = asyncio.create_task(runs.run("k", read))
    stayers = [asyncio.create_task(runs.run("k", read)) for _ in range(3)]
    await asyncio.sleep(0)  # every caller has asked
    leaver.cancel()
    gate.set()
    assert await asyncio.gather(*stayers) == [1, 1, 1] and started == 1
    gate.clear()
    failing = asyncio.create_task(runs.run("k", read))
    await asyncio.sleep(0)
    gate.set()
    with pytest.raises(OSError):
        await failing
    assert await runs.run("k", read) == 3
