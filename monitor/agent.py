"""`sse-monitor agent`: watch this host as `serve` does (metrics, logs, journals, alert
rules, notifications) and publish it all to Redis for the dashboards; no HTTP port.
Stops cleanly on SIGTERM or SIGINT, saying so in Redis (the host shows `stopped`)."""

from __future__ import annotations

import asyncio
import logging
import signal

from monitor.config import Config
from monitor.host import build_watch, running
from monitor.state import StateDir
from monitor.systemd import notify, run_status, run_watchdog, watchdog_interval_s
from monitor.tasks import cancel_and_wait

log = logging.getLogger("monitor")


async def run_agent(config: Config) -> None:
    """Run until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # logrotate's postrotate habit is `kill -HUP`: nothing to reload, but no exit either.
    loop.add_signal_handler(signal.SIGHUP, log.info, "SIGHUP: nothing to reload; carrying on")
    state = StateDir.open(config.state_dir) if config.state_dir else None
    watch = build_watch(config, state=state, with_history=False)
    publisher = watch.publisher
    assert publisher is not None  # cli refuses an agent without --redis
    log.info("agent for host %s: %d log sources", watch.host, len(config.log_names()))
    tasks = []
    try:
        async with running(watch):
            notify("READY=1")

            def status() -> str:
                where = "publishing" if publisher.is_connected else "Redis unreachable"
                return f"{where}: {publisher.published} events"

            tasks.append(asyncio.create_task(run_status(status)))
            if (interval_s := watchdog_interval_s()) is not None:
                tasks.append(asyncio.create_task(run_watchdog(interval_s)))
            await stop.wait()
            notify("STOPPING=1")
            log.info("stopping")
            watch.hub.close()
    finally:
        await cancel_and_wait(tasks)
        if state is not None:
            state.close()
