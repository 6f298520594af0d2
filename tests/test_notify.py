"""Notifications: alert transitions delivered to real receivers (aiohttp servers on free ports
that answer 200, 500, 429 with Retry-After, 404, hang, or close the connection) and to a real
program; exactly once, in order, retried, timed out, damped when flapping, repeated on an
interval; restart-safe with a real server process; checked at start."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from helpers import MONITOR, Server, StreamReader, wait_until
from pytest_aiohttp import AiohttpServer

from monitor.config import Config, ConfigError, load_config
from monitor.http.app import create_app
from monitor.http.keys import HUB
from monitor.hub.events import ALERT, STATUS
from monitor.hub.memory import MemoryHub
from monitor.notify import notifier as notifier_module
from monitor.notify import targets as targets_module
from monitor.notify.notifier import Notifier
from monitor.notify.outbox import Outbox
from monitor.notify.targets import Target, parse_targets
from monitor.state import StateDir


@dataclass
class Receiver:
    """A webhook receiver: answers each request with the next of `answers` (the last one
    repeats), records what it got."""

    answers: list[Callable[[web.Request], Awaitable[web.StreamResponse]]]
    got: list[tuple[float, dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.got.append((time.monotonic(), dict(request.headers), await request.read()))
        answer = self.answers[min(len(self.got), len(self.answers)) - 1]
        return await answer(request)

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, _, body in self.got]


def status(code: int, **headers: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def answer(request: web.Request) -> web.StreamResponse:
        return web.Response(status=code, text=f"answer {code}", headers=headers)

    return answer


async def hang(request: web.Request) -> web.StreamResponse:
    await asyncio.sleep(3600)
    return web.Response()


async def close_connection(request: web.Request) -> web.StreamResponse:
    assert request.transport is not None
    request.transport.close()
    return web.Response()


@pytest.fixture
async def receiver(
    aiohttp_server: AiohttpServer,
) -> AsyncIterator[Callable[..., Awaitable[Receiver]]]:
    async def start(*answers: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> Receiver:
        found = Receiver(list(answers) or [status(200)])
        app = web.Application()
        app.router.add_post("/hook/{token}", found.handle)
        server = await aiohttp_server(app)
        found.url = str(server.make_url("/hook/s3cret-token"))
        return found

    yield start


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    """Backoff from 50 ms, a 1 s flapping window, repeats allowed from 0.1 s: the same
    logic, in test time."""
    monkeypatch.setattr(notifier_module, "FIRST_BACKOFF_S", 0.05)
    monkeypatch.setattr(notifier_module, "FLAP_WINDOW_S", 1.0)
    monkeypatch.setattr(targets_module, "MIN_REPEAT_S", 0.1)


def targets(
    *tables: dict[str, Any], rules: tuple[str, ...] = ("disk", "cpu")
) -> tuple[Target, ...]:
    return parse_targets(list(tables), rules)


@pytest.fixture
async def running() -> AsyncIterator[Callable[..., tuple[MemoryHub, Notifier]]]:
    tasks: list[asyncio.Task[None]] = []

    def start(*target_list: Target) -> tuple[MemoryHub, Notifier]:
        hub = MemoryHub()
        notifier = Notifier(target_list, host="web-1", public_url="https://monitor.example.com")
        tasks.append(asyncio.create_task(notifier.run(hub)))
        return hub, notifier

    yield start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def fire(hub: MemoryHub, rule: str = "disk", state: str = "firing", since: float = 1e9) -> str:
    return hub.publish(
        ALERT,
        {
            "rule": rule,
            "severity": "critical",
            "state": state,
            "message": f"disks./.percent is 93 > 90 ({state})",
            "value": 93.0,
            "since": since,
            "kind": "metric",
        },
    )


async def test_a_webhook_gets_each_transition_once_with_the_documented_body(
    tmp_path: Path, receiver: Callable[..., Awaitable[Receiver]], running: Any
) -> None:
    hook = await receiver()
    secret = tmp_path / "token"
    secret.write_text("Bearer from-a-file\n")
    hub, notifier = running(
        *targets(
            {
                "name": "ops",
                "kind": "webhook",
                "url": hook.url,
                "headers": {"X-Team": "ops"},
                "header_files": {"Authorization": str(secret)},
            }
        )
    )
    await asyncio.sleep(0)  # the notifier's feed is open before the first alert
    firing = fire(hub, since=1_000_000_000)
    resolved = fire(hub, state="resolved", since=1_000_000_600)
    await wait_until(lambda: len(hook.got) == 2, 5)
    first, second = hook.bodies()
    assert first == {
        "id": firing,
        "rule": "disk",
        "severity": "critical",
        "state": "firing",
        "message": "disks./.percent is 93 > 90 (firing)",
        "host": "web-1",
        "value": 93.0,
        "started": 1_000_000_000,
        "ended": None,
        "url": "https://monitor.example.com/#t=1000000000",
        "repeat": 0,
        "test": False,
    }
    assert second["id"] == resolved and second["state"] == "resolved"
    assert (second["started"], second["ended"]) == (1_000_000_000, 1_000_000_600)
    headers = hook.got[0][1]
    assert headers["Authorization"] == "Bearer from-a-file" and headers["X-Team"] == "ops"
    assert headers["Idempotency-Key"] == firing
    await asyncio.sleep(0.3)
    assert len(hook.got) == 2  # nothing twice
    (view,) = notifier.view()
    assert (view["sent"], view["pending"], view["failed"]) == (2, 0, 0)
    assert view["where"].startswith("http://127.0.0.1:") and "s3cret" not in json.dumps(view)


async def test_failures_are_retried_in_order_until_delivered_and_4xx_is_not(
    receiver: Callable[..., Awaitable[Receiver]], running: Any, fast: None
) -> None:
    flaky = await receiver(status(500), close_connection, status(200))
    refused = await receiver(status(404))
    hub, notifier = running(
        *targets(
            {"name": "flaky", "kind": "webhook", "url": flaky.url},
            {"name": "refused", "kind": "webhook", "url": refused.url},
        )
    )
    await asyncio.sleep(0)
    ids = [fire(hub, state=s) for s in ("firing", "resolved")]
    await wait_until(lambda: len(flaky.got) == 4, 10)
    # The first was tried three times, then the second went: in order, each delivered once.
    assert [b["id"] for b in flaky.bodies()] == [ids[0], ids[0], ids[0], ids[1]]
    await wait_until(lambda: len(refused.got) == 2, 5)
    await asyncio.sleep(0.3)
    assert [b["id"] for b in refused.bodies()] == ids  # a 404 is not tried again
    views = {v["name"]: v for v in notifier.view()}
    assert (views["flaky"]["sent"], views["flaky"]["retries"]) == (2, 2)
    assert (views["refused"]["failed"], views["refused"]["sent"]) == (2, 0)
    assert views["refused"]["last_error"] == "HTTP 404: answer 404"


async def test_a_429_waits_its_retry_after(
    receiver: Callable[..., Awaitable[Receiver]], running: Any, fast: None
) -> None:
    hook = await receiver(status(429, **{"Retry-After": "1"}), status(200))
    hub, _ = running(*targets({"name": "ops", "kind": "webhook", "url": hook.url}))
    await asyncio.sleep(0)
    fire(hub)
    await wait_until(lambda: len(hook.got) == 2, 5)
    assert hook.got[1][0] - hook.got[0][0] >= 0.95  # not the 50 ms backoff


async def test_a_hanging_receiver_is_timed_out_and_holds_no_other_target(
    receiver: Callable[..., Awaitable[Receiver]], running: Any, fast: None
) -> None:
    stuck = await receiver(hang, status(200))
    fine = await receiver()
    hub, notifier = running(
        *targets(
            {"name": "stuck", "kind": "webhook", "url": stuck.url, "timeout": "1s"},
            {"name": "fine", "kind": "webhook", "url": fine.url},
        )
    )
    await asyncio.sleep(0)
    started = time.monotonic()
    fire(hub)
    await wait_until(lambda: len(fine.got) == 1, 5)
    assert time.monotonic() - started < 0.9  # while the other hangs
    await wait_until(lambda: len(stuck.got) == 2, 5)  # timed out at 1 s, tried again
    assert stuck.got[1][0] - stuck.got[0][0] >= 0.95
    view = next(v for v in notifier.view() if v["name"] == "stuck")
    assert view["sent"] == 1 and view["last_error"] == "no answer within 1s"


async def test_slack_discord_and_ntfy_get_their_own_formats(
    receiver: Callable[..., Awaitable[Receiver]], running: Any
) -> None:
    slack, discord, ntfy = await receiver(), await receiver(), await receiver()
    hub, _ = running(
        *targets(
            {"name": "s", "kind": "slack", "url": slack.url},
            {"name": "d", "kind": "discord", "url": discord.url},
            {"name": "n", "kind": "ntfy", "url": ntfy.url},
        )
    )
    await asyncio.sleep(0)
    fire(hub)
    await wait_until(lambda: all(len(r.got) == 1 for r in (slack, discord, ntfy)), 5)
    text = "[critical] disk firing on web-1: disks./.percent is 93 &gt; 90 (firing)"
    assert slack.bodies()[0] == {
        "text": f"🔴 {text} <https://monitor.example.com/#t=1000000000|open>"
    }
    assert discord.bodies()[0] == {
        "content": "🔴 [critical] disk firing on web-1: disks./.percent is 93 > 90 (firing)"
        " https://monitor.example.com/#t=1000000000",
        "allowed_mentions": {"parse": []},  # an alert never pings @everyone
    }
    _, headers, body = ntfy.got[0]
    assert body.decode() == "[critical] disk firing on web-1: disks./.percent is 93 > 90 (firing)"
    assert headers["Title"] == "disk firing on web-1" and headers["Priority"] == "5"
    assert headers["Click"] == "https://monitor.example.com/#t=1000000000"


async def test_a_command_gets_the_alert_on_stdin_and_in_its_environment(
    tmp_path: Path, running: Any, fast: None
) -> None:
    out = tmp_path / "got.json"
    script = tmp_path / "page.py"
    script.write_text(
        "import json, os, sys\n"
        "alert = json.load(sys.stdin)\n"
        "env = {k: v for k, v in os.environ.items() if k.startswith('SSE_MONITOR')}\n"
        f"open({str(out)!r}, 'a').write(json.dumps([alert, env, sys.argv[1:]]) + '\\n')\n"
    )
    slow = tmp_path / "slow.py"
    slow.write_text("import time\ntime.sleep(60)\n")
    page = [sys.executable, str(script), "--team", "ops"]
    hub, notifier = running(
        *targets(
            {"name": "page", "kind": "command", "command": page},
            {
                "name": "slow",
                "kind": "command",
                "command": [sys.executable, str(slow)],
                "timeout": "0.5s",
                "retry_for": "1s",
            },
        )
    )
    await asyncio.sleep(0)
    event_id = fire(hub)
    await wait_until(lambda: out.exists() and out.read_text().count("\n") == 1, 10)
    alert, env, argv = json.loads(out.read_text())
    assert alert["id"] == event_id and alert["rule"] == "disk" and argv == ["--team", "ops"]
    assert env["SSE_MONITOR_ALERT_STATE"] == "firing" and env["SSE_MONITOR_ALERT_HOST"] == "web-1"
    assert "PYTEST_CURRENT_TEST" not in env  # none of the server's own environment

    def slow_failed() -> bool:
        return bool(next(v for v in notifier.view() if v["name"] == "slow")["failed"] == 1)

    await wait_until(slow_failed, 10)  # killed at 0.5 s each try, given up after 1 s
    view = next(v for v in notifier.view() if v["name"] == "slow")
    assert view["last_error"] == "killed after 0.5s" and view["retries"] >= 1


async def test_a_flapping_rule_is_summed_up_and_a_firing_one_repeated(
    receiver: Callable[..., Awaitable[Receiver]], running: Any, fast: None
) -> None:
    hook = await receiver()
    again = {
        "name": "again",
        "kind": "webhook",
        "url": hook.url,
        "rules": ["cpu"],
        "repeat": "0.4s",
    }
    hub, _ = running(
        *targets({"name": "ops", "kind": "webhook", "url": hook.url, "rules": ["disk"]}, again)
    )
    await asyncio.sleep(0)
    for i in range(6):  # three times firing and resolved within the (1 s) window
        fire(hub, state=("firing", "resolved")[i % 2])
    await wait_until(lambda: len([b for b in hook.bodies() if b["rule"] == "disk"]) == 3, 5)
    disk = [b for b in hook.bodies() if b["rule"] == "disk"]
    assert [b["state"] for b in disk] == ["firing", "resolved", "resolved"]
    assert disk[2]["flapping"] == {"changes": 6, "window_s": 1.0}  # one summary, not a storm
    assert disk[2]["message"].startswith("changed state 6 times within 1s (flapping); now resolved")
    fire(hub, rule="cpu")
    await wait_until(lambda: len([b for b in hook.bodies() if b["rule"] == "cpu"]) == 3, 5)
    fire(hub, rule="cpu", state="resolved")
    await asyncio.sleep(1.0)  # more than two repeat intervals: none after the resolve
    cpu = [b for b in hook.bodies() if b["rule"] == "cpu"]
    assert [(b["state"], b["repeat"]) for b in cpu] == [
        ("firing", 0), ("firing", 1), ("firing", 2), ("resolved", 0)
    ]  # fmt: skip


def test_a_bad_target_stops_the_server_with_one_line_naming_it(tmp_path: Path) -> None:
    def check(table: str) -> str:
        config = tmp_path / "c.toml"
        config.write_text(
            '[[alerts]]\nname = "disk"\nmetric = "disks./.percent > 90"\n[[notify]]\n' + table
        )
        with pytest.raises(ConfigError) as caught:
            load_config(str(config))
        return str(caught.value)

    assert "notify[0] 'x': kind: must be one of webhook, slack" in check(
        'name = "x"\nkind = "sms"\n'
    )
    assert "url: must be an http:// or https:// URL" in check(
        'name = "x"\nkind = "webhook"\nurl = "ftp://example.com/"\n'
    )
    assert f"url_file {tmp_path}/missing: not found" in check(
        f'name = "x"\nkind = "slack"\nurl_file = "{tmp_path}/missing"\n'
    )
    assert "command: /nonexistent/page is not an executable program" in check(
        'name = "x"\nkind = "command"\ncommand = ["/nonexistent/page"]\n'
    )
    assert "repeat: at least 60s, got '5s'" in check(
        'name = "x"\nkind = "ntfy"\nurl = "https://ntfy.sh/t"\nrepeat = "5s"\n'
    )
    assert "headers: 'X-Ké' is not a header name" in check(
        'name = "x"\nkind = "webhook"\nurl = "https://h.example/"\nheaders = { "X-Ké" = "v" }\n'
    )
    assert "rules: 'dsk' is not one of disk" in check(
        'name = "x"\nkind = "ntfy"\nurl = "https://ntfy.sh/t"\nrules = ["dsk"]\n'
    )
    config = tmp_path / "c.toml"
    config.write_text('[[notify]]\nname = "x"\nkind = "sms"\n')
    for argv in (["check-config", str(config)], ["serve", "--port", "0", "--config", str(config)]):
        done = subprocess.run([*MONITOR, *argv], capture_output=True, text=True, timeout=30)
        assert done.returncode == 2
        assert done.stderr.strip().splitlines() == [
            f"sse-monitor: config file {config}: notify[0] 'x': kind: must be one of webhook, "
            "slack, discord, ntfy, command, got 'sms'"
        ]


async def test_notify_test_sends_to_each_target_and_fails_if_one_fails(
    tmp_path: Path, receiver: Callable[..., Awaitable[Receiver]]
) -> None:
    good, bad = await receiver(), await receiver(status(500))
    config = tmp_path / "c.toml"
    config.write_text(
        f'[[notify]]\nname = "good"\nkind = "webhook"\nurl = "{good.url}"\n'
        f'[[notify]]\nname = "bad"\nkind = "slack"\nurl = "{bad.url}"\n'
    )
    run = await asyncio.create_subprocess_exec(
        *MONITOR, "notify-test", "--config", str(config), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await run.communicate()
    assert run.returncode == 1
    lines = out.decode().splitlines()
    assert lines[0].startswith("good (webhook, http://127.0.0.1:") and ": ok: HTTP 200" in lines[0]
    assert lines[1].endswith(": FAILED: HTTP 500: answer 500") and "s3cret" not in out.decode()
    assert good.bodies()[0]["test"] is True and len(bad.got) == 1  # once: no retries
    run = await asyncio.create_subprocess_exec(
        *MONITOR, "notify-test", "--config", str(config), "good", stdout=asyncio.subprocess.PIPE
    )
    await run.communicate()
    assert run.returncode == 0 and len(good.got) == 2 and len(bad.got) == 1


async def test_a_pending_notification_is_sent_after_a_restart_and_a_sent_one_is_not(
    tmp_path: Path,
    receiver: Callable[..., Awaitable[Receiver]],
    start_server: Callable[..., Server],
) -> None:
    """A receiver down (500) when the server stops: the notification waits in the state
    directory, and the restarted server delivers it, once; restarted again, nothing more."""
    answers = [status(500)]

    async def switchable(request: web.Request) -> web.StreamResponse:
        return await answers[0](request)

    hook = await receiver(switchable)
    log = tmp_path / "app.log"
    log.touch()
    config = tmp_path / "c.toml"
    config.write_text(
        '[[alerts]]\nname = "boom"\nsource = "app"\npattern = "BOOM"\n'
        f'[[notify]]\nname = "ops"\nkind = "webhook"\nurl = "{hook.url}"\n'
    )
    flags = ("--config", str(config), "--log", f"app={log}", "--state-dir", str(tmp_path / "s"))
    server = start_server(*flags)
    with log.open("a") as f:
        f.write("all is well\nBOOM\n")
    await wait_until(lambda: len(hook.got) >= 1, 10)  # tried, refused
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=10) == 0
    answers[0] = status(200)
    tried = len(hook.got)
    second = start_server(*flags)
    await wait_until(lambda: len(hook.got) == tried + 1, 10)
    assert {b["id"] for b in hook.bodies()} == {hook.bodies()[0]["id"]}  # the same transition
    assert hook.bodies()[-1]["rule"] == "boom" and hook.bodies()[-1]["state"] == "firing"
    second.proc.send_signal(signal.SIGTERM)
    assert second.proc.wait(timeout=10) == 0
    async with aiohttp.ClientSession() as session:
        again = start_server(*flags)
        async with session.get(f"{again.url}/api/notify") as resp:
            (view,) = (await resp.json())["targets"]
    assert view["pending"] == 0
    await asyncio.sleep(0.5)
    assert len(hook.got) == tried + 1  # delivered once, not again after another restart


async def test_target_health_reaches_the_api_metrics_and_the_stream(
    aiohttp_client: Any, receiver: Callable[..., Awaitable[Receiver]]
) -> None:
    hook = await receiver(status(403))
    config = replace(
        Config(port=0), notify=targets({"name": "ops", "kind": "webhook", "url": hook.url})
    )
    client = await aiohttp_client(create_app(config, sources=[]))
    hub = client.app[HUB]
    await wait_until(lambda: "notify" in hub.latest(STATUS), 5)
    assert hub.latest(STATUS)["notify"]["state"] == "running"
    fire(hub)

    async def view() -> dict[str, Any]:
        body = await (await client.get("/api/notify")).json()
        return dict(body["targets"][0])

    async with asyncio.timeout(5):
        while (await view())["failed"] != 1:
            await asyncio.sleep(0.05)
    assert (await view())["last_error"] == "HTTP 403: answer 403"
    status_now = hub.latest(STATUS)["notify"]
    assert status_now["state"] == "error" and status_now["detail"] == "failing: ops"
    metrics = await (await client.get("/metrics")).text()
    assert 'sse_monitor_notify_failed_total{target="ops"} 1.0' in metrics
    assert 'sse_monitor_notify_pending{target="ops"} 0.0' in metrics
    assert (await client.get("/api/notify?x=1")).status == 400


async def test_a_rule_firing_across_a_restart_is_not_sent_twice_and_its_resolve_arrives(
    tmp_path: Path,
    receiver: Callable[..., Awaitable[Receiver]],
    start_server: Callable[..., Server],
) -> None:
    """The rules firing are kept in the state directory: the restarted server goes on with
    the rule firing (the dashboard is told, no one is notified again), and resolves it."""
    hook = await receiver()
    log = tmp_path / "app.log"
    log.touch()
    config = tmp_path / "c.toml"
    config.write_text(
        '[[alerts]]\nname = "boom"\nsource = "app"\npattern = "BOOM"\nwindow = "3s"\n'
        f'[[notify]]\nname = "ops"\nkind = "webhook"\nurl = "{hook.url}"\n'
    )
    state = str(tmp_path / "s")
    flags = (
        "--config",
        str(config),
        "--log",
        f"app={log}",
        "--state-dir",
        state,
        "--interval",
        "0.2",
    )
    server = start_server(*flags)
    with log.open("a") as f:
        f.write("BOOM\n")
    await wait_until(lambda: len(hook.got) == 1, 10)
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=10) == 0
    again = start_server(*flags)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{again.url}/api/state") as resp:
            alerts = [e["data"] for e in (await resp.json())["events"] if e["type"] == "alert"]
    assert [(a["rule"], a["state"], a.get("restored")) for a in alerts] == [
        ("boom", "firing", True)
    ]
    await wait_until(lambda: len(hook.got) == 2, 10)  # 3 s after the restart: resolved
    assert [b["state"] for b in hook.bodies()] == ["firing", "resolved"]
    assert hook.bodies()[1]["started"] == hook.bodies()[0]["started"]


async def test_a_full_queue_drops_its_oldest_and_counts_it(
    receiver: Callable[..., Awaitable[Receiver]], running: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(notifier_module, "MAX_PENDING", 3)
    stuck = await receiver(hang)
    hub, notifier = running(
        *targets({"name": "stuck", "kind": "webhook", "url": stuck.url, "timeout": "60s"})
    )
    await asyncio.sleep(0)
    fire(hub, rule="disk")
    await wait_until(lambda: len(stuck.got) == 1, 5)  # on the wire, hanging
    for i in range(5):  # 5 more while it hangs: 3 wait, the 2 oldest of them are dropped
        fire(hub, rule=f"rule-{i}")
    await wait_until(lambda: notifier.view()[0]["dropped"] == 2, 5)
    await asyncio.sleep(0.1)
    (view,) = notifier.view()
    assert (view["pending"], view["dropped"]) == (4, 2)  # 1 in flight and 3 waiting


async def test_a_hanging_receiver_holds_no_stream(
    tmp_path: Path,
    receiver: Callable[..., Awaitable[Receiver]],
    start_server: Callable[..., Server],
) -> None:
    """While every delivery hangs (rules firing on each line), each log line still reaches a
    stream client at once."""
    stuck = await receiver(hang)
    log = tmp_path / "app.log"
    log.touch()
    config = tmp_path / "c.toml"
    config.write_text(
        '[[alerts]]\nname = "boom"\nsource = "app"\npattern = "BOOM"\nwindow = "0.2s"\n'
        f'[[notify]]\nname = "stuck"\nkind = "webhook"\nurl = "{stuck.url}"\ntimeout = "60s"\n'
    )
    server = start_server("--config", str(config), "--log", f"app={log}", "--interval", "0.1")
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{server.url}/events?types=log") as resp:
            reader = StreamReader(resp)
            await reader.until("hello")
            for i in range(20):
                with log.open("a") as f:
                    f.write(f"BOOM {i}\n")
                event = await reader.next(timeout_s=2)
                assert event.json()["lines"] == [f"BOOM {i}"]
                await asyncio.sleep(0.1)  # the rule resolves and fires again: more deliveries
    assert len(stuck.got) == 1  # the first delivery hangs; the rest wait behind it


async def echo_path(request: web.Request) -> web.StreamResponse:
    return web.Response(status=404, text=f"Cannot POST {request.path}")


async def test_no_secret_of_a_target_reaches_its_state_or_the_log(
    receiver: Callable[..., Awaitable[Receiver]],
    running: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A receiver's error page may quote the path it was posted to (which holds the token);
    a header's value is a secret too."""
    hook = await receiver(echo_path)
    hub, notifier = running(
        *targets(
            {"name": "ops", "kind": "webhook", "url": hook.url, "headers": {"X-Key": "k3y-val"}}
        )
    )
    await asyncio.sleep(0)
    fire(hub)
    await wait_until(lambda: notifier.view()[0]["failed"] == 1, 5)
    assert notifier.view()[0]["last_error"] == "HTTP 404: Cannot POST …"  # path redacted
    view = json.dumps(notifier.view())
    assert "s3cret" not in view and "k3y" not in view
    assert "s3cret" not in caplog.text and "k3y" not in caplog.text


