"""Many hosts: real agents publish to a real redis-server, real dashboard servers (`serve
--redis`) read it; clients move between dashboards, dashboards and Redis restart, agents
die; every client resumes exactly or is told `reset`, never silently skipped."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis
from aiohttp import web
from helpers import MONITOR, Server, StreamReader, wait_until, wait_until_sync
from redis_server import RedisServer, add_acl_user

from monitor.fleet.keys import events_key, metrics_key, sticky_key

Start = Callable[..., Server]


def get_json(url: str) -> tuple[int, Any]:
    """Status and JSON body of a GET."""
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def hosts_of(url: str) -> dict[str, dict[str, Any]]:
    """The dashboard's hosts, by name."""
    return {h["name"]: h for h in get_json(f"{url}/api/hosts")[1]["hosts"]}


def start_fleet_agent(
    start_agent: Start, server: RedisServer, tmp_path: Path, name: str, *extra: str
) -> tuple[Server, Path]:
    """An agent for host `name` following its own app.log; returns it and the log."""
    log = tmp_path / f"{name}.log"
    log.touch()
    flags: tuple[str, ...] = ("--redis", server.url, "--name", name, "--log", f"app={log}")
    flags += ("--state-dir", str(tmp_path / f"state-{name}"), "--interval", "0.5", *extra)
    return start_agent(*flags), log


def start_dashboard(start_server: Start, server: RedisServer, *hosts: str) -> str:
    """A fleet server reading `server`; returns its URL once it lists every one of hosts."""
    dashboard = start_server("--redis", server.url, "--no-publish")
    assert wait_until_sync(lambda: set(hosts) <= set(hosts_of(dashboard.url)), 10)
    return dashboard.url


def write_lines(log: Path, prefix: str, count: int) -> list[str]:
    lines = [f"{prefix} {i}" for i in range(count)]
    with log.open("a") as f:
        f.writelines(f"{line}\n" for line in lines)
    return lines


async def read_lines(reader: StreamReader, count: int) -> tuple[list[str], str, list[str]]:
    """The next `count` log lines, the id of the event holding the last, and the types of
    every event read on the way."""
    lines: list[str] = []
    types: list[str] = []
    last_id = ""
    while len(lines) < count:
        event = await reader.next(10)
        types.append(event.type)
        if event.type == "log":
            lines += event.json()["lines"]
            last_id = event.id
    return lines, last_id, types


def open_stream(
    session: aiohttp.ClientSession, url: str, host: str, last_id: str | None = None
) -> Any:
    headers = {"Last-Event-ID": last_id} if last_id else {}
    return session.get(f"{url}/events", params={"host": host, "types": "log"}, headers=headers)


def test_host_endpoints_name_the_hosts_they_need(
    redis_server: RedisServer, start_agent: Start, start_server: Start, tmp_path: Path
) -> None:
    """Every per-host endpoint of a fleet server asks for ?host= (400 listing the hosts) and
    refuses a host it does not know (404); /api/hosts lists them."""
    start_fleet_agent(start_agent, redis_server, tmp_path, "web1")
    start_fleet_agent(start_agent, redis_server, tmp_path, "db1")
    url = start_dashboard(start_server, redis_server, "web1", "db1")
    for path in (
        "/events",
        "/api/state",
        "/api/history",
        "/api/logs?source=app",
        "/api/sources",
        "/tail/app",
    ):
        status, body = get_json(f"{url}{path}")
        assert status == 400 and body["hosts"] == ["db1", "web1"], (path, body)
        sep = "&" if "?" in path else "?"
        status, body = get_json(f"{url}{path}{sep}host=nope")
        assert status == 404 and body["hosts"] == ["db1", "web1"], (path, body)
    status, page = get_json(f"{url}/api/sources?host=web1")
    assert status == 200 and [s["name"] for s in page] == ["metrics", "app"]
    hosts = hosts_of(url)
    assert hosts["web1"]["state"] == "up" and hosts["web1"]["cpu"] is not None
    status, history = get_json(f"{url}/api/history?host=web1&window=5m")
    assert status == 200 and history["series"]["cpu.percent"]


