"""The `sse-monitor` command: argparse, then config, then the server. The only sys.exit."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from typing import Any, NoReturn

from monitor import __version__
from monitor.config import FLAG_KEYS, Config, ConfigError, load_config


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr, not usage plus error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The command line: `sse-monitor serve ...`."""
    parser = Parser(prog="sse-monitor", description="Live host dashboard over Server-Sent Events.")
    parser.add_argument("--version", action="version", version=f"sse-monitor {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    serve = commands.add_parser("serve", help="run the dashboard server")
    serve.add_argument("--config", metavar="FILE", help="TOML config file; flags override it")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8765; 0 picks one)")
    serve.add_argument(
        "--log",
        action="append",
        metavar="NAME=PATH",
        help="follow a log file or glob under NAME (repeatable)",
    )
    serve.add_argument(
        "--journal",
        action="append",
        metavar="NAME[=MATCH,...]",
        help="follow the systemd journal under NAME, e.g. web=_SYSTEMD_UNIT=nginx.service",
    )
    serve.add_argument(
        "--interval", type=float, metavar="SECONDS", help="metrics interval (default 1.0)"
    )
    serve.add_argument("--base-path", metavar="PATH", help="serve under PATH, e.g. /monitor")
    serve.add_argument(
        "--trusted-proxy",
        action="append",
        metavar="ADDR",
        help="believe X-Forwarded-For from this address or CIDR range (repeatable)",
    )
    serve.add_argument(
        "--allowed-host",
        action="append",
        metavar="NAME",
        help="answer this Host name without authentication, besides localhost (repeatable)",
    )
    serve.add_argument("--users-file", metavar="FILE", help="require HTTP Basic auth (htpasswd)")
    serve.add_argument(
        "--allow-anonymous",
        action="store_true",
        help="serve a non-loopback --host without --users-file",
    )
    serve.add_argument("--certfile", metavar="FILE", help="TLS certificate chain (PEM)")
    serve.add_argument("--keyfile", metavar="FILE", help="TLS private key (PEM)")
    serve.add_argument(
        "--state-dir",
        metavar="DIR",
        help="keep what survives a restart here (default: systemd's StateDirectory, else none)",
    )
    serve.add_argument("--max-clients", type=int, metavar="N", help="open streams in all")
    serve.add_argument(
        "--max-clients-per-address", type=int, metavar="N", help="open streams per client"
    )
    add_redis_flags(serve, "show every host in Redis at URL (and publish this one's there)")
    serve.add_argument(
        "--no-publish", action="store_true", help="with --redis: do not publish this host"
    )
    add_agent_parser(commands)
    add_tail_parser(commands)
    check = commands.add_parser("check-config", help="validate a config file, start nothing")
    check.add_argument("file", metavar="FILE", help="the TOML config file to check")
    test = commands.add_parser(
        "notify-test", help="send a test message to each notification target; print outcomes"
    )
    test.add_argument("--config", required=True, metavar="FILE", help="the TOML config file")
    test.add_argument("target", nargs="*", metavar="TARGET", help="only these targets")
    hashing = commands.add_parser("hash-password", help="print a users-file line for USER")
    hashing.add_argument("user")
    return parser


def add_redis_flags(parser: argparse.ArgumentParser, what: str, required: bool = False) -> None:
    """--redis URL, --name and --redis-password-file: the flags of many hosts."""
    parser.add_argument("--redis", metavar="URL", required=required, help=what)
    parser.add_argument("--name", metavar="NAME", help="this host's name (default: its hostname)")
    parser.add_argument(
        "--redis-password-file", metavar="FILE", help="the Redis password, read from FILE"
    )


def add_agent_parser(commands: Any) -> None:
    """`sse-monitor agent --redis URL ...`: watch this host for the dashboards, no HTTP."""
    agent = commands.add_parser("agent", help="publish this host's metrics, logs and alerts")
    agent.add_argument("--config", metavar="FILE", help="TOML config file; flags override it")
    agent.add_argument("--log", action="append", metavar="NAME=PATH", help="follow a log file")
    agent.add_argument(
        "--journal", action="append", metavar="NAME[=MATCH,...]", help="follow the journal"
    )
    agent.add_argument("--interval", type=float, metavar="SECONDS", help="metrics interval")
    agent.add_argument("--state-dir", metavar="DIR", help="what survives a restart goes here")
    add_redis_flags(agent, "publish to Redis at URL (redis://, rediss://, unix://)")


def add_tail_parser(commands: Any) -> None:
    """`sse-monitor tail URL ...`: follow a server's logs from anywhere."""
    tail = commands.add_parser("tail", help="print a server's log lines as they arrive")
    tail.add_argument("url", help="the server, e.g. http://host:8765")
    tail.add_argument("--host", metavar="NAME", help="this host of a fleet server (--redis)")
    tail.add_argument("--source", action="append", metavar="NAME", help="only this source")
    tail.add_argument("--grep", metavar="REGEX", help="only lines matching REGEX")
    tail.add_argument("--lines", type=int, default=10, metavar="N", help="backlog lines first")
    tail.add_argument("--json", action="store_true", help="one JSON object per line")
    tail.add_argument(
        "--raw", action="store_true", help="print lines as sent, control characters and all"
    )
    tail.add_argument("--user", help="HTTP Basic user")
    tail.add_argument("--password-file", metavar="F", help="file holding the password")
    tls = tail.add_mutually_exclusive_group()
    tls.add_argument("--cafile", metavar="F", help="CA bundle to verify the server with")
    tls.add_argument("--insecure", action="store_true", help="do not verify TLS certificates")


