"""`sse-monitor tail URL`: the connection loop: flags, auth, TLS, reconnecting with backoff and
Last-Event-ID, never following a redirect, and a clean exit on Ctrl-C or a closed pipe. What it
prints is TailPrinter's."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import re
import socket
import ssl
import stat
import sys
from typing import Any

import aiohttp

from monitor.client.printer import TailPrinter, note
from monitor.client.stream import iter_chunk_events
from monitor.hub.sse import MAX_LINE_BYTES, SSEParser
from monitor.tasks import cancel_and_wait
from monitor.values import ConfigError, read_text

BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 10.0
CONNECT_TIMEOUT_S = 10.0
# The server sends a heartbeat every 15 s by default: this much silence means a dead peer.
READ_TIMEOUT_S = 75.0
RETRY_STATUSES = {429, 502, 503, 504}


MAX_BACKFILL_LINES = 5000  # the server's /api/logs gives at most this many at a time


class TailError(Exception):
    """Ends the command: one line on stderr and this exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


class Dropped(Exception):
    """A connection failed or ended. `is_transient`: retry even before any success."""

    def __init__(self, reason: str, *, is_transient: bool = False, delay_s: float = 0.0) -> None:
        super().__init__(reason)
        self.is_transient = is_transient
        self.delay_s = delay_s


def read_auth(args: argparse.Namespace) -> aiohttp.BasicAuth | None:
    """--user with the first line of --password-file."""
    if (args.user is None) != (args.password_file is None):
        raise TailError("--user and --password-file go together", 2)
    if args.user is None:
        return None
    if ":" in args.user:
        raise TailError(f"--user {args.user!r}: a user name cannot contain ':'", 2)
    try:
        text = read_text(args.password_file, "--password-file")
    except ConfigError as exc:
        raise TailError(str(exc), 2) from None
    password = text.partition("\n")[0].rstrip("\r")
    return aiohttp.BasicAuth(args.user, password)


def read_tls(args: argparse.Namespace) -> ssl.SSLContext | bool:
    """--cafile: trust that CA; --insecure: verify nothing; neither: the system's CAs."""
    if args.insecure:
        return False
    if args.cafile is None:
        return True
    try:
        return ssl.create_default_context(cafile=args.cafile)
    except OSError as exc:
        raise TailError(f"--cafile {args.cafile}: {exc.strerror or exc}", 2) from None
    except ssl.SSLError as exc:
        raise TailError(f"--cafile {args.cafile}: not a PEM CA bundle ({exc})", 2) from None


def make_printer(args: argparse.Namespace) -> TailPrinter:
    """The printer for --source, --grep, --lines and --json."""
    if args.lines < 0:
        raise TailError(f"--lines {args.lines}: expected 0 or more", 2)
    try:
        pattern = re.compile(args.grep) if args.grep is not None else None
    except re.error as exc:
        raise TailError(f"--grep {args.grep!r}: not a valid regex: {exc}", 2) from None
    sources = tuple(dict.fromkeys(args.source or ()))
    return TailPrinter(
        sys.stdout,
        sources=sources,
        pattern=pattern,
        lines=args.lines,
        as_json=args.json,
        note=note,
        is_raw=args.raw,
    )


async def error_text(resp: aiohttp.ClientResponse) -> str:
    """The server's JSON error (with the names it knows), or the status line."""
    try:
        body = json.loads(await resp.text())
        message = str(body["error"])
        for key in ("known", "hosts"):
            if isinstance(body.get(key), list):
                message += f" ({key}: {', '.join(map(str, body[key])) or 'none yet'})"
        return message
    except (ValueError, KeyError, TypeError, aiohttp.ClientError):
        return f"HTTP {resp.status} {resp.reason or ''}".strip()