async def test_a_client_moved_between_dashboards_and_restarts_resumes_exactly(
    redis_server: RedisServer, start_agent: Start, start_server: Start, tmp_path: Path
) -> None:
    _agent, log = start_fleet_agent(start_agent, redis_server, tmp_path, "web1")
    first = start_dashboard(start_server, redis_server, "web1")
    second = start_dashboard(start_server, redis_server, "web1")
    async with aiohttp.ClientSession() as session:
        async with open_stream(session, first, "web1") as resp:
            reader = StreamReader(resp)
            want = write_lines(log, "on first", 30)
            got, last_id, _types = await read_lines(reader, 30)
        assert got == want
        # Written while the client is between dashboards: the second gives exactly these.
        want = write_lines(log, "between", 30)
        async with open_stream(session, second, "web1", last_id) as resp:
            got, last_id, types = await read_lines(StreamReader(resp), 30)
        assert got == want and types == ["log"] * len(types)  # no hello, no reset: resumed
    # Every dashboard restarts (killed): a new one resumes the same id.
    want = write_lines(log, "while no dashboard", 30)
    third = start_dashboard(start_server, redis_server, "web1")
    async with aiohttp.ClientSession() as session:
        async with open_stream(session, third, "web1", last_id) as resp:
            reader = StreamReader(resp)
            got, last_id, types = await read_lines(reader, 30)
            assert got == want and set(types) == {"log"}
            live = write_lines(log, "live", 5)
            assert (await read_lines(reader, 5))[0] == live


@pytest.mark.parametrize("aof", [True, False], ids=["aof", "no-persistence"])
async def test_after_redis_restarts_a_client_resumes_exactly_or_is_told_reset(
    aof: bool, start_agent: Start, start_server: Start, tmp_path: Path
) -> None:
    server = RedisServer(tmp_path / "redis", aof=aof).start()
    try:
        _agent, log = start_fleet_agent(start_agent, server, tmp_path, "web1")
        url = start_dashboard(start_server, server, "web1")
        async with aiohttp.ClientSession() as session:
            async with open_stream(session, url, "web1") as resp:
                want = write_lines(log, "before", 10)
                got, last_id, _types = await read_lines(StreamReader(resp), 10)
                assert got == want
            server.restart()
            want = write_lines(log, "after", 10)
            if aof:
                # The agent publishes what it kept; the dashboard reads on; the id holds.
                async with open_stream(session, url, "web1", last_id) as resp:
                    got, _id, types = await read_lines(StreamReader(resp), 10)
                assert got == want and set(types) == {"log"}
            else:
                async with open_stream(session, url, "web1", last_id) as resp:
                    reader = StreamReader(resp)
                    event = await reader.next(10)
                    assert event.type == "reset"
                    assert "no longer in Redis" in event.json()["reason"]
    finally:
        server.kill()


async def test_a_trimmed_id_is_a_reset_not_a_silent_skip(
    redis_server: RedisServer, start_agent: Start, start_server: Start, tmp_path: Path
) -> None:
    """XRANGE from a trimmed id would start at the first entry kept, silently: not here."""
    _agent, log = start_fleet_agent(start_agent, redis_server, tmp_path, "web1")
    url = start_dashboard(start_server, redis_server, "web1")
    async with aiohttp.ClientSession() as session:
        async with open_stream(session, url, "web1") as resp:
            write_lines(log, "soon trimmed", 5)
            _got, last_id, _types = await read_lines(StreamReader(resp), 5)
        write_lines(log, "kept", 5)
        admin = redis_server.client()
        # Once the lines after it are in, trim up to the newest entry: the id is gone.
        key = events_key("web1")
        assert wait_until_sync(
            lambda: any(b"kept 4" in f[b"d"] for _id, f in admin.xrevrange(key, count=50))
        )
        newest = admin.xrevrange(events_key("web1"), count=1)[0][0].decode()
        admin.xtrim(events_key("web1"), minid=newest, approximate=False)  # as the budget does
        async with open_stream(session, url, "web1", last_id) as resp:
            event = await StreamReader(resp).next(10)
        assert event.type == "reset"


