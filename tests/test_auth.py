"""HTTP Basic against a users file: real bcrypt hashes, a real in-process server, the real CLI."""

from __future__ import annotations

import asyncio
import base64
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from helpers import MONITOR, Server, StreamReader, hash_pw, wait_until
from pytest_aiohttp import AiohttpClient

from monitor.config import Config, ConfigError
from monitor.http.app import create_app
from monitor.http.auth import Authenticator, FailureLimiter
from monitor.http.keys import AUTH
from monitor.http.users import UsersFile, read_users

Client = TestClient[web.Request, web.Application]
CHALLENGE = 'Basic realm="sse-monitor", charset="UTF-8"'
PROTECTED = ["/", "/events", "/api/sources", "/api/state", "/metrics", "/static/css/main.css"]


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


ALICE = basic("alice", "wonder land")
BOB = basic("bob", "bü€r:colon")  # non-ASCII, and a colon inside the password


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, config: Config, users_file: Path) -> Client:
    app = create_app(replace(config, users_file=str(users_file)), sources=[])
    return await aiohttp_client(app)


def verifications(client: Client) -> int:
    return client.app[AUTH].verifications


async def test_every_route_but_healthz_requires_credentials(client: Client) -> None:
    for path in [*PROTECTED, "/no-such-page"]:
        resp = await client.get(path)
        assert resp.status == 401, path
        assert resp.headers["WWW-Authenticate"] == CHALLENGE
        assert resp.content_type == "application/json"
        assert (await resp.json()) == {"error": "authentication required"}
    resp = await client.get("/healthz")
    assert resp.status == 200
    assert (await resp.json())["status"] == "ok"


async def test_right_credentials_open_pages_streams_and_assets(client: Client) -> None:
    for headers in (ALICE, BOB):
        for path in PROTECTED:
            resp = await client.get(path, headers=headers)
            assert resp.status == 200, path
            resp.close()  # /events would stream forever


async def test_wrong_password_unknown_user_and_malformed_headers_get_401(client: Client) -> None:
    bad = [
        basic("alice", "wonder"),
        basic("alice", "wonder land "),
        basic("mallory", "wonder land"),
        basic("", ""),
        {"Authorization": "Bearer abc"},
        {"Authorization": "Basic !!!not-base64"},
        {"Authorization": "Basic " + base64.b64encode(b"alice").decode()},
        {"Authorization": "Basic " + base64.b64encode(b"alice:\xff\xfe").decode()},
    ]
    for headers in bad:
        resp = await client.get("/api/sources", headers=headers)
        assert resp.status == 401, headers
        assert resp.headers["WWW-Authenticate"] == CHALLENGE
        assert "error" in await resp.json()


async def test_unknown_user_costs_a_bcrypt_check_too(client: Client) -> None:
    resp = await client.get("/api/sources", headers=basic("mallory", "x"))
    assert resp.status == 401
    assert verifications(client) == 1


async def test_second_request_with_same_credentials_skips_bcrypt(client: Client) -> None:
    for _ in range(4):
        assert (await client.get("/api/sources", headers=ALICE)).status == 200
    assert verifications(client) == 1
    # A wrong password is not a cache hit: it is checked, and refused.
    assert (await client.get("/api/sources", headers=basic("alice", "wonder"))).status == 401
    assert verifications(client) == 2
    metrics = await (await client.get("/metrics", headers=ALICE)).text()  # a cache hit too
    assert "\nsse_monitor_password_checks_total 2.0\n" in metrics


async def test_concurrent_first_requests_share_one_bcrypt_check(client: Client) -> None:
    resps = await asyncio.gather(*(client.get("/api/sources", headers=ALICE) for _ in range(8)))
    assert [r.status for r in resps] == [200] * 8
    assert verifications(client) == 1