def describe(exc: BaseException) -> str:
    """A connection failure in a few words."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        error = exc.os_error
        if error.errno and error.errno > 0 and not isinstance(error, socket.gaierror):
            return os.strerror(error.errno).lower()  # asyncio's text names the call, not why
        return (error.strerror or str(error)).lower()
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__


class TailClient:
    """Connects, prints, reconnects with capped jittered backoff; only a TailError ends it."""

    def __init__(
        self,
        url: str,
        printer: TailPrinter,
        tls: ssl.SSLContext | bool,
        host: str | None = None,
    ) -> None:
        base = url.rstrip("/")
        self.host = host  # one host of a fleet server (--host)
        self.display_url = url
        self.url = base if base.endswith("/events") else base + "/events"
        self.printer = printer
        self.tls = tls
        self.has_connected = False
        self.is_down = False
        self.backoff_s = BACKOFF_FIRST_S
        self.dropped_lines = 0

    async def run(self, session: aiohttp.ClientSession) -> None:
        """Follow forever."""
        while True:
            try:
                await self.stream_once(session)
            except Dropped as exc:
                if not self.has_connected and not exc.is_transient:
                    raise TailError(f"{self.display_url}: cannot connect: {exc}") from None
                if not self.is_down:
                    self.is_down = True
                    if self.has_connected:
                        note(f"connection lost ({exc}); reconnecting")
                    else:
                        note(f"{self.display_url}: {exc}; retrying")
                delay_s = random.uniform(self.backoff_s / 2, self.backoff_s)
                self.backoff_s = min(self.backoff_s * 2, BACKOFF_MAX_S)
                await asyncio.sleep(max(delay_s, exc.delay_s))

    async def stream_once(self, session: aiohttp.ClientSession) -> None:
        """One connection, read until it ends: always raises Dropped or TailError."""
        printer = self.printer
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if printer.last_id:
            headers["Last-Event-ID"] = printer.last_id
        params = {"types": "log,status"}
        if self.host is not None:
            params["host"] = self.host
        if printer.sources:
            params["sources"] = ",".join(printer.sources)
        # A redirect would take the password along, even to another host over plain http.
        get = session.get(
            self.url, params=params, headers=headers, ssl=self.tls, allow_redirects=False
        )
        try:
            async with get as resp:
                await self.check(resp, has_auth=session.auth is not None)
                self.opened()
                await self.follow(resp, session)
        except aiohttp.ClientConnectorCertificateError as exc:
            raise TailError(
                f"{self.display_url}: certificate not trusted ({exc.certificate_error}); "
                "use --cafile F (or --insecure)"
            ) from None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise Dropped(describe(exc)) from None
        finally:
            printer.end_snapshot()  # a stream cut inside its history: print what came
        raise Dropped("the server closed the stream", is_transient=True)

    async def follow(self, resp: aiohttp.ClientResponse, session: aiohttp.ClientSession) -> None:
        """Print an open stream's events as they come, until it ends."""
        is_chunked = "chunked" in resp.headers.get("Transfer-Encoding", "").lower()
        parser, dropped = SSEParser(), 0
        async for events, is_chunk_end in iter_chunk_events(resp, parser):
            for event in events:
                self.printer.on_event(event)
            # The server writes a hello or reset and its history as one HTTP chunk, so a
            # chunk's end ends the snapshot. Unchunked (an old proxy), any read does.
            if is_chunk_end or not is_chunked:
                await self.backfill(session)
                self.printer.end_snapshot()
            if parser.dropped_lines > dropped:
                self.dropped_lines += parser.dropped_lines - dropped
                dropped = parser.dropped_lines
                note(
                    f"skipped a stream line over {MAX_LINE_BYTES >> 20} MiB, larger than any "
                    f"sse-monitor event ({self.dropped_lines} so far)"
                )

    async def backfill(self, session: aiohttp.ClientSession) -> None:
        """--lines beyond the server's buffer: the earlier lines from /api/logs (which reads
        them again from the files), merged into the first snapshot before it is printed."""
        wanted = self.printer.backfill_wanted()
        if not wanted:
            return
        logs_url = self.url.removesuffix("/events") + "/api/logs"
        items: list[tuple[str, dict[str, Any]]] = []
        for source, (before, count) in wanted.items():
            params = {"source": source, "limit": str(min(count, MAX_BACKFILL_LINES))}
            if self.host is not None:
                params["host"] = self.host
            if before:
                params["before"] = before
            get = session.get(logs_url, params=params, ssl=self.tls, allow_redirects=False)
            async with get as resp:
                if resp.status != 200:  # an older server, or none of it: the snapshot will do
                    return
                page = await resp.json()
            items += [
                (e["id"], {"source": source, "lines": e["lines"]}) for e in page.get("events", [])
            ]
        self.printer.add_to_snapshot(items)

    def opened(self) -> None:
        """A stream is open: say so if it was down, and start backoff over."""
        if self.is_down:
            note("reconnected")
        self.is_down = False
        self.has_connected = True
        self.backoff_s = BACKOFF_FIRST_S

    async def check(self, resp: aiohttp.ClientResponse, *, has_auth: bool) -> None:
        """TailError for an answer retrying won't change, Dropped for a passing one."""
        url = self.display_url
        if resp.status == 200:
            if resp.content_type != "text/event-stream":
                raise TailError(f"{url}: not an sse-monitor event stream ({resp.content_type})")
            return
        if resp.status == 401:
            if has_auth:
                raise TailError(f"{url}: authentication failed (check --user and --password-file)")
            raise TailError(f"{url}: authentication required (use --user and --password-file)")
        if 300 <= resp.status < 400:
            target = resp.headers.get("Location", "nowhere")
            raise TailError(f"{url}: redirected ({resp.status}) to {target}; not followed")
        message = await error_text(resp)
        if resp.status in RETRY_STATUSES:
            retry_after = resp.headers.get("Retry-After", "")
            delay_s = min(float(retry_after), 60.0) if retry_after.isdecimal() else 0.0
            raise Dropped(f"{resp.status}: {message}", is_transient=True, delay_s=delay_s)
        raise TailError(f"{url}: {message}")


