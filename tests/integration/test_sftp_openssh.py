"""The SFTP causes against a real OpenSSH ``sshd`` as well as the in-repo asyncssh server
(tests/integration/test_sftp_faults.py): each refusal has its own message and is terminal.

OpenSSH is not a dependency of the project: where ``/usr/sbin/sshd`` is missing these tests are skipped,
and say so in the summary (``pytest -rs``). The sshd runs unprivileged on a free loopback port, for the
current user, with a configuration of the test's own.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from partnerflow.core.errors import TerminalError
from partnerflow.transport.errors import TransportRefused
from partnerflow.transport.sftp import sftp_session
from partnerflow_dev.sftp_server import CLIENT_DISABLED_ALGORITHMS, KeyPaths, ensure_keys

SSHD = Path("/usr/sbin/sshd")
FEED = "council_referrals"
CONNECTION = "AIRFLOW_CONN_PARTNERFLOW_SFTP_COUNCIL"

pytestmark = pytest.mark.skipif(
    not SSHD.exists(),
    reason="OpenSSH's sshd is NOT installed (/usr/sbin/sshd): the SFTP causes were checked against the "
    "in-repo asyncssh server only",
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for_banner(port: int, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"sshd exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
                if conn.recv(64).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("sshd did not answer in time")
        time.sleep(0.2)


@contextlib.contextmanager
def _sshd(tmp_path: Path, keys: KeyPaths, *settings: str) -> Iterator[int]:
    port = _free_port()
    config = tmp_path / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {keys.host_key}",
                "PidFile none",
                f"AuthorizedKeysFile {keys.authorized_keys}",
                "StrictModes no",
                "UsePAM no",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "Subsystem sftp internal-sftp",
                *settings,
            ]
        )
        + "\n"
    )
    log = (tmp_path / "sshd.log").open("wb")
    process = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_for_banner(port, process)
        yield port
    finally:
        process.terminate()
        process.wait(10)
        log.close()


@pytest.fixture
def keys(tmp_path) -> KeyPaths:
    return ensure_keys(tmp_path / "keys")


def _connect(demo_config, monkeypatch, port: int, keys: KeyPaths, **extra) -> None:
    connection = {
        "conn_type": "sftp",
        "host": "127.0.0.1",
        "port": port,
        "login": getpass.getuser(),
        "extra": {
            "key_file": str(keys.client_key),
            "host_key": keys.host_key_line,
            "look_for_keys": "false",
            "disabled_algorithms": CLIENT_DISABLED_ALGORITHMS,
            **extra,
        },
    }
    monkeypatch.setenv(CONNECTION, json.dumps(connection))
    monkeypatch.setenv("HOME", str(keys.host_key.parent))
    with sftp_session(demo_config.feed(FEED)) as session:
        session.listdir(".")


def _refused(demo_config, monkeypatch, port, keys, match: str, **extra) -> None:
    with pytest.raises(TransportRefused, match=match) as refused:
        _connect(demo_config, monkeypatch, port, keys, **extra)
    assert isinstance(refused.value, TerminalError)


def test_openssh_pinned_key_logs_in_and_a_changed_one_is_refused(tmp_path, keys, demo_config, monkeypatch):
    with _sshd(tmp_path, keys) as port:
        _connect(demo_config, monkeypatch, port, keys)
        other = ensure_keys(tmp_path / "other")
        _refused(
            demo_config, monkeypatch, port, keys, r"not the pinned one \(it changed\)", host_key=other.host_key_line
        )


def test_openssh_refused_key(tmp_path, keys, demo_config, monkeypatch):
    keys.authorized_keys.write_text("")
    with _sshd(tmp_path, keys) as port:
        _refused(demo_config, monkeypatch, port, keys, r"the server refused our key \(revoked or not installed")


def test_openssh_ctr_only_server_shares_no_cipher(tmp_path, keys, demo_config, monkeypatch):
    with _sshd(tmp_path, keys, "Ciphers aes256-ctr") as port:
        _refused(demo_config, monkeypatch, port, keys, "share no cipher")
