"""The `sse-monitor` command: argparse, then config, then the server. The only sys.exit."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import NoReturn

from monitor import __version__
from monitor.config import ConfigError, load_config


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
        "--interval", type=float, metavar="SECONDS", help="metrics interval (default 1.0)"
    )
    return parser


def setup_logging() -> None:
    """Log lines to stderr."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def run_serve(args: argparse.Namespace) -> int:
    """`sse-monitor serve`: exit status 0 on a clean stop."""
    from monitor.rules import parse_rules
    from monitor.server import StartupError, serve  # aiohttp only when serving

    flags = {"host": args.host, "port": args.port, "interval": args.interval, "logs": args.log}
    try:
        config = load_config(args.config, flags)
        try:
            parse_rules(config.alerts, [s.name for s in config.logs])  # fail now, not later
        except ConfigError as exc:
            raise ConfigError(f"config file {args.config}: {exc}") from None
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


def main(argv: list[str] | None = None) -> NoReturn:
    """Entry point of `sse-monitor` and `python -m monitor`."""
    args = build_parser().parse_args(argv)
    sys.exit(run_serve(args))
