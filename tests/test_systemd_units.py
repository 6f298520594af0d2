"""The shipped systemd units, checked by the real systemd-analyze (Debian's `systemd` package):
`verify` is clean, and `security --offline=true` rates the service's exposure at most 2.0."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from monitor.config import StreamConfig
from monitor.http.connections import RESERVED_FDS
from monitor.sources.admission import files_fd_cap

REPO = Path(__file__).resolve().parent.parent
UNITS = REPO / "systemd"
SERVICE = UNITS / "sse-monitor.service"
SOCKET = UNITS / "sse-monitor.socket"
AGENT = UNITS / "sse-monitor-agent.service"
MAX_EXPOSURE = 2.0
EXPOSURE = re.compile(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)")
INSTALLED_BINARY = "/opt/sse-monitor/bin/sse-monitor"


def systemd_analyze() -> str:
    """The systemd-analyze binary; fails (never skips) when it is missing."""
    found = shutil.which("systemd-analyze") or (
        "/usr/bin/systemd-analyze" if Path("/usr/bin/systemd-analyze").exists() else None
    )
    if found is None:
        pytest.fail(
            "systemd-analyze is missing: it is in Debian's `systemd` package "
            "(`make test` installs it with apt when run as root: make system-deps)"
        )
    return found


def directives(unit: Path) -> list[tuple[str, str, str]]:
    """(section, key, value) for every assignment, in order; repeated keys are kept."""
    section, out = "", []
    for raw in unit.read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{unit.name}: not an assignment: {raw!r}"
        out.append((section, key.strip(), value.strip()))
    return out


def values(unit: Path, section: str, key: str) -> list[str]:
    return [v for s, k, v in directives(unit) if s == section and k == key]


def one(unit: Path, section: str, key: str) -> str:
    found = values(unit, section, key)
    assert len(found) == 1, f"{unit.name}: [{section}] {key}= set {len(found)} times: {found}"
    return found[0]


def verify(tmp_path: Path, *names: str) -> subprocess.CompletedProcess[str]:
    """`systemd-analyze verify` on copies of the units in tmp_path.

    verify fails a unit whose ExecStart binary does not exist, and /opt/sse-monitor is not
    installed here: the copies run this venv's sse-monitor instead (same arguments), which is
    the only change made to them."""
    exe = Path(sys.executable).parent / "sse-monitor"
    stand_in = str(exe) if exe.exists() else "/bin/true"
    for unit in (SERVICE, SOCKET, AGENT):
        text = unit.read_text()
        if unit != SOCKET:
            assert f"ExecStart={INSTALLED_BINARY} " in text
            text = text.replace(f"ExecStart={INSTALLED_BINARY} ", f"ExecStart={stand_in} ")
        (tmp_path / unit.name).write_text(text)
    return subprocess.run(
        [systemd_analyze(), "verify", *(str(tmp_path / n) for n in names)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_clean(result: subprocess.CompletedProcess[str], tmp_path: Path) -> None:
    output = result.stdout + result.stderr
    print(f"systemd-analyze verify: exit {result.returncode}, output: {output!r}")
    # Any line that names our units or their directory is a finding about them (unknown key,
    # bad value, missing binary, ...). Other lines could only be about the host's own units.
    ours = [line for line in output.splitlines() if "sse-monitor" in line or str(tmp_path) in line]
    assert result.returncode == 0, output
    assert ours == [], "\n".join(ours)


def test_service_verifies_clean(tmp_path: Path) -> None:
    assert_clean(verify(tmp_path, SERVICE.name), tmp_path)


def test_agent_service_verifies_clean(tmp_path: Path) -> None:
    assert_clean(verify(tmp_path, AGENT.name), tmp_path)


def test_socket_and_service_verify_clean_together(tmp_path: Path) -> None:
    assert_clean(verify(tmp_path, SOCKET.name, SERVICE.name), tmp_path)


def test_verify_reports_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: verify names the unit when a key is wrong."""
    verify(tmp_path)  # writes the copies
    broken = tmp_path / SERVICE.name
    broken.write_text(broken.read_text().replace("WatchdogSec=30s", "WatchdogSecs=30s"))
    result = subprocess.run(
        [systemd_analyze(), "verify", str(broken)], capture_output=True, text=True, timeout=60
    )
    assert "WatchdogSecs" in result.stderr and SERVICE.name in result.stderr


