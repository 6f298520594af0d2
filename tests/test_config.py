"""Config: defaults, TOML file, flags overriding it, and errors that name the key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from monitor.config import (
    Config,
    ConfigError,
    LogSource,
    MetricsConfig,
    StreamConfig,
    load_config,
)


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return str(path)


def test_defaults_bind_loopback_on_8765_every_second() -> None:
    config = load_config()
    assert (config.host, config.port, config.metrics.interval_s) == ("127.0.0.1", 8765, 1.0)
    assert config.stream.heartbeat_s == 15.0 and config.logs == ()


def test_file_values_then_flags_override_them(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        host = "0.0.0.0"
        allow_anonymous = true
        port = 9000
        interval_s = 2
        [stream]
        heartbeat_s = 5
        buffer_events = 500
        [logs]
        app = "/var/log/app.log"
        web = "/var/log/web/*.log"
        """,
    )
    config = load_config(path, {"port": 9100, "logs": ["app=/srv/app.log"]})
    assert config == Config(
        host="0.0.0.0",
        allow_anonymous=True,
        port=9100,
        metrics=MetricsConfig(interval_s=2.0),
        stream=StreamConfig(heartbeat_s=5.0, buffer_events=500),
        logs=(LogSource("app", "/srv/app.log"), LogSource("web", "/var/log/web/*.log")),
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("prot = 1", "prot: unknown key"),
        ('port = "x"', "port: must be an integer from 0 to 65535, got 'x'"),
        ("port = 70000", "port: must be an integer"),
        ("interval_s = 0", "interval_s: must be a number"),
        ("interval_s = true", "interval_s: must be a number"),
        ("[stream]\nheartbeat = 1", "stream.heartbeat: unknown key (known: stream.buffer_events"),
        ("[stream]\nbuffer_bytes = 10", "stream.buffer_bytes: must be an integer"),
        ("stream = 3", "stream: must be a table"),
        ("[logs]\napp = 3", "logs.app: must be a non-empty string"),
        ('logs = "x"', "logs: must be a table"),
        ("port = ", "invalid TOML"),
    ],
)
def test_bad_file_value_names_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"config file {path}: ")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_missing_config_file_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config file .*nope.toml: not found"):
        load_config(str(tmp_path / "nope.toml"))


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"port": -1}, "--port: must be an integer from 0 to 65535, got -1"),
        ({"interval": 0.0}, "--interval: must be a number"),
        ({"host": " "}, "--host: must be a non-empty string"),
        ({"logs": ["app"]}, "--log 'app': expected NAME=PATH"),
        ({"logs": ["=/x"]}, "expected NAME=PATH"),
        ({"logs": ["a=/x", "a=/y"]}, "source name 'a' is given twice"),
        ({"logs": ["a=/x", "b=/x"]}, "path /x is already followed by 'a'"),
        ({"logs": ["a b=/x"]}, "log source 'a b': names are"),
        ({"logs": ["metrics=/x"]}, "log source 'metrics'"),
        ({"logs": ["alerts=/x"]}, "log source 'alerts'"),
    ],
)
def test_bad_flag_names_the_flag(flags: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, flags)
    assert message in str(caught.value)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.7", "::", "monitor.example.com"])
def test_exposed_host_needs_users_or_an_explicit_anonymous(host: str) -> None:
    with pytest.raises(ConfigError, match="--users-file FILE .* or --allow-anonymous"):
        load_config(None, {"host": host})
    assert load_config(None, {"host": host, "allow_anonymous": True}).allow_anonymous
    assert load_config(None, {"host": host, "users_file": "/etc/x"}).users_file == "/etc/x"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_host_needs_no_users(host: str) -> None:
    assert load_config(None, {"host": host}).host == host


def test_certfile_without_keyfile_is_refused() -> None:
    with pytest.raises(ConfigError, match="--certfile and --keyfile go together"):
        load_config(None, {"certfile": "/tmp/cert.pem"})


@pytest.mark.parametrize(
    ("given", "kept"), [("/monitor", "/monitor"), ("/a/b/", "/a/b"), ("/", ""), ("", None)]
)
def test_base_path_is_normalised(given: str, kept: str | None) -> None:
    if kept is None:
        with pytest.raises(ConfigError, match="--base-path: must be a non-empty string"):
            load_config(None, {"base_path": given})
    else:
        assert load_config(None, {"base_path": given}).base_path == kept


@pytest.mark.parametrize("bad", ["monitor", "/a b", "/a/../b?x", "//x", "/..", "/a/.", "/./b"])
def test_bad_base_path_is_refused(bad: str) -> None:
    with pytest.raises(ConfigError, match="--base-path: expected a path like /monitor"):
        load_config(None, {"base_path": bad})


def test_a_config_file_that_is_a_fifo_is_an_error_not_a_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "config.toml"
    os.mkfifo(fifo)  # no writer: a blocking open would wait for ever
    with pytest.raises(ConfigError, match="is a FIFO, not a regular file"):
        load_config(str(fifo))