# syslog priorities (sd-daemon(3)): journald reads a leading <N> on each stderr line as its level.
PRIORITIES = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6}


class JournalFormatter(logging.Formatter):
    """`<N>name: message`, every line prefixed; journald adds the timestamp itself."""

    def format(self, record: logging.LogRecord) -> str:
        priority = next((p for lvl, p in PRIORITIES.items() if record.levelno >= lvl), 7)
        return "\n".join(f"<{priority}>{line}" for line in super().format(record).splitlines())


def setup_logging() -> None:
    """Log lines to stderr: with timestamps, or for journald when systemd runs us."""
    handler = logging.StreamHandler()
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])


def validate(path: str | None, flags: dict[str, Any]) -> Config:
    """Load and check a config as serve needs it, users file included."""
    config = load_config(path, flags)  # alert rules included
    if config.users_file:
        from monitor.http.users import read_users

        read_users(config.users_file)  # a bad line is exit 2 here, not a traceback later
    return config


def run_check_config(args: argparse.Namespace) -> int:
    """`sse-monitor check-config FILE`: 0 and one OK line, or 2 and the problem."""
    from monitor.server import StartupError, make_ssl_context

    try:
        config = validate(args.file, {})
        if config.certfile and config.keyfile:
            make_ssl_context(config.certfile, config.keyfile)
    except (ConfigError, StartupError) as exc:
        print(f"sse-monitor: {exc}", file=sys.stderr)
        return 2
    print(
        f"{args.file}: OK ({len(config.log_names())} log sources, {len(config.alerts)} alert "
        f"rules, {len(config.notify)} notification targets)"
    )
    return 0


def run_notify_test(args: argparse.Namespace) -> int:
    """`sse-monitor notify-test --config FILE [TARGET...]`: one test message to each target,
    one line each; 0 if all were delivered, 1 if any was not, 2 for a bad config or name."""
    import socket

    from monitor.notify.notifier import Notifier

    try:
        config = load_config(args.config, {})
    except ConfigError as exc:
        print(f"sse-monitor: {exc}", file=sys.stderr)
        return 2
    names = [t.name for t in config.notify]
    unknown = [name for name in args.target if name not in names]
    if unknown or not names:
        known = ", ".join(names) or "none: add [[notify]] tables"
        print(f"sse-monitor: no target {', '.join(unknown)} (targets: {known})", file=sys.stderr)
        return 2
    targets = [t for t in config.notify if not args.target or t.name in args.target]
    notifier = Notifier(targets, host=socket.gethostname(), public_url=config.public_url)

    async def test_all() -> int:
        failed = 0
        for target in targets:
            outcome = await notifier.test(target)
            failed += not outcome.ok
            print(
                f"{target.name} ({target.kind}, {target.where()}): "
                f"{'ok' if outcome.ok else 'FAILED'}: {outcome.detail}"
            )
        return 1 if failed else 0

    return asyncio.run(test_all())


def flags_of(args: argparse.Namespace) -> dict[str, Any]:
    """The flags serve and agent give load_config (each has the ones it takes)."""
    flags = {key: getattr(args, key, None) for key in FLAG_KEYS}
    return flags | {"logs": args.log, "journals": args.journal}


def run_serve(args: argparse.Namespace) -> int:
    """`sse-monitor serve`: exit status 0 on a clean stop."""
    from monitor.server import StartupError, serve  # aiohttp only when serving

    try:
        config = validate(args.config, flags_of(args))
    except ConfigError as exc:
        print(f"sse-monitor: {exc}", file=sys.stderr)
        return 2
    setup_logging()
    try:
        asyncio.run(serve(config))
    except StartupError as exc:
        print(f"sse-monitor: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C before the signal handlers were installed
        return 0
    return 0


def run_agent(args: argparse.Namespace) -> int:
    """`sse-monitor agent`: runs until SIGTERM; 0 on a clean stop, 2 for a bad config."""
    try:
        config = load_config(args.config, flags_of(args))
        if config.redis.url is None:
            raise ConfigError("agent: give --redis URL (or [redis] url in the config file)")
    except ConfigError as exc:
        print(f"sse-monitor: {exc}", file=sys.stderr)
        return 2
    setup_logging()
    from monitor.agent import run_agent as run

    try:
        asyncio.run(run(config))
    except KeyboardInterrupt:
        return 0
    return 0


def main(argv: list[str] | None = None) -> NoReturn:
    """Entry point of `sse-monitor` and `python -m monitor`."""
    args = build_parser().parse_args(argv)
    if args.command == "tail":
        from monitor.client.tail import run_tail

        sys.exit(run_tail(args))
    if args.command == "hash-password":
        from monitor.http.auth import run_hash_password

        sys.exit(run_hash_password(args))
    if args.command == "check-config":
        sys.exit(run_check_config(args))
    if args.command == "notify-test":
        sys.exit(run_notify_test(args))
    if args.command == "agent":
        sys.exit(run_agent(args))
    sys.exit(run_serve(args))