def test_a_dead_host_turns_stale_then_down_and_a_stopped_one_says_so_at_once(
    redis_server: RedisServer, start_agent: Start, start_server: Start, tmp_path: Path
) -> None:
    dead, _ = start_fleet_agent(start_agent, redis_server, tmp_path, "dies")
    stops, _ = start_fleet_agent(start_agent, redis_server, tmp_path, "stops")
    url = start_dashboard(start_server, redis_server, "dies", "stops")
    assert wait_until_sync(lambda: hosts_of(url)["dies"]["state"] == "up")
    last_seen = hosts_of(url)["dies"]["last_seen"]
    dead.proc.kill()
    killed_at = time.monotonic()
    stops.proc.send_signal(signal.SIGTERM)
    stopped_at = time.monotonic()
    assert wait_until_sync(lambda: hosts_of(url)["stops"]["state"] == "stopped", 3)
    assert time.monotonic() - stopped_at < 1.5
    assert wait_until_sync(lambda: hosts_of(url)["dies"]["state"] == "stale", 3.5)
    assert time.monotonic() - killed_at < 3.0
    assert wait_until_sync(lambda: hosts_of(url)["dies"]["state"] == "down", 10.5)
    assert time.monotonic() - killed_at < 10.0
    down = hosts_of(url)["dies"]
    assert down["last_seen"] >= last_seen and down["cpu"] is not None  # its last data stays


async def test_redis_connections_do_not_grow_with_clients(
    redis_server: RedisServer, start_agent: Start, start_server: Start, tmp_path: Path
) -> None:
    _agent, log = start_fleet_agent(start_agent, redis_server, tmp_path, "web1")
    start_fleet_agent(start_agent, redis_server, tmp_path, "web2")
    url = start_dashboard(start_server, redis_server, "web1", "web2")
    admin = redis_server.client()

    def dashboard_connections() -> int:
        return sum(1 for c in admin.client_list() if c["name"].startswith("sse-monitor-dash"))

    async with aiohttp.ClientSession() as session:
        streams = [
            await open_stream(session, url, host).__aenter__() for host in ["web1", "web2"] * 20
        ]
        try:
            readers = [StreamReader(r) for r in streams]
            write_lines(log, "to all", 3)
            for reader, host in zip(readers, ["web1", "web2"] * 20, strict=True):
                if host == "web1":
                    assert (await read_lines(reader, 3))[0] == ["to all 0", "to all 1", "to all 2"]
            assert dashboard_connections() <= 10
        finally:
            for resp in streams:
                resp.close()