async def test_repeated_failures_get_429_without_checking_the_password(client: Client) -> None:
    for _ in range(10):
        assert (await client.get("/", headers=basic("alice", "guess"))).status == 401
    assert verifications(client) == 10
    resp = await client.get("/", headers=ALICE)  # even the right password: no more guesses
    assert resp.status == 429
    assert 1 <= int(resp.headers["Retry-After"]) <= 60
    assert resp.content_type == "application/json"
    assert "too many failed sign-ins" in (await resp.json())["error"]
    assert verifications(client) == 10
    assert (await client.get("/healthz")).status == 200
    # Another address is not held back.
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with aiohttp.ClientSession(connector=connector) as other:
        async with other.get(client.make_url("/api/sources"), headers=ALICE) as resp:
            assert resp.status == 200


async def test_users_file_edits_take_effect_without_restart(
    client: Client, users_file: Path
) -> None:
    assert (await client.get("/api/sources", headers=ALICE)).status == 200
    users_file.write_text(f"carol:{hash_pw('c')}\n")
    assert (await client.get("/api/sources", headers=basic("carol", "c"))).status == 200
    assert (await client.get("/api/sources", headers=ALICE)).status == 401  # cache dropped too


async def test_broken_users_file_edit_locks_everyone_out_until_fixed(
    client: Client, users_file: Path
) -> None:
    good = users_file.read_text()
    assert (await client.get("/api/sources", headers=ALICE)).status == 200
    users_file.write_text(good + "half-edited line\n")
    assert (await client.get("/api/sources", headers=ALICE)).status == 401
    users_file.write_text(good)
    assert (await client.get("/api/sources", headers=ALICE)).status == 200


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("alice\n", "line 1: expected USER:HASH"),
        ("# c\n\nalice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n", "line 3: user 'alice' has an unsup"),
        ("alice:$apr1$abc$defghijklmnopqrstuv\n", "line 1: user 'alice' has an unsupported"),
        ("alice:plain-text\n", "unsupported hash"),
        (f"alice:{hash_pw('a')}\nalice:{hash_pw('b')}\n", "line 2: user 'alice' is listed twice"),
        (":$2b$04$" + "a" * 53 + "\n", "line 1: expected USER:HASH"),
        ("# nobody yet\n", "no users"),
        ("alice:$2b$15$" + "a" * 53 + "\n", "line 1: user 'alice' has bcrypt cost 15; at most 14"),
        ("alice:$2b$31$" + "a" * 53 + "\n", "line 1: user 'alice' has bcrypt cost 31; at most 14"),
    ],
)
def test_users_file_errors_name_file_and_line(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "users"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(expected)) as info:
        read_users(str(path))
    assert str(path) in str(info.value)


