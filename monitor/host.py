"""What watches this host, HTTP or not: its hub, the sources publishing there, the consumers
(chart history, alert rules, notifications) and, with Redis, the publisher copying it all
there for the dashboards. `serve` and `agent` both run one."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from monitor import __version__
from monitor.alerts.engine import AlertEngine
from monitor.config import Config, ConfigError
from monitor.heap import freeze_start_up, keep_trimmed
from monitor.hub import create_hub
from monitor.hub.interface import Hub
from monitor.metrics.history import MetricsHistory
from monitor.metrics.saving import keep_saved, restore
from monitor.notify.notifier import Notifier
from monitor.notify.outbox import Outbox
from monitor.sources.files import FileSource
from monitor.sources.journal import JournalSource
from monitor.sources.sampler import MetricsSampler
from monitor.sources.supervisor import Source, supervise
from monitor.state import StateDir
from monitor.tasks import cancel_and_wait

if TYPE_CHECKING:
    from monitor.fleet.publisher import RedisPublisher


def host_name(config: Config) -> str:
    """This host's name: [redis] name (--name), else the machine's hostname."""
    return config.redis.name or socket.gethostname()


def hello_of(config: Config, host: str) -> dict[str, Any]:
    """What a client needs to know about a host before its first event."""
    return {
        "host": host,
        "version": __version__,
        "interval_s": config.metrics.interval_s,
        "sources": [{"name": n, "kind": "log"} for n in config.log_names()],
    }


def make_sources(config: Config) -> list[Source]:
    """The sources a config asks for."""
    tail = config.tail
    sources: list[Source] = [
        MetricsSampler(
            config.metrics.interval_s, process_interval_s=config.metrics.process_interval_s
        )
    ]
    sources += [FileSource(s.name, s.path, tail) for s in config.logs]
    sources += [
        JournalSource(
            j.name, j.matches, j.directory, tail.backlog_lines, max_line_bytes=tail.max_line_bytes
        )
        for j in config.journals
    ]
    return sources


@dataclass(slots=True)
class Watch:
    """One host watched: built by build_watch(), run by running()."""

    host: str
    hello: dict[str, Any]  # what a client learns first about this host
    hub: Hub
    sources: list[Source]
    alerts: AlertEngine
    notifier: Notifier
    history: MetricsHistory | None  # the charts' columns; an agent keeps none (Redis does)
    state: StateDir | None
    publisher: RedisPublisher | None


def build_watch(
    config: Config,
    *,
    state: StateDir | None,
    sources: list[Source] | None = None,
    with_history: bool = True,
) -> Watch:
    """The hub, sources and consumers a config asks for; nothing runs yet."""
    stream = config.stream
    host = host_name(config)
    hub = create_hub(
        max_events=stream.buffer_events,
        max_bytes=stream.buffer_bytes,
        history_events=stream.history_events,
        state=state,
    )
    history = None
    if with_history:
        history = MetricsHistory(
            full_s=config.history.full_s,
            interval_s=config.metrics.interval_s,
            bucket_s=config.history.bucket_s,
            downsampled_s=config.history.downsampled_s,
        )
    return Watch(
        host=host,
        hello=hello_of(config, host),
        hub=hub,
        sources=make_sources(config) if sources is None else sources,
        alerts=AlertEngine(hub, config.alerts, state=state),
        notifier=Notifier(
            config.notify, hub=hub, host=host, public_url=config.public_url, outbox=Outbox(state)
        ),
        history=history,
        state=state,
        publisher=make_publisher(config, host)
        if config.redis.url and config.redis.publish
        else None,
    )


def is_publishing(config: Config) -> bool:
    """True if this host's events go to Redis: always for an agent, and for serve --redis
    unless [redis] publish = false (--no-publish)."""
    return bool(config.redis.url) and config.redis.publish


def make_publisher(config: Config, host: str) -> RedisPublisher:
    """The copy of this host's events into Redis; a ConfigError without the redis extra."""
    try:
        from monitor.fleet.publisher import RedisPublisher
    except ImportError:
        raise ConfigError("--redis needs redis-py: pip install 'sse-monitor[redis]'") from None
    window_s = config.redis.metrics_s or config.history.full_s
    return RedisPublisher(config.redis, host, hello_of(config, host), window_s)


@asynccontextmanager
async def running(watch: Watch) -> AsyncIterator[None]:
    """Run the consumers, then every source under supervision (and the publisher) until the
    block ends; then cancel them all."""
    hub = watch.hub
    # Consumers first: tasks start in creation order, so each has opened its feed before any
    # source publishes its first event.
    tasks = []
    if watch.history is not None:
        tasks.append(asyncio.create_task(watch.history.run(hub), name="history"))
        if watch.state is not None:
            restore(watch.history, watch.state)  # before the history takes its first sample
            tasks.append(
                asyncio.create_task(keep_saved(watch.history, watch.state), name="history-saver")
            )
    tasks += [
        # The notifier before the rules: it must see the alerts they restore at start.
        asyncio.create_task(watch.notifier.run(hub), name="notify"),
        asyncio.create_task(watch.alerts.run(hub), name="alerts"),
    ]
    tasks += [asyncio.create_task(supervise(s, hub), name=s.name) for s in watch.sources]
    if watch.publisher is not None:
        tasks.append(asyncio.create_task(watch.publisher.run(hub), name="redis-publisher"))
    tasks.append(asyncio.create_task(keep_trimmed(), name="heap-trim"))
    freeze_start_up()
    try:
        yield
    finally:
        await cancel_and_wait(tasks)
