"""`sse-monitor agent`: a real agent publishing to a real redis-server, which goes away,
refuses it, comes back; every log line arrives once, in order, and nothing crashes."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from helpers import Server, wait_until_sync
from redis_server import RedisServer, add_acl_user

from monitor.fleet.keys import events_key, metrics_key, sticky_key

Agent = Callable[..., Server]


def published_lines(server: RedisServer, host: str, source: str = "app") -> list[str]:
    """Every log line the host's events stream holds of `source`, in stream order."""
    lines: list[str] = []
    for _id, fields in server.client().xrange(events_key(host)):
        if fields[b"t"] == b"log" and fields.get(b"s") == source.encode():
            lines += json.loads(fields[b"d"])["lines"]
    return lines


def lines_are(server: RedisServer, want: list[str]) -> Callable[[], bool]:
    """A check: the host's published lines are exactly `want`."""
    return lambda: published_lines(server, "web1") == want


def agent_flags(server: RedisServer, tmp_path: Path, log: Path, *extra: str) -> tuple[str, ...]:
    return (
        "--redis",
        server.url,
        "--name",
        "web1",
        "--log",
        f"app={log}",
        "--state-dir",
        str(tmp_path / "agent-state"),
        "--interval",
        "0.2",
        *extra,
    )


def test_agent_publishes_logs_metrics_and_hello(
    redis_server: RedisServer, start_agent: Agent, tmp_path: Path
) -> None:
    log = tmp_path / "app.log"
    log.write_text("before start\n")
    agent = start_agent(*agent_flags(redis_server, tmp_path, log))
    with log.open("a") as f:
        f.write("first\nsecond\n")
    assert wait_until_sync(
        lambda: published_lines(redis_server, "web1")[-2:] == ["first", "second"]
    )
    assert published_lines(redis_server, "web1") == ["before start", "first", "second"]
    client = redis_server.client()
    assert wait_until_sync(lambda: client.xlen(metrics_key("web1")) >= 2)
    _id, sample = client.xrevrange(metrics_key("web1"), count=1)[0]
    assert "cpu" in json.loads(sample[b"d"])
    hello = json.loads(client.hget(sticky_key("web1"), "hello"))
    assert hello["host"] == "web1" and hello["sources"] == [{"name": "app", "kind": "log"}]
    agent.proc.send_signal(signal.SIGTERM)
    assert agent.proc.wait(timeout=10) == 0
    # A clean stop says so: the dashboards show `stopped` at once.
    _id, last = client.xrevrange(metrics_key("web1"), count=1)[0]
    assert last[b"t"] == b"stopped"


def test_agent_outlives_redis_and_publishes_every_line_once(
    tmp_path: Path, start_agent: Agent
) -> None:
    """Redis absent at start, then killed while lines are written: once it is back (its AOF
    kept what it had), every line is in Redis exactly once, in order."""
    server = RedisServer(tmp_path / "redis", aof=True)
    log = tmp_path / "app.log"
    log.write_text("")
    agent = start_agent(*agent_flags(server, tmp_path, log), wait_for=None)
    agent.wait_for_line("retrying")
    with log.open("a") as f:
        f.writelines(f"while absent {i}\n" for i in range(50))
    server.start()
    expected = [f"while absent {i}" for i in range(50)]
    try:
        assert wait_until_sync(lambda: published_lines(server, "web1") == expected, 15)
        for outage in range(3):
            server.kill()
            with log.open("a") as f:
                f.writelines(f"outage {outage} line {i}\n" for i in range(200))
            expected = [*expected, *(f"outage {outage} line {i}" for i in range(200))]
            server.start()
            assert wait_until_sync(lines_are(server, expected), 15)
        assert agent.proc.poll() is None
    finally:
        server.kill()


def test_a_first_start_without_redis_publishes_all_the_hub_holds(
    tmp_path: Path, start_agent: Agent
) -> None:
    """Redis holds nothing of the host and the agent published nothing yet: what happened
    before Redis came up is the host's history, not only what a new client would be shown
    (here nothing: no recent history at all)."""
    server = RedisServer(tmp_path / "redis")
    config = tmp_path / "agent.toml"
    config.write_text("[stream]\nhistory_events = 0\n")
    log = tmp_path / "app.log"
    log.write_text("")
    agent = start_agent(*agent_flags(server, tmp_path, log, "--config", str(config)), wait_for=None)
    agent.wait_for_line("retrying")
    with log.open("a") as f:
        f.writelines(f"before redis {i}\n" for i in range(40))
    server.start()
    try:
        expected = [f"before redis {i}" for i in range(40)]
        assert wait_until_sync(lines_are(server, expected), 15)
        # Nothing went out twice.
        entries = [f for _id, f in server.client().xrange(events_key("web1"))]
        assert len({f[b"i"] for f in entries}) == len(entries)
    finally:
        server.kill()


