"""A real `redis-server` (Debian's) for the fleet tests: on a unix socket in the test's
directory (`--port 0` turns TCP off), its own config, started, killed and restarted."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import redis

from monitor.config import RedisConfig


class RedisServer:
    """One redis-server process; restart() keeps its directory (and its AOF, if on)."""

    def __init__(
        self,
        root: Path,
        *,
        aof: bool = False,
        password: str | None = None,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.root = root
        self.password = password
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket = root / "redis.sock"
        self.aof = aof
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def config(self, **fields: object) -> RedisConfig:
        """A [redis] section pointing at this server."""
        return RedisConfig(url=self.url, **fields)  # type: ignore[arg-type]

    def start(self) -> RedisServer:
        argv = ["redis-server", "--port", "0", "--unixsocket", str(self.socket)]
        argv += ["--unixsocketperm", "700", "--dir", str(self.root), "--save", ""]
        argv += ["--appendonly", "yes", "--appendfsync", "always"] if self.aof else []
        argv += ["--requirepass", self.password] if self.password else []
        argv += [*self.extra, "--loglevel", "warning", "--logfile", str(self.root / "log")]
        self.proc = subprocess.Popen(argv)
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.client().ping():
                    return self
            except (redis.ConnectionError, redis.AuthenticationError, redis.ResponseError):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    log = (self.root / "log").read_text() if (self.root / "log").exists() else ""
                    raise AssertionError(f"redis-server did not start: {log}") from None
            time.sleep(0.02)

    def client(self, **kwargs: object) -> Any:
        """A plain client (the admin's: no ACL user unless given); typed Any, as redis-py's
        replies are (a union of every shape a reply can take)."""
        kwargs.setdefault("password", self.password)
        return redis.Redis(
            unix_socket_path=str(self.socket),
            socket_timeout=5,
            **kwargs,  # type: ignore[arg-type]
        )

    def kill(self) -> None:
        """SIGKILL: what a crash or an OOM kill does."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.socket.unlink(missing_ok=True)

    def restart(self) -> RedisServer:
        self.kill()
        return self.start()


ACL_FILE = Path(__file__).resolve().parent.parent / "docs" / "redis-acl.txt"


def add_acl_user(server: RedisServer, user: str, password: str, host: str = "") -> None:
    """The user `user` (`agent-<host>` or `dashboard`) exactly as docs/redis-acl.txt
    gives it (the README points there), with this password."""
    lines = [line for line in ACL_FILE.read_text().splitlines() if line.startswith("user ")]
    for line in lines:
        tokens = line.replace("<host>", host).replace("<password>", password).split()
        if tokens[1] == user:
            server.client().execute_command("ACL", "SETUSER", *tokens[1:])
            return
    raise AssertionError(f"no user {user} in {ACL_FILE}")