async def watch_stdout(closed: asyncio.Event) -> None:
    """Set `closed` when stdout is a pipe whose reader went away (`| head` is done)."""
    try:
        fd = sys.stdout.fileno()
        is_pipe = stat.S_ISFIFO(os.fstat(fd).st_mode)
    except (OSError, ValueError):
        is_pipe = False
    if not is_pipe:
        await closed.wait()  # a tty is readable when someone types; a file never signals
        return
    # epoll reports EPOLLERR on a pipe's write end once its reader is closed; asyncio's
    # selector hands that to a reader callback. Without this, a quiet log would keep us (and
    # the shell pipeline waiting for us) alive after `head` has all it wanted.
    loop = asyncio.get_running_loop()
    loop.add_reader(fd, closed.set)
    try:
        await closed.wait()
    finally:
        loop.remove_reader(fd)


async def tail(client: TailClient, auth: aiohttp.BasicAuth | None) -> bool:
    """Follow until a TailError; False when stdout's reader went away instead."""
    timeout = aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT_S, sock_read=READ_TIMEOUT_S)
    closed = asyncio.Event()
    async with aiohttp.ClientSession(timeout=timeout, auth=auth) as session:
        following = asyncio.create_task(client.run(session))
        watching = asyncio.create_task(watch_stdout(closed))
        try:
            await asyncio.wait({following, watching}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            # A TailError (or a BrokenPipeError) is raised here.
            await cancel_and_wait((watching, following))
    return not closed.is_set()


def run_tail(args: argparse.Namespace) -> int:
    """`sse-monitor tail`: 0 on Ctrl-C or a closed pipe, 1 on a server or connection
    failure, 2 on bad flags; each failure is one line on stderr."""
    try:
        if not re.match(r"https?://[^/]", args.url):
            raise TailError(f"{args.url}: expected an http:// or https:// URL", 2)
        auth, tls = read_auth(args), read_tls(args)
        client = TailClient(args.url, make_printer(args), tls, args.host)
        if isinstance(sys.stdout, io.TextIOWrapper):
            sys.stdout.reconfigure(errors="backslashreplace")
        is_pipe_open = asyncio.run(tail(client, auth))
    except TailError as exc:
        note(str(exc))
        return exc.status
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:
        is_pipe_open = False
    if not is_pipe_open:
        # Python flushes stdout at exit and would report the broken pipe: point it at devnull.
        # (docs.python.org/3/library/signal.html#note-on-sigpipe)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return 0
