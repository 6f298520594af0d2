"""HTTPS with --certfile/--keyfile: a real server, a throwaway CA from trustme, verification on."""

from __future__ import annotations

import signal
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
import trustme
from helpers import MONITOR, Server


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def cert_files(tmp_path: Path, ca: trustme.CA) -> tuple[str, str]:
    cert = ca.issue_cert("127.0.0.1")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    for blob in cert.cert_chain_pems:
        with certfile.open("ab") as f:
            f.write(blob.bytes())
    cert.private_key_pem.write_to_path(str(keyfile))
    return str(certfile), str(keyfile)


def trusting(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def test_https_verified_with_the_ca_and_refused_without_it(
    start_server: Callable[..., Server], cert_files: tuple[str, str], ca: trustme.CA
) -> None:
    certfile, keyfile = cert_files
    server = start_server("--certfile", certfile, "--keyfile", keyfile, ssl_context=trusting(ca))
    assert server.url.startswith("https://127.0.0.1:")
    with urllib.request.urlopen(f"{server.url}/", timeout=5, context=trusting(ca)) as resp:
        assert resp.status == 200
        assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
    with pytest.raises(urllib.error.URLError) as info:
        urllib.request.urlopen(f"{server.url}/healthz", timeout=5)  # system CAs only
    assert isinstance(info.value.reason, ssl.SSLCertVerificationError)
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=5) == 0


@pytest.mark.parametrize("problem", ["missing cert", "key of another cert", "encrypted key"])
def test_bad_tls_files_are_one_line_at_start(
    tmp_path: Path, cert_files: tuple[str, str], ca: trustme.CA, problem: str
) -> None:
    certfile, keyfile = cert_files
    if problem == "missing cert":
        certfile = str(tmp_path / "nope.pem")
        expected = f"--certfile {certfile}: No such file or directory"
    elif problem == "key of another cert":
        keyfile = str(tmp_path / "other-key.pem")
        ca.issue_cert("127.0.0.1").private_key_pem.write_to_path(keyfile)
        expected = "not a PEM certificate chain and its matching private key"
    else:
        from cryptography.hazmat.primitives import serialization

        key = serialization.load_pem_private_key(Path(keyfile).read_bytes(), None)
        keyfile = str(tmp_path / "encrypted-key.pem")
        Path(keyfile).write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"secret"),
            )
        )
        expected = "the key is encrypted"
    done = subprocess.run(
        [*MONITOR, "serve", "--port", "0", "--certfile", certfile, "--keyfile", keyfile],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and expected in done.stderr, done.stderr