def test_bad_users_file_at_start_is_one_line_and_exit_2(tmp_path: Path) -> None:
    users = tmp_path / "users"
    users.write_text(f"alice:{hash_pw('a')}\nbob:$apr1$x$y\n")
    done = subprocess.run(
        [*MONITOR, "serve", "--port", "0", "--users-file", str(users)],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert f"users file {users}, line 2: user 'bob'" in done.stderr


async def test_hash_password_from_stdin_makes_a_line_that_signs_in(
    tmp_path: Path, aiohttp_client: AiohttpClient, config: Config
) -> None:
    done = subprocess.run(
        [*MONITOR, "hash-password", "alice"],
        input="s3cret pässword\n",
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"alice:\$2b\$12\$[./A-Za-z0-9]{53}\n", done.stdout)
    users = tmp_path / "users"
    users.write_text(done.stdout)
    client = await aiohttp_client(create_app(replace(config, users_file=str(users)), sources=[]))
    resp = await client.get("/api/sources", headers=basic("alice", "s3cret pässword"))
    assert resp.status == 200


@pytest.mark.parametrize(
    ("args", "stdin", "status", "expected"),
    [
        (["alice"], "", 1, "password shorter than 8 characters"),
        (["alice"], "ab\n", 1, "password shorter than 8 characters"),
        (["alice"], "x" * 73 + "\n", 1, "longer than 72 bytes"),
        (["al:ice"], "pw\n", 2, "no ':' or spaces"),
    ],
)
def test_hash_password_errors_are_one_line(
    args: list[str], stdin: str, status: int, expected: str
) -> None:
    done = subprocess.run(
        [*MONITOR, "hash-password", *args], input=stdin, capture_output=True, text=True, timeout=20
    )
    assert done.returncode == status
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and expected in done.stderr, done.stderr


@pytest.mark.skipif(shutil.which("htpasswd") is None, reason="htpasswd (apache2-utils) missing")
async def test_htpasswd_bcrypt_line_signs_in(
    tmp_path: Path, aiohttp_client: AiohttpClient, config: Config
) -> None:
    # -b puts the password in argv: fine for a throwaway test password only.
    line = subprocess.run(
        ["htpasswd", "-nbB", "-C", "4", "dave", "from htpasswd"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    users = tmp_path / "users"
    users.write_text(line)
    client = await aiohttp_client(create_app(replace(config, users_file=str(users)), sources=[]))
    assert (await client.get("/", headers=basic("dave", "from htpasswd"))).status == 200


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_cached_verification_expires(users_file: Path) -> None:
    clock = Clock()
    auth = Authenticator(UsersFile(str(users_file)), clock=clock)

    async def sign_in() -> bool:
        return (await auth.authenticate(ALICE["Authorization"], "203.0.113.1")).ok

    assert await sign_in()
    assert await sign_in()
    assert auth.verifications == 1
    clock.now += 301
    assert await sign_in()
    assert auth.verifications == 2


def test_failures_age_out_of_the_window() -> None:
    clock = Clock()
    limiter = FailureLimiter(max_failures=3, window_s=60, clock=clock)
    for _ in range(3):
        assert limiter.retry_after_s("10.0.0.1") == 0
        limiter.record("10.0.0.1")
        clock.now += 10
    assert limiter.retry_after_s("10.0.0.1") == pytest.approx(30)
    assert limiter.retry_after_s("10.0.0.2") == 0
    clock.now += 30
    assert limiter.retry_after_s("10.0.0.1") == 0


def test_sighup_reloads_the_users_file_and_the_server_lives_on(
    start_server: Callable[..., Server], users_file: Path
) -> None:
    server = start_server("--users-file", str(users_file))
    url = f"{server.url}/api/sources"

    def status(headers: dict[str, str]) -> int:
        request = urllib.request.Request(url, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=5) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    assert status(ALICE) == 200  # now cached for 5 minutes
    # Same size and mtime second: only the signal says the file is new.
    users_file.write_text(users_file.read_text().replace("alice:", "alicf:", 1))
    server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while status(ALICE) != 401:  # the cache went with the reload
        assert time.monotonic() < deadline, "alice still signs in after SIGHUP"
        time.sleep(0.05)
    assert server.proc.poll() is None  # alive: not status 129
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=5) == 0
    assert "reloaded: 2 users" in server.all_stderr()


@pytest.fixture
def costly_users(tmp_path: Path) -> Path:
    """alice at bcrypt cost 10: about 60 ms a check, enough for a burst to queue up."""
    path = tmp_path / "users"
    path.write_text(f"alice:{hash_pw('wonder land', cost=10)}\n")
    path.chmod(0o600)
    return path


async def test_a_burst_of_guesses_is_held_to_the_limit_and_others_still_sign_in(
    aiohttp_client: AiohttpClient, config: Config, costly_users: Path
) -> None:
    cfg = replace(config, users_file=str(costly_users), trusted_proxies=("127.0.0.1",))
    client = await aiohttp_client(create_app(cfg, sources=[]))
    auth = client.app[AUTH]
    url = client.make_url("/api/sources")
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def guess(i: int) -> tuple[int, str | None]:
            async with session.get(url, headers=basic("alice", f"guess {i}")) as resp:
                return resp.status, resp.headers.get("Retry-After")

        async def timed(path: str, headers: dict[str, str]) -> tuple[int, float]:
            started = time.monotonic()
            async with session.get(client.make_url(path), headers=headers) as resp:
                return resp.status, time.monotonic() - started

        burst = [asyncio.create_task(guess(i)) for i in range(150)]
        await wait_until(lambda: auth.verifications > 0)  # the burst is being checked
        other = {**ALICE, "X-Forwarded-For": "203.0.113.7"}  # through the trusted proxy
        signed_in, healthz = await asyncio.gather(
            timed("/api/sources", other), timed("/healthz", {})
        )
        guesses = await asyncio.gather(*burst)
    assert signed_in[0] == 200 and signed_in[1] < 3.0, signed_in
    assert healthz[0] == 200 and healthz[1] < 1.0, healthz
    statuses = [status for status, _ in guesses]
    assert statuses.count(401) <= 12, statuses.count(401)
    assert statuses.count(429) == 150 - statuses.count(401)
    assert all(retry is not None and int(retry) >= 1 for status, retry in guesses if status == 429)
    assert auth.verifications <= 12 + 1  # the guesses, and the other address's right password
    metrics = await (await client.get("/metrics", headers=other)).text()
    assert f"\nsse_monitor_password_checks_total {auth.verifications}.0\n" in metrics


async def test_too_many_checks_at_once_get_503_not_a_long_queue(
    aiohttp_client: AiohttpClient, config: Config, costly_users: Path
) -> None:
    cfg = replace(config, users_file=str(costly_users), trusted_proxies=("127.0.0.1",))
    client = await aiohttp_client(create_app(cfg, sources=[]))

    async def guess(i: int) -> tuple[int, str | None]:
        headers = {**basic("alice", f"guess {i}"), "X-Forwarded-For": f"203.0.113.{i}"}
        async with client.get("/api/sources", headers=headers) as resp:
            return resp.status, resp.headers.get("Retry-After")

    results = await asyncio.gather(*(guess(i) for i in range(1, 25)))
    assert {status for status, _ in results} == {401, 503}, results
    assert all(retry == "1" for status, retry in results if status == 503)
    assert client.app[AUTH].verifications == [s for s, _ in results].count(401)


async def test_a_right_password_does_not_count_as_a_failure(users_file: Path) -> None:
    auth = Authenticator(UsersFile(str(users_file)))
    for _ in range(9):
        assert not (await auth.check_from("10.0.0.1", "alice", "guess")).ok
    for password in ("wonder land", "wonder land", "guess"):  # a check, a cached hit, a 10th
        verdict = await auth.check_from("10.0.0.1", "alice", password)
        assert verdict.ok == (password == "wonder land")
    assert (
        await auth.authenticate(basic("alice", "wonder land")["Authorization"], "10.0.0.1")
    ).status == 429
    await auth.close()


@pytest.mark.parametrize("edit", ["remove alice", "new password for alice"])
async def test_editing_a_user_out_ends_their_open_streams_only(
    client: Client, users_file: Path, edit: str
) -> None:
    alice = await client.get("/events", headers=ALICE)
    bob = await client.get("/tail/app", headers=BOB)
    assert (alice.status, bob.status) == (200, 200)
    alice_events = StreamReader(alice)
    await alice_events.next()  # the stream is under way
    lines = users_file.read_text().splitlines()
    kept = [line for line in lines if not line.startswith("alice:")]
    if edit == "new password for alice":
        kept.append(f"alice:{hash_pw('looking glass')}")
    users_file.write_text("\n".join(kept) + "\n")
    with pytest.raises((EOFError, aiohttp.ClientPayloadError)):
        while True:  # with no request to notice the edit, within the file watch's 2 s
            await alice_events.next(timeout_s=5)
    assert len(client.app[AUTH].signed_in) == 1  # bob's stream, still open
    assert not bob.content.at_eof()
    assert (await client.get("/api/sources", headers=BOB)).status == 200
    assert (await client.get("/api/sources", headers=ALICE)).status == 401
    bob.close()