@pytest.mark.parametrize("unit", [SERVICE, AGENT], ids=lambda u: u.name)
def test_service_exposure_is_at_most_2_0(unit: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = subprocess.run(
        [systemd_analyze(), "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = result.stdout + result.stderr
    match = EXPOSURE.search(output)
    assert match, (
        f"no exposure level in systemd-analyze output (exit {result.returncode}):\n{output}"
    )
    exposure = float(match.group(1))
    with capsys.disabled():  # shown in every run, not only with -s
        print(f"\nsystemd-analyze security --offline=true {unit.name}: exposure {exposure}")
    assert exposure <= MAX_EXPOSURE, output


def test_service_essentials() -> None:
    s = "Service"
    assert one(SERVICE, s, "Type") == "notify"
    assert one(SERVICE, s, "NotifyAccess") == "main"
    assert one(SERVICE, s, "WatchdogSec") == "30s"
    assert one(SERVICE, s, "ExecStart") == (
        f"{INSTALLED_BINARY} serve --config /etc/sse-monitor/config.toml"
    )
    assert one(SERVICE, s, "Restart") == "on-failure"
    assert one(SERVICE, s, "DynamicUser") == "yes"
    assert set(one(SERVICE, s, "SupplementaryGroups").split()) == {"adm", "systemd-journal"}
    assert "User" not in {k for _, k, _ in directives(SERVICE)}
    assert one(SERVICE, s, "CapabilityBoundingSet") == ""
    assert one(SERVICE, s, "AmbientCapabilities") == ""
    assert one(SERVICE, s, "NoNewPrivileges") == "yes"
    assert one(SERVICE, s, "ProtectSystem") == "strict"
    # The product reads every process in /proc (top processes) and /proc/stat & co (metrics).
    assert one(SERVICE, s, "ProtectProc") == "default"
    assert one(SERVICE, s, "ProcSubset") == "all"
    assert "AF_NETLINK" not in one(SERVICE, s, "RestrictAddressFamilies")
    assert values(SERVICE, s, "SystemCallFilter") == ["@system-service", "~@privileged @resources"]
    assert one(SERVICE, s, "Environment") == "PYTHONUNBUFFERED=1"
    assert one(SERVICE, "Install", "WantedBy") == "multi-user.target"


def test_agent_service_essentials() -> None:
    """The agent's unit is the server's, hardened the same, but for what it runs."""
    s = "Service"
    assert one(AGENT, s, "ExecStart") == (
        f"{INSTALLED_BINARY} agent --config /etc/sse-monitor/agent.toml"
    )
    for key in ("Type", "DynamicUser", "ProtectSystem", "CapabilityBoundingSet", "ProtectProc"):
        assert one(AGENT, s, key) == one(SERVICE, s, key), key
    assert values(AGENT, s, "SystemCallFilter") == values(SERVICE, s, "SystemCallFilter")
    assert one(AGENT, s, "StateDirectory") == "sse-monitor-agent"


def test_limit_nofile_leaves_room_for_the_default_connection_cap() -> None:
    limit = int(one(SERVICE, "Service", "LimitNOFILE"))
    # Connections get what followed files leave, less the reserve (http/connections.py).
    room = limit - files_fd_cap(limit) - RESERVED_FDS
    assert room >= 5 * StreamConfig().max_connections >= 5 * 10_000
    text = SERVICE.read_text()
    assert "max_connections" in text[: text.index("LimitNOFILE=")], "LimitNOFILE needs its comment"


def test_socket_essentials() -> None:
    assert one(SOCKET, "Socket", "ListenStream") == "127.0.0.1:8765"
    assert one(SOCKET, "Socket", "Accept") == "no"
    assert one(SOCKET, "Install", "WantedBy") == "sockets.target"
    # The service is ordered after its socket so it takes it over instead of binding.
    assert "sse-monitor.socket" in " ".join(values(SERVICE, "Unit", "After")).split()