def test_tail_follows_one_host_through_any_dashboard(
    redis_server: RedisServer, start_agent: Start, start_server: Start, tmp_path: Path
) -> None:
    _agent, log = start_fleet_agent(start_agent, redis_server, tmp_path, "web1")
    url = start_dashboard(start_server, redis_server, "web1")
    write_lines(log, "backlog", 3)
    with subprocess.Popen(
        [*MONITOR, "tail", url, "--host", "web1", "--lines", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            backlog = [proc.stdout.readline() for _ in range(3)]
            assert backlog == [f"backlog {i}\n" for i in range(3)]
            write_lines(log, "live", 1)
            assert proc.stdout.readline() == "live 0\n"
        finally:
            proc.kill()
    no_host = subprocess.run([*MONITOR, "tail", url], capture_output=True, text=True, timeout=30)
    assert no_host.returncode == 1 and "hosts: web1" in no_host.stderr


async def test_a_bad_id_or_a_hostile_entry_never_breaks_a_stream(
    redis_server: RedisServer, start_agent: Start, start_server: Start, tmp_path: Path
) -> None:
    """An entry written into a host's stream by someone else (a newline in its data would
    inject SSE lines) is skipped; a malformed Last-Event-ID is a reset."""
    _agent, log = start_fleet_agent(start_agent, redis_server, tmp_path, "web1")
    redis_server.client().xadd("smon:<img src=x>:metrics", {"t": "metrics", "d": "{}"})
    url = start_dashboard(start_server, redis_server, "web1")
    admin = redis_server.client()
    async with aiohttp.ClientSession() as session:
        async with open_stream(session, url, "web1", "not-an-id") as resp:
            reader = StreamReader(resp)
            assert (await reader.next(10)).type == "reset"
            admin.xadd(events_key("web1"), {"t": "log", "d": '{"lines":["x"]}\n\nevent: alert'})
            admin.xadd(events_key("web1"), {"t": "nonsense", "d": "{}"})
            want = write_lines(log, "after", 2)
            got, _id, types = await read_lines(reader, 2)
            assert got == want and set(types) <= {"log", "status", "metrics"}
    # A key whose name is no host name was there at the dashboard's first scan: never listed.
    assert set(hosts_of(url)) == {"web1"}


def shows_down(url: str, is_down: bool) -> Callable[[], bool]:
    """A check: the dashboard at `url` lists web1 with (or without) `host down`."""
    return lambda: ("host down" in hosts_of(url)["web1"]["alerts"]) == is_down


async def test_a_dead_host_is_one_alert_and_one_notification_for_the_whole_fleet(
    redis_server: RedisServer,
    start_agent: Start,
    start_server: Start,
    tmp_path: Path,
    aiohttp_server: Any,
) -> None:
    """Two dashboards, each with the same webhook target: the host's death is announced
    once in Redis and delivered once, and so is its return."""
    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response()

    app = web.Application()
    app.router.add_post("/hook", hook)
    receiver = await aiohttp_server(app)
    config = tmp_path / "dashboard.toml"
    config.write_text(
        f'[[notify]]\nname = "ops"\nkind = "webhook"\nurl = "{receiver.make_url("/hook")}"\n'
        'rules = ["host down"]\n'
    )
    agent, _log = start_fleet_agent(start_agent, redis_server, tmp_path, "web1")
    flags = ("--redis", redis_server.url, "--no-publish", "--config", str(config))
    dashboards = [start_server(*flags).url, start_server(*flags).url]
    await wait_until(
        lambda: all(hosts_of(url).get("web1", {}).get("state") == "up" for url in dashboards), 10
    )
    agent.proc.kill()
    agent.proc.wait(timeout=10)
    await wait_until(lambda: any(r["state"] == "firing" for r in received), 15)
    for url in dashboards:  # every fleet page shows it
        await wait_until(shows_down(url, True), 5)
    start_fleet_agent(start_agent, redis_server, tmp_path, "web1")
    await wait_until(lambda: any(r["state"] == "resolved" for r in received), 15)
    for url in dashboards:
        await wait_until(shows_down(url, False), 5)
    admin = redis_server.client()
    entries = admin.xrange("smon-fleet:alerts")
    states = [json.loads(fields[b"d"])["state"] for _id, fields in entries]
    assert states == ["firing", "resolved"]
    assert [(r["rule"], r["host"], r["state"]) for r in received] == [
        ("host down", "web1", "firing"),
        ("host down", "web1", "resolved"),
    ]


async def test_a_dashboard_cut_off_from_redis_announces_nobody_down_for_reading_late(
    redis_server: RedisServer, start_agent: Start, start_server: Start, tmp_path: Path
) -> None:
    """While the dashboard cannot reach Redis, the agent goes on publishing: the dashboard
    sees the host down (it hears nothing). Back in Redis, it announces nothing before it has
    read what it missed: the host never stopped sending."""
    add_acl_user(redis_server, "dashboard", "dash-pass")
    (tmp_path / "dashboard.pw").write_text("dash-pass")
    config = tmp_path / "dashboard.toml"
    config.write_text(
        f'[redis]\nusername = "dashboard"\npassword_file = "{tmp_path}/dashboard.pw"\n'
        "stale_s = 0.5\ndown_s = 1\n"
    )
    start_fleet_agent(start_agent, redis_server, tmp_path, "web1", "--interval", "0.2")
    url = start_server("--redis", redis_server.url, "--no-publish", "--config", str(config)).url
    admin = redis_server.client()
    await wait_until(lambda: hosts_of(url).get("web1", {}).get("state") == "up", 10)
    await wait_until(lambda: admin.get("smon-fleet:lease") is not None, 10)
    admin.execute_command("ACL", "SETUSER", "dashboard", "off")
    admin.execute_command("CLIENT", "KILL", "USER", "dashboard")
    await wait_until(lambda: hosts_of(url)["web1"]["state"] == "down", 10)
    admin.delete("smon-fleet:lease")
    admin.execute_command("ACL", "SETUSER", "dashboard", "on")
    await wait_until(lambda: hosts_of(url)["web1"]["state"] == "up", 10)
    # The lease taken again, then renewed twice: the holder has had its turns to announce.
    await wait_until(lambda: admin.pttl("smon-fleet:lease") > 0, 10)
    for _turn in range(2):  # a 6 s lease renewed each second: its TTL climbs back
        await wait_until(lambda: admin.pttl("smon-fleet:lease") < 5500, 5)
        await wait_until(lambda: admin.pttl("smon-fleet:lease") > 5500, 5)
    assert admin.xrange("smon-fleet:alerts") == []


async def test_the_documented_acl_users_do_everything_and_nothing_more(
    redis_server: RedisServer, start_agent: Start, start_server: Start, tmp_path: Path
) -> None:
    """An agent and a dashboard with the users docs/redis-acl.txt gives: lines flow, a dead
    host is announced; the dashboard's user can write no host's keys."""
    add_acl_user(redis_server, "agent-web1", "agent-pass", host="web1")
    add_acl_user(redis_server, "dashboard", "dash-pass")
    redis_server.client().execute_command("ACL", "SETUSER", "default", "off")
    for role, password in (("agent", "agent-pass"), ("dashboard", "dash-pass")):
        (tmp_path / f"{role}.pw").write_text(password)
        user = "agent-web1" if role == "agent" else "dashboard"
        (tmp_path / f"{role}.toml").write_text(
            f'[redis]\nusername = "{user}"\npassword_file = "{tmp_path / role}.pw"\n'
        )
    admin_user = {"username": "dashboard", "password": "dash-pass"}
    agent, log = start_fleet_agent(
        start_agent, redis_server, tmp_path, "web1", "--config", str(tmp_path / "agent.toml")
    )
    flags = (
        "--redis",
        redis_server.url,
        "--no-publish",
        "--config",
        str(tmp_path / "dashboard.toml"),
    )
    url = start_server(*flags).url
    await wait_until(lambda: "web1" in hosts_of(url), 10)
    async with aiohttp.ClientSession() as session:
        async with open_stream(session, url, "web1") as resp:
            want = write_lines(log, "under acl", 3)
            assert (await read_lines(StreamReader(resp), 3))[0] == want
    agent.proc.kill()
    await wait_until(lambda: "host down" in hosts_of(url)["web1"]["alerts"], 15)
    dashboard = redis_server.client(**admin_user)
    with pytest.raises(redis.exceptions.NoPermissionError):
        dashboard.xadd(events_key("web1"), {"t": "log", "d": "{}"})
    with pytest.raises(redis.exceptions.NoPermissionError):
        dashboard.hset("smon:web1:sticky", "hello", "{}")


async def test_a_client_of_a_quiet_host_is_served_while_another_host_is_busy(
    redis_server: RedisServer, start_agent: Start, start_server: Start, tmp_path: Path
) -> None:
    """The tap of a second host starts while the follower is always reading the first
    (an entry every few ms, as from a busy agent): its client gets its lines at once."""
    admin = redis_server.client()
    hello = {"host": "busy", "interval_s": 1.0, "sources": [{"name": "app", "kind": "log"}]}
    admin.hset(sticky_key("busy"), "hello", json.dumps(hello))
    admin.xadd(metrics_key("busy"), {"t": "metrics", "d": "{}"})
    _quiet_agent, quiet_log = start_fleet_agent(start_agent, redis_server, tmp_path, "quiet")
    url = start_dashboard(start_server, redis_server, "busy", "quiet")
    stop = threading.Event()

    def flood() -> None:
        i = 0
        while not stop.is_set():
            body = json.dumps({"source": "app", "lines": [f"busy {i}"]})
            admin.xadd(events_key("busy"), {"t": "log", "i": f"1-{i}", "s": "app", "d": body})
            i += 1
            stop.wait(0.003)

    flooding = threading.Thread(target=flood)
    async with aiohttp.ClientSession() as session:
        async with open_stream(session, url, "busy") as busy:
            flooding.start()
            try:
                await StreamReader(busy).until("log", 10)
                async with asyncio.timeout(5), open_stream(session, url, "quiet") as quiet:
                    reader = StreamReader(quiet)
                    want = write_lines(quiet_log, "quiet", 20)
                    assert (await read_lines(reader, 20))[0] == want
            finally:
                stop.set()
                flooding.join()


async def test_a_hosts_earlier_lines_page_back_and_around_a_moment(
    redis_server: RedisServer, start_agent: Start, start_server: Start, tmp_path: Path
) -> None:
    """/api/logs?host= pages back through the host's events stream, `before` to `before`,
    to its start (null), and finds the lines around a moment."""
    _agent, log = start_fleet_agent(start_agent, redis_server, tmp_path, "web1")
    url = start_dashboard(start_server, redis_server, "web1")
    want: list[str] = []
    async with aiohttp.ClientSession() as session:
        async with open_stream(session, url, "web1") as resp:
            reader = StreamReader(resp)
            for batch in range(5):  # five writes, five events at least
                want += write_lines(log, f"batch {batch}", 4)
                await read_lines(reader, 4)
    got: list[str] = []
    before = ""
    while True:
        query = f"host=web1&source=app&limit=6{'&before=' + before if before else ''}"
        status, page = get_json(f"{url}/api/logs?{query}")
        assert status == 200
        got = [line for e in page["events"] for line in e["lines"]] + got
        if page["before"] is None:
            break
        before = page["before"]
    assert got == want
    status, page = get_json(f"{url}/api/logs?host=web1&source=app")
    # `at` finds the first event of a millisecond (ids are Redis's milliseconds), and two
    # batches can land in one: take an event after the first that is the first of its own.
    events = page["events"]
    ms = [e["id"].split("-")[0] for e in events]
    middle = next(e for i, e in enumerate(events) if i >= 2 and ms[i] != ms[i - 1])
    status, around = get_json(
        f"{url}/api/logs?host=web1&source=app&at={middle['ts']}&before=4&after=4"
    )
    # `at` is the first event of that millisecond (ids are Redis's milliseconds).
    assert status == 200 and around["at"].split("-")[0] == middle["id"].split("-")[0]
    assert middle["lines"][0] in [line for e in around["events"] for line in e["lines"]]


async def test_a_host_whose_keys_hold_nonsense_never_breaks_the_fleet(
    redis_server: RedisServer, start_agent: Start, start_server: Start, tmp_path: Path
) -> None:
    """A host's own keys are its agent's to write, nonsense included: a hello with a text
    interval, a sample of NaN and text figures, a sticky hash that is not a hash. The
    dashboard lists it, figures blank, and every other host goes on."""
    admin = redis_server.client()
    admin.hset(sticky_key("odd"), "hello", '{"interval_s": "x", "sources": 7}')
    sample = '{"ts": "soon", "cpu": {"percent": NaN}, "load": {"1m": "high"}, "disks": [{}]}'
    admin.xadd(metrics_key("odd"), {"t": "metrics", "d": sample})
    admin.set(sticky_key("worse"), "not a hash")
    admin.xadd(metrics_key("worse"), {"t": "metrics", "d": "[1, 2]"})
    _agent, log = start_fleet_agent(start_agent, redis_server, tmp_path, "web1")
    url = start_dashboard(start_server, redis_server, "web1", "odd", "worse")
    hosts = hosts_of(url)  # valid JSON: no NaN in it
    assert hosts["odd"]["cpu"] is None and hosts["odd"]["load"] is None
    status, sources = get_json(f"{url}/api/sources?host=odd")
    assert status == 200 and [s["name"] for s in sources] == ["metrics"]
    async with aiohttp.ClientSession() as session:
        async with open_stream(session, url, "web1") as resp:
            want = write_lines(log, "still", 3)
            assert (await read_lines(StreamReader(resp), 3))[0] == want
    # Turned into a string while followed: that host's stream alone stops being read.
    seen = hosts_of(url)["web1"]["last_seen"]
    admin.delete(metrics_key("odd"))
    admin.set(metrics_key("odd"), "not a stream")
    assert wait_until_sync(lambda: hosts_of(url)["web1"]["last_seen"] > seen + 2)
    assert hosts_of(url)["web1"]["state"] == "up"


def test_the_readme_gives_the_acl_users_the_suite_applies() -> None:
    """The users README's "Setting up Redis" shows are docs/redis-acl.txt's, which the
    ACL test applies: a reader who copies either gets what was tested."""
    root = Path(__file__).resolve().parent.parent
    tested = {
        line.split()[1]: line.replace("<host>", "web1").replace("<password>", "...password...")
        for line in (root / "docs" / "redis-acl.txt").read_text().splitlines()
        if line.startswith("user ")
    }
    shown = {
        line.split()[1]: line
        for line in (root / "README.md").read_text().splitlines()
        if line.startswith(("user agent-", "user dashboard "))
    }
    assert shown == {name.replace("<host>", "web1"): line for name, line in tested.items()}