async def test_a_command_that_leaves_a_child_running_is_done_when_it_exits(
    tmp_path: Path, running: Any
) -> None:
    script = tmp_path / "page.py"
    script.write_text(
        "import subprocess, sys\n"
        "sys.stdin.read()\n"
        "subprocess.Popen(['sleep', '60'])  # inherits stdout and stderr\n"
        "print('paged')\n"
    )
    hub, notifier = running(
        *targets(
            {
                "name": "page",
                "kind": "command",
                "command": [sys.executable, str(script)],
                "timeout": "30s",
            }
        )
    )
    await asyncio.sleep(0)
    fire(hub)
    await wait_until(lambda: notifier.view()[0]["sent"] == 1, 10)  # not at its 30 s timeout
    assert notifier.view()[0]["failed"] == 0


def test_retry_after_takes_seconds_or_a_date_and_nothing_else() -> None:
    retry_after = notifier_module._retry_after
    assert retry_after("7") == 7.0 and retry_after("99999") == notifier_module.MAX_RETRY_AFTER_S
    assert retry_after("nan") is None and retry_after("inf") is None and retry_after("x") is None
    assert retry_after("Wed, 21 Oct 2015 07:28:00 -0000") == 0.0  # past: at once


def test_a_damaged_outbox_keeps_what_it_can(tmp_path: Path) -> None:
    state = StateDir.open(str(tmp_path))
    assert state is not None
    good = {"target": "ops", "body": {"id": "1-2", "rule": "disk"}, "first_try": None}
    state.write_json(
        "notify.json",
        {
            "pending": [good, {"target": "ops", "body": "x"}, {"bogus": 1}, 7],
            "delivered": {"ops": ["a"], "gone": ["b"]},
            "states": "nonsense",
        },
    )
    pending = Outbox(state).load(["ops"])
    assert [(d.target, d.body["id"], d.attempts) for d in pending] == [("ops", "1-2", 0)]
    state.close()


async def test_a_rule_restored_firing_is_told_to_a_target_that_missed_it(
    receiver: Callable[..., Awaitable[Receiver]],
) -> None:
    """The server stopped between a rule's change and its notification: the rule comes back
    firing (restored), and the target that was last told something else hears of it."""
    hook = await receiver()
    hub = MemoryHub()
    outbox = Outbox()
    outbox.states = {"told": {"disk": "firing"}}
    notifier = Notifier(
        targets(
            {"name": "told", "kind": "webhook", "url": hook.url},
            {"name": "missed", "kind": "webhook", "url": hook.url},
        ),
        host="web-1",
        outbox=outbox,
    )
    task = asyncio.create_task(notifier.run(hub))
    await asyncio.sleep(0)
    hub.publish(ALERT, {"rule": "disk", "severity": "critical", "state": "firing",
                        "message": "m", "value": 1, "since": 1e9, "restored": True})  # fmt: skip
    await wait_until(lambda: len(hook.got) == 1, 5)
    await asyncio.sleep(0.2)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    views = {v["name"]: v["sent"] for v in notifier.view()}
    assert views == {"told": 0, "missed": 1}
