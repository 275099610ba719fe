"""The host-key pin is not optional: what `partnerflow check-config` says about the feeds' SFTP connections
set in the environment (JSON and URI form), and the rule every entry point shares (transport.pinning).

The fetch and the arrival watcher refusing unpinned connections against a real server:
tests/integration/test_sftp_faults.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import pytest

from partnerflow.cli.main import main
from partnerflow.core.errors import TerminalError
from partnerflow.transport.pinning import HostKeyNotPinned, connection_extra_from_env, pin_problem, require_pin

DEMO = Path(__file__).resolve().parents[2] / "config" / "partnership.yaml"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
SFTP_CONNECTIONS = ("AIRFLOW_CONN_PARTNERFLOW_SFTP_COUNCIL", "AIRFLOW_CONN_PARTNERFLOW_SFTP_HEALTH")


def _json(**extra) -> str:
    return json.dumps({"conn_type": "sftp", "host": "sftp.example.org", "login": "partner", "extra": extra})


@pytest.fixture(autouse=True)
def _no_connections(monkeypatch):
    for name in SFTP_CONNECTIONS:
        monkeypatch.delenv(name, raising=False)


def test_check_config_passes_pinned_connections_in_json_and_uri_form(monkeypatch, capsys):
    monkeypatch.setenv(SFTP_CONNECTIONS[0], _json(host_key=KEY, key_file="/keys/council"))
    monkeypatch.setenv(SFTP_CONNECTIONS[1], f"sftp://partner@sftp.example.org:22/?host_key={quote(KEY)}")
    assert main(["check-config", str(DEMO)]) == 0
    out = capsys.readouterr().out
    assert "partnerflow_sftp_council (council_referrals" in out and "host key pinned" in out
    assert "partnerflow_sftp_health" in out


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (_json(key_file="/keys/council"), "does not pin the server's host key"),
        (_json(no_host_key_check="true"), "no_host_key_check extra switches the host-key check off"),
        (_json(no_host_key_check=True, host_key=KEY), "switches the host-key check off"),
        (_json(allow_host_key_change="true", host_key=KEY), "allow_host_key_change"),
        (_json(host_key="AAAAC3NzaC1lZDI1NTE5"), "not a key line"),
        ("sftp://partner@sftp.example.org:22/?no_host_key_check=true", "switches the host-key check off"),
        ("sftp://partner@sftp.example.org:22/?__extra__=" + quote(json.dumps({"key_file": "/k"})), "does not pin"),
        ("sftp://partner@sftp.example.org:22", "does not pin"),
        ("{not json", "neither a JSON connection nor a connection URI"),
    ],
    ids=[
        "no-pin",
        "no-check",
        "no-check-with-pin",
        "allow-change",
        "bare-key",
        "uri-no-check",
        "uri-extra",
        "uri",
        "junk",
    ],
)
def test_check_config_refuses_an_unpinned_connection_and_says_how_to_pin(monkeypatch, capsys, value, problem):
    monkeypatch.setenv(SFTP_CONNECTIONS[0], value)
    monkeypatch.setenv(SFTP_CONNECTIONS[1], _json(host_key=KEY))
    assert main(["check-config", str(DEMO)]) == 1
    err = capsys.readouterr().err
    assert "SFTP connection partnerflow_sftp_council (council_referrals" in err and "would be refused" in err
    assert problem in err
    assert "ssh-keyscan -t ed25519" in err and "fingerprint" in err and "host_key" in err
    assert "partnerflow_sftp_health" not in err  # the pinned one is fine


def test_check_config_names_connections_it_cannot_see(capsys):
    assert main(["check-config", str(DEMO)]) == 0
    assert "partnerflow_sftp_council" in capsys.readouterr().out  # not in the environment: checked when used


def test_every_spelling_of_a_switched_off_check_is_refused():
    for value in ("true", "True", True, "1", "yes", " TRUE "):
        assert pin_problem({"host_key": KEY, "no_host_key_check": value})
    for value in ("false", False, None, "0"):
        assert pin_problem({"host_key": KEY, "no_host_key_check": value}) is None
    assert pin_problem({"host_key": KEY, "ignore_hostkey_verification": "true"})


def test_a_refusal_is_terminal_and_names_the_feed_not_the_values():
    with pytest.raises(HostKeyNotPinned) as refused:
        require_pin("partnerflow_sftp_council", {"host_key": "junk-value", "password": "s3cret"}, feed_id="council")
    assert isinstance(refused.value, TerminalError)
    message = str(refused.value)
    assert message.startswith("council: SFTP connection partnerflow_sftp_council was refused before connecting")
    assert "junk-value" not in message and "s3cret" not in message


def test_connection_uri_extras_are_read_as_airflow_reads_them():
    from airflow.models.connection import Connection

    uri = f"sftp://partner:pw@sftp.example.org:2222/?host_key={quote(KEY)}&key_file=%2Fkeys%2Fc"
    assert connection_extra_from_env(uri) == Connection(uri=uri).extra_dejson