def test_wrong_password_is_one_clear_line_not_a_crash(tmp_path: Path, start_agent: Agent) -> None:
    server = RedisServer(tmp_path / "redis", password="right horse").start()
    try:
        secret = tmp_path / "redis.pw"
        secret.write_text("wrong horse\n")
        log = tmp_path / "app.log"
        log.write_text("kept\n")
        flags = agent_flags(server, tmp_path, log, "--redis-password-file", str(secret))
        agent = start_agent(*flags, wait_for=None)
        line = agent.wait_for_line("redis:")
        assert "password" in line.lower() and "retrying" in line
        # It keeps trying (a reconnect every few seconds), quietly, and stays up.
        with pytest.raises(subprocess.TimeoutExpired):
            agent.proc.wait(timeout=3)
        # Put right, with the same agent still running: the line kept arrives.
        server.client().config_set("requirepass", "wrong horse")
        server.password = "wrong horse"
        assert wait_until_sync(lambda: published_lines(server, "web1") == ["kept"], 20)
        stderr = [s for s in agent.stderr if "redis:" in s and "retrying" in s]
        assert len(stderr) == 1, stderr
    finally:
        server.kill()


def test_an_agent_user_cannot_write_another_hosts_keys(
    redis_server: RedisServer, start_agent: Agent, tmp_path: Path
) -> None:
    """The ACL users the README gives: the agent of web1 publishes with its own, and that
    user cannot touch web2's keys nor read anyone else's."""
    add_acl_user(redis_server, "agent-web1", "agent-pass", host="web1")
    secret = tmp_path / "agent.pw"
    secret.write_text("agent-pass\n")
    log = tmp_path / "app.log"
    log.write_text("from web1\n")
    config = tmp_path / "agent.toml"
    config.write_text(f'[redis]\nusername = "agent-web1"\npassword_file = "{secret}"\n')
    start_agent(*agent_flags(redis_server, tmp_path, log, "--config", str(config)))
    assert wait_until_sync(lambda: published_lines(redis_server, "web1") == ["from web1"])
    agent_client = redis_server.client(username="agent-web1", password="agent-pass")
    for command in (
        ("XADD", events_key("web2"), "*", "t", "log", "d", "{}"),
        ("HSET", sticky_key("web2"), "hello", "{}"),
        ("DEL", events_key("web2")),
        ("XRANGE", events_key("web2"), "-", "+"),
        ("XADD", "smon-fleet:alerts", "*", "t", "alert", "d", "{}"),
        ("SET", "smon-fleet:lease", "me"),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            agent_client.execute_command(*command)


def test_metrics_beyond_the_buffer_arrive_as_a_gap_and_lines_still_arrive(
    tmp_path: Path, start_agent: Agent
) -> None:
    """An outage longer than the hub's buffer holds metrics: what it dropped is one `gap`
    saying how many events; the log lines written meanwhile are read again from the file,
    and a source's status that changed meanwhile is its latest in Redis after (the fleet's
    dashboards show that one)."""
    server = RedisServer(tmp_path / "redis", aof=True).start()
    try:
        log = tmp_path / "app.log"
        log.write_text("")
        other = tmp_path / "other.log"
        other.write_text("")
        config = tmp_path / "small.toml"
        config.write_text("[stream]\nbuffer_events = 16\nbuffer_bytes = 65536\n")
        flags = agent_flags(
            server, tmp_path, log, "--log", f"other={other}", "--config", str(config),
            "--interval", "0.05",
        )  # fmt: skip
        start_agent(*flags)
        client = server.client()

        def other_state() -> str | None:
            value = client.hget(sticky_key("web1"), "status:other")
            return json.loads(value.partition(b" ")[2])["state"] if value else None

        assert wait_until_sync(lambda: other_state() == "following")
        server.kill()
        other.unlink()
        with log.open("a") as f:
            f.writelines(f"during {i}\n" for i in range(100))
        # 16 events are under a second of 20 Hz metrics: wait for the hub to have dropped some.
        with pytest.raises(subprocess.TimeoutExpired):
            subprocess.run(["sleep", "2"], timeout=1.5)
        server.start()
        assert wait_until_sync(
            lambda: published_lines(server, "web1")[-100:] == [f"during {i}" for i in range(100)],
            15,
        )
        gaps = [
            json.loads(fields[b"d"])
            for _id, fields in client.xrange(events_key("web1"))
            if fields[b"t"] == b"gap"
        ]
        assert gaps and all(g["missed"] > 0 for g in gaps)
        assert other_state() == "waiting"
    finally:
        server.kill()


def test_an_agent_restarted_without_its_state_leaves_no_state_of_its_last_run(
    redis_server: RedisServer, start_agent: Agent, tmp_path: Path
) -> None:
    """Restarted without a state directory, the agent cannot resume where Redis stands and
    goes on from now with a `gap`; the host's states in Redis are then its new run's: a file
    that appeared is `following`, a source no longer configured has no status left."""
    app, old = tmp_path / "app.log", tmp_path / "old.log"
    old.write_text("")
    client = redis_server.client()

    def states() -> dict[str, str]:
        held = client.hgetall(sticky_key("web1"))
        return {
            k.decode(): json.loads(v.partition(b" ")[2])["state"]
            for k, v in held.items()
            if k.startswith(b"status:")
        }

    flags = ("--redis", redis_server.url, "--name", "web1", "--interval", "0.2", "--log")
    first = start_agent(*flags, f"app={app}", "--log", f"old={old}")
    running = {"status:metrics": "running"}
    assert wait_until_sync(
        lambda: states() == {"status:app": "waiting", "status:old": "following", **running}
    )
    first.proc.send_signal(signal.SIGTERM)
    assert first.proc.wait(timeout=10) == 0
    app.write_text("")
    start_agent(*flags, f"app={app}")
    assert wait_until_sync(lambda: states() == {"status:app": "following", **running}, 10)
