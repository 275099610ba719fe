"""SFTP intake against the real SSH server misbehaving: each fault ends in the state docs/invariants.md requires.

Every test goes through the package's own path (collect.fetch_sftp via ingest.fetch, then ingest.decide),
with the provider's SFTPHook talking to the in-repo asyncssh server.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import os
import time
import zipfile
from pathlib import Path

import asyncssh
import pytest

from partnerflow.core.errors import TerminalError, TransientError
from partnerflow.core.periods import Period
from partnerflow.pipeline import ingest
from partnerflow.transport.arrival import ArrivalWatch, Listed, SftpArrivalTrigger
from partnerflow.transport.errors import TransportError, TransportRefused
from partnerflow.transport.pinning import HostKeyNotPinned
from partnerflow_dev.sftp_server import ensure_keys
from partnerflow_dev.synthetic import referrals_csv
from tests.integration.transport_stack import (
    SFTP_FEED,
    assert_every_file_accounted_for,
    drop,
    failure_codes,
    ledger_rows,
    scalar,
    stack_fixture,  # noqa: F401 (the ``stack`` fixture)
    staging_tables,
    upload,
    with_transport,
)

PERIOD = Period.from_id("2026Q3")
NAME = "referrals_2026Q3.csv"


def _run(config, feed_id: str = SFTP_FEED) -> list[dict]:
    return ingest.decide(feed_id, ingest.fetch(feed_id, config=config), config=config)


def _connection(stack, **extra) -> str:
    connection = json.loads(os.environ["AIRFLOW_CONN_PARTNERFLOW_SFTP_COUNCIL"])
    connection["extra"] = {"key_file": str(stack.keys.client_key), **extra}
    return json.dumps(connection)


def _landing_files(stack) -> list[str]:
    landing = stack.var / "landing"
    return sorted(str(p.relative_to(landing)) for p in landing.rglob("*") if p.is_file()) if landing.exists() else []


# --- who we talk to -------------------------------------------------------------------------------


def _password_connection(stack, password: str, **extra) -> str:
    """The dev connection logging in by password only (no key), host key pinned."""
    connection = json.loads(os.environ["AIRFLOW_CONN_PARTNERFLOW_SFTP_COUNCIL"])
    connection["password"] = password
    connection["extra"] = {k: v for k, v in connection["extra"].items() if k != "key_file"} | extra
    return json.dumps(connection)


def _refused(demo_config, match: str) -> TransportRefused:
    """Fetching fails with a terminal refusal whose message matches; nothing is recorded."""
    with pytest.raises(TransportRefused, match=match) as refused:
        ingest.fetch(SFTP_FEED, config=demo_config)
    assert isinstance(refused.value, TerminalError)  # no retries: someone must act
    assert ledger_rows(SFTP_FEED) == []
    return refused.value


def test_unpinned_connection_is_refused_before_connecting_even_if_known_hosts_vouches(stack, demo_config, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_PARTNERFLOW_SFTP_COUNCIL", _connection(stack))  # no host_key pinned
    known_hosts = Path(os.environ["HOME"], ".ssh", "known_hosts")
    known_hosts.parent.mkdir(exist_ok=True)
    known_hosts.write_text(f"[127.0.0.1]:{stack.sftp.port} {stack.keys.host_key_line}\n")  # the right key
    upload(stack, demo_config.feed(SFTP_FEED), NAME, referrals_csv(PERIOD, seed=1, n=20))
    refused = _refused(demo_config, "does not pin the server's host key")
    assert isinstance(refused, HostKeyNotPinned)
    assert "ssh-keyscan -t ed25519" in str(refused) and "host_key" in str(refused)
    assert stack.sftp.auth_attempts == 0


@pytest.mark.parametrize(
    "extra",
    [
        {"no_host_key_check": "true"},
        {"no_host_key_check": True},
        {"no_host_key_check": "True", "host_key": "pinned"},
        {"allow_host_key_change": "true", "host_key": "pinned"},
    ],
    ids=["string", "json-true", "with-a-pin", "allow-change"],
)
def test_a_connection_that_switches_the_check_off_is_refused_before_connecting(stack, demo_config, monkeypatch, extra):
    extra = {k: (stack.keys.host_key_line if v == "pinned" else v) for k, v in extra.items()}
    monkeypatch.setenv("AIRFLOW_CONN_PARTNERFLOW_SFTP_COUNCIL", _connection(stack, **extra))
    upload(stack, demo_config.feed(SFTP_FEED), NAME, referrals_csv(PERIOD, seed=1, n=20))
    refused = _refused(demo_config, "switches the host-key check off")
    assert "ssh-keyscan" in str(refused)
    assert stack.sftp.auth_attempts == 0


def test_known_hosts_never_overrides_the_pin(stack, demo_config, tmp_path):
    """paramiko prefers ~/.ssh/known_hosts to the pin; partnerflow's client reads only the pin."""
    other = ensure_keys(tmp_path / "other-server")
    known_hosts = Path(os.environ["HOME"], ".ssh", "known_hosts")
    known_hosts.parent.mkdir(exist_ok=True)
    known_hosts.write_text(f"[127.0.0.1]:{stack.sftp.port} {other.host_key_line}\n")  # a wrong key
    upload(stack, demo_config.feed(SFTP_FEED), NAME, referrals_csv(PERIOD, seed=1, n=20))
    assert [o["state"] for o in _run(demo_config)] == ["published"]


def test_changed_host_key_is_refused_before_logging_in(stack, demo_config, monkeypatch, tmp_path):
    other = ensure_keys(tmp_path / "other-server")
    monkeypatch.setenv("AIRFLOW_CONN_PARTNERFLOW_SFTP_COUNCIL", _connection(stack, host_key=other.host_key_line))
    upload(stack, demo_config.feed(SFTP_FEED), NAME, referrals_csv(PERIOD, seed=1, n=20))
    _refused(demo_config, "not the pinned one \\(it changed\\)")
    assert stack.sftp.auth_attempts == 0


def test_host_key_of_another_type_than_the_pin_is_unknown(stack, demo_config, monkeypatch):
    ecdsa = asyncssh.generate_private_key("ecdsa-sha2-nistp256").export_public_key("openssh").decode()
    pin = " ".join(ecdsa.split()[:2])
    monkeypatch.setenv("AIRFLOW_CONN_PARTNERFLOW_SFTP_COUNCIL", _connection(stack, host_key=pin))
    refused = _refused(demo_config, "host key is unknown: it offered a ssh-ed25519 key and the pin is a ecdsa")
    assert "ssh-keyscan" in str(refused)
    assert stack.sftp.auth_attempts == 0


def test_revoked_client_key_is_refused(stack, demo_config):
    stack.keys.authorized_keys.write_text("")
    upload(stack, demo_config.feed(SFTP_FEED), NAME, referrals_csv(PERIOD, seed=1, n=20))
    refused = _refused(demo_config, "the server refused our key \\(revoked or not installed")
    assert "password" not in str(refused)
    assert stack.sftp.auth_attempts > 0


def test_wrong_password_is_reported_as_a_refused_password(stack, demo_config, monkeypatch):
    stack.sftp.faults.password = "the-right-one"
    monkeypatch.setenv("AIRFLOW_CONN_PARTNERFLOW_SFTP_COUNCIL", _password_connection(stack, "a-wrong-one"))
    refused = _refused(demo_config, "the server refused the password")
    assert "key" not in str(refused).split(":", 2)[-1].split(";")[0]  # the cause names the password only
    assert "a-wrong-one" not in str(refused)

    monkeypatch.setenv("AIRFLOW_CONN_PARTNERFLOW_SFTP_COUNCIL", _password_connection(stack, "the-right-one"))
    upload(stack, demo_config.feed(SFTP_FEED), NAME, referrals_csv(PERIOD, seed=1, n=20))
    assert [o["state"] for o in _run(demo_config)] == ["published"]  # the same path works with the right one


def test_password_to_a_server_that_takes_keys_only_says_so(stack, demo_config, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_PARTNERFLOW_SFTP_COUNCIL", _password_connection(stack, "any"))
    _refused(demo_config, "does not accept logins by a password \\(it allows: publickey\\)")


def test_no_shared_cipher_fails_at_once_and_says_so(stack, demo_config):
    stack.sftp.faults.ciphers = ["aes256-ctr"]  # a ctr-only server; the connection disables ctr (GCM advice)
    refused = _refused(demo_config, "share no cipher")
    assert "handshake within" not in str(refused)
    assert stack.sftp.auth_attempts == 0


# --- the transfer ---------------------------------------------------------------------------------


def test_connection_dropped_mid_download_records_nothing_and_the_next_run_takes_the_file(stack, demo_config):
    content = referrals_csv(PERIOD, seed=2, n=3000)
    upload(stack, demo_config.feed(SFTP_FEED), NAME, content)
    stack.sftp.faults.drop_after_bytes = len(content) // 3
    with pytest.raises(TransportError, match="nothing was recorded"):
        ingest.fetch(SFTP_FEED, config=demo_config)
    assert ledger_rows(SFTP_FEED) == []
    assert _landing_files(stack) == []  # no partial bytes under any name

    stack.sftp.faults.reset()
    assert [(o["state"], o["rows"]) for o in _run(demo_config)] == [("published", 3000)]


def test_server_that_accepts_and_hangs_fails_within_the_connect_timeout(stack, demo_config):
    config = with_transport(demo_config, SFTP_FEED, connect_timeout_seconds=2)
    stack.sftp.faults.hang = True
    with pytest.raises(TransportError, match="did not complete the SSH handshake within 2s") as failed:
        ingest.fetch(SFTP_FEED, config=config)
    assert isinstance(failed.value, TransientError)  # the retries with backoff apply
    assert ledger_rows(SFTP_FEED) == []


def test_server_that_stalls_mid_download_fails_within_the_transfer_timeout(stack, demo_config):
    config = with_transport(demo_config, SFTP_FEED, transfer_timeout_seconds=2)
    upload(stack, demo_config.feed(SFTP_FEED), NAME, referrals_csv(PERIOD, seed=3, n=200))
    stack.sftp.faults.stall_reads = True
    with pytest.raises(TransportError, match="nothing was recorded"):
        ingest.fetch(SFTP_FEED, config=config)
    assert ledger_rows(SFTP_FEED) == []
    assert _landing_files(stack) == []


# --- completeness ---------------------------------------------------------------------------------


def test_rename_rule_ignores_a_file_still_being_uploaded(stack, demo_config):
    folder = drop(stack, demo_config.feed(SFTP_FEED))
    (folder / f"{NAME}.part").write_bytes(referrals_csv(PERIOD, seed=4, n=50)[:500])
    assert ingest.fetch(SFTP_FEED, config=demo_config) == []
    (folder / f"{NAME}.part").write_bytes(referrals_csv(PERIOD, seed=4, n=50))
    os.replace(folder / f"{NAME}.part", folder / NAME)
    assert [o["state"] for o in _run(demo_config)] == ["published"]


def test_stable_size_rule_waits_for_two_identical_polls(stack, demo_config):
    config = with_transport(demo_config, SFTP_FEED, completeness="stable_size", min_age_seconds=0)
    content = referrals_csv(PERIOD, seed=5, n=120)
    path = drop(stack, config.feed(SFTP_FEED)) / NAME
    path.write_bytes(content[: len(content) // 2])  # the partner's client writes in place
    assert ingest.fetch(SFTP_FEED, config=config) == []  # first sighting
    path.write_bytes(content)  # still growing: a new size is a new first sighting
    assert ingest.fetch(SFTP_FEED, config=config) == []
    assert [(o["state"], o["rows"]) for o in _run(config)] == [("published", 120)]
    assert _run(config) == []  # taken once


def test_stable_size_rule_waits_for_the_minimum_age(stack, demo_config):
    config = with_transport(demo_config, SFTP_FEED, completeness="stable_size", min_age_seconds=3600)
    (drop(stack, config.feed(SFTP_FEED)) / NAME).write_bytes(referrals_csv(PERIOD, seed=5, n=20))
    for _ in range(3):
        assert ingest.fetch(SFTP_FEED, config=config) == []
    old = time.time() - 7200
    os.utime(drop(stack, config.feed(SFTP_FEED)) / NAME, (old, old))
    assert ingest.fetch(SFTP_FEED, config=config) == []  # a new mtime: seen once
    assert len(ingest.fetch(SFTP_FEED, config=config)) == 1


def _manifest(content: bytes, rows: int, sha256: str | None = None) -> bytes:
    return json.dumps({"sha256": sha256 or hashlib.sha256(content).hexdigest(), "rows": rows}).encode()


def test_done_marker_rule_takes_the_file_once_its_manifest_is_there(stack, demo_config):
    config = with_transport(demo_config, SFTP_FEED, completeness="done_marker")
    feed = config.feed(SFTP_FEED)
    content = referrals_csv(PERIOD, seed=6, n=75)
    (drop(stack, feed) / NAME).write_bytes(content)
    assert ingest.fetch(SFTP_FEED, config=config) == []
    upload(stack, feed, f"{NAME}.done", _manifest(content, 75))
    assert [(o["state"], o["rows"]) for o in _run(config)] == [("published", 75)]


def test_done_marker_with_another_sha256_is_rejected_and_nothing_loaded(stack, demo_config):
    config = with_transport(demo_config, SFTP_FEED, completeness="done_marker")
    feed = config.feed(SFTP_FEED)
    content = referrals_csv(PERIOD, seed=7, n=40)
    upload(stack, feed, NAME, content)
    upload(stack, feed, f"{NAME}.done", _manifest(content, 40, sha256="0" * 64))
    assert ingest.fetch(SFTP_FEED, config=config) == []  # refused on arrival: nothing left to decide
    ((file_id, state),) = ledger_rows(SFTP_FEED)
    assert state == "rejected"
    assert failure_codes(file_id) == {"MAN-002"}
    assert scalar("SELECT count(*) FROM core.referrals") == 0
    assert scalar("SELECT count(*) FROM ops.notifications WHERE kind = 'rejection'") == 1

    # As the rejection asks: the same file uploaded again, then a manifest that matches it.
    path = upload(stack, feed, NAME, content)
    os.utime(path, (time.time() + 5, time.time() + 5))  # listings have whole seconds
    upload(stack, feed, f"{NAME}.done", _manifest(content, 40))
    assert [(o["state"], o["rows"]) for o in _run(config)] == [("published", 40)]
    assert [state for _, state in ledger_rows(SFTP_FEED)] == ["rejected", "published"]
    assert_every_file_accounted_for()


def test_done_marker_with_another_row_count_is_rejected_before_publishing(stack, demo_config):
    config = with_transport(demo_config, SFTP_FEED, completeness="done_marker")
    feed = config.feed(SFTP_FEED)
    content = referrals_csv(PERIOD, seed=8, n=40)
    upload(stack, feed, NAME, content)
    upload(stack, feed, f"{NAME}.done", _manifest(content, 41))
    assert [o["state"] for o in _run(config)] == ["rejected"]
    ((file_id, _),) = ledger_rows(SFTP_FEED)
    assert "MAN-003" in failure_codes(file_id)
    assert scalar("SELECT count(*) FROM core.referrals") == 0
    assert staging_tables() == 0


def test_unreadable_manifest_is_rejected(stack, demo_config):
    config = with_transport(demo_config, SFTP_FEED, completeness="done_marker")
    feed = config.feed(SFTP_FEED)
    upload(stack, feed, NAME, referrals_csv(PERIOD, seed=8, n=10))
    upload(stack, feed, f"{NAME}.done", b"done\n")
    ingest.fetch(SFTP_FEED, config=config)
    ((file_id, state),) = ledger_rows(SFTP_FEED)
    assert (state, failure_codes(file_id)) == ("rejected", {"MAN-001"})


# --- names, links and archives --------------------------------------------------------------------


def test_dot_dot_and_absolute_names_never_become_paths(stack, demo_config):
    stack.sftp.faults.extra_names = [
        "../referrals_2026Q3.csv",
        "/etc/referrals_2026Q3.csv",
        "..",
        "x/../../referrals_2026Q4.csv",
        "referrals_2026Q4.csv\n",
    ]
    assert ingest.fetch(SFTP_FEED, config=demo_config) == []
    assert ledger_rows(SFTP_FEED) == []
    upload(stack, demo_config.feed(SFTP_FEED), NAME, referrals_csv(PERIOD, seed=9, n=30))
    assert [o["state"] for o in _run(demo_config)] == ["published"]
    assert not (stack.var.parent / "referrals_2026Q3.csv").exists()
    assert all(len(name.split("/")[-1]) == 64 for name in _landing_files(stack))  # sha256 names only


def test_a_symlink_is_not_taken(stack, demo_config, tmp_path):
    folder = drop(stack, demo_config.feed(SFTP_FEED))
    outside = tmp_path / "secret.csv"
    outside.write_bytes(referrals_csv(PERIOD, seed=10, n=10))
    inside = folder / "kept.csv"
    inside.write_bytes(referrals_csv(PERIOD, seed=10, n=10))
    (folder / NAME).symlink_to(outside)
    (folder / "referrals_2026Q4.csv").symlink_to(inside)
    assert ingest.fetch(SFTP_FEED, config=demo_config) == []
    assert ledger_rows(SFTP_FEED) == []


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_zip_and_gz_archives_are_expanded_and_both_kept(stack, demo_config):
    for pattern, name, pack in (
        ("referrals_{period}.zip", "referrals_2026Q3.zip", lambda c: _zip({"../../evil/referrals.csv": c})),
        ("referrals_{period}.csv.gz", "referrals_2026Q4.csv.gz", gzip.compress),
    ):
        config = with_transport(demo_config, SFTP_FEED, pattern=pattern)
        content = referrals_csv(Period.from_id(name[10:16]), seed=11, n=60)
        packed = pack(content)
        upload(stack, config.feed(SFTP_FEED), name, packed)
        assert [(o["state"], o["rows"]) for o in _run(config)] == [("published", 60)]
        landed = _landing_files(stack)
        assert f"{hashlib.sha256(content).hexdigest()[:2]}/{hashlib.sha256(content).hexdigest()}" in landed
        assert f"{hashlib.sha256(packed).hexdigest()[:2]}/{hashlib.sha256(packed).hexdigest()}" in landed
    assert scalar("SELECT count(*) FROM ops.received_files WHERE archive_sha256 IS NOT NULL") == 2
    assert not (stack.var.parent / "evil").exists()


def _bomb(expanded_mb: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("referrals.csv", "w", force_zip64=True) as member:
            for _ in range(expanded_mb):
                member.write(b"0" * (1 << 20))
    return buffer.getvalue()


def test_a_zip_bomb_is_refused_cleanly(stack, demo_config):
    config = with_transport(demo_config, SFTP_FEED, pattern="referrals_{period}.zip")
    bomb = _bomb(100)  # 100 MB of one byte packs into about 100 KB
    upload(stack, config.feed(SFTP_FEED), "referrals_2026Q3.zip", bomb)
    assert ingest.fetch(SFTP_FEED, config=config) == []
    ((file_id, state),) = ledger_rows(SFTP_FEED)
    assert (state, failure_codes(file_id)) == ("rejected", {"ARC-002"})
    assert max((stack.var / "landing").rglob("*"), key=lambda p: p.stat().st_size).stat().st_size == len(bomb)
    assert scalar("SELECT count(*) FROM core.referrals") == 0


@pytest.mark.parametrize(
    ("members", "code"),
    [
        ({f"part{i}.csv": b"x" for i in range(40)}, "ARC-002"),  # too many entries
        ({"a.csv": b"x", "b.csv": b"y"}, "ARC-003"),  # not exactly one file
    ],
)
def test_archives_outside_the_rules_are_refused(stack, demo_config, members, code):
    config = with_transport(demo_config, SFTP_FEED, pattern="referrals_{period}.zip")
    upload(stack, config.feed(SFTP_FEED), "referrals_2026Q3.zip", _zip(members))
    ingest.fetch(SFTP_FEED, config=config)
    ((file_id, state),) = ledger_rows(SFTP_FEED)
    assert (state, failure_codes(file_id)) == ("rejected", {code})


# --- after publish --------------------------------------------------------------------------------


def test_published_file_moves_to_the_processed_folder_only_after_publish(stack, demo_config):
    config = with_transport(demo_config, SFTP_FEED, processed_directory="/council/processed")
    feed = config.feed(SFTP_FEED)
    upload(stack, feed, NAME, referrals_csv(PERIOD, seed=12, n=30, defects=False))
    (file_id,) = ingest.fetch(SFTP_FEED, config=config)
    assert (drop(stack, feed) / NAME).exists()  # received, not yet published: still the partner's
    assert [o["state"] for o in ingest.decide(SFTP_FEED, [file_id], config=config)] == ["published"]
    assert not (drop(stack, feed) / NAME).exists()
    assert (stack.drop_dir("/council/processed") / f"{file_id}-{NAME}").exists()
    assert_every_file_accounted_for()

    upload(stack, feed, NAME, b"referral_id,child_id\n")  # columns missing: rejected
    assert [o["state"] for o in _run(config)] == ["rejected"]
    assert (drop(stack, feed) / NAME).exists()  # left for the partner to see and replace


# --- the arrival watcher --------------------------------------------------------------------------


def test_arrival_trigger_fires_for_complete_files_and_again_when_one_changes(stack, demo_config):
    feed = demo_config.feed(SFTP_FEED)
    folder = drop(stack, feed)
    trigger = SftpArrivalTrigger(
        sftp_conn_id=feed.transport.connection,
        directory=feed.transport.directory,
        pattern=feed.transport.pattern,
        poll_seconds=1,
    )

    async def watch() -> list[list[str]]:
        events = trigger.run()
        seen = []
        try:
            (folder / f"{NAME}.part").write_bytes(b"half")
            (folder / "referrals_2026Q2.csv").write_bytes(b"a,b\n1,2\n")
            seen.append((await asyncio.wait_for(anext(events), 30)).payload["files"])
            (folder / "referrals_2026Q2.csv").write_bytes(b"a,b\n1,2\n3,4\n")
            seen.append((await asyncio.wait_for(anext(events), 30)).payload["files"])
        finally:
            await events.aclose()
        return seen

    assert asyncio.run(watch()) == [["referrals_2026Q2.csv"], ["referrals_2026Q2.csv"]]


def test_arrival_watch_follows_each_completeness_rule():
    def listing(*entries):
        return [Listed(name=n, regular=True, size=s, mtime=m) for n, s, m in entries]

    rename = ArrivalWatch(pattern="r_{period}.csv")
    assert rename.arrivals(listing(("r_2026Q3.csv.part", 5, 100.0)), now=200) == []
    assert rename.arrivals(listing(("r_2026Q3.csv", 9, 101.0)), now=200) == ["r_2026Q3.csv"]
    assert rename.arrivals(listing(("r_2026Q3.csv", 9, 101.0)), now=210) == []

    marker = ArrivalWatch(pattern="r_{period}.csv", completeness="done_marker")
    assert marker.arrivals(listing(("r_2026Q3.csv", 9, 100.0)), now=200) == []
    both = listing(("r_2026Q3.csv", 9, 100.0), ("r_2026Q3.csv.done", 80, 101.0))
    assert marker.arrivals(both, now=200) == ["r_2026Q3.csv"]

    stable = ArrivalWatch(pattern="r_{period}.csv", completeness="stable_size", min_age_seconds=30)
    assert stable.arrivals(listing(("r_2026Q3.csv", 5, 100.0)), now=110) == []
    assert stable.arrivals(listing(("r_2026Q3.csv", 9, 112.0)), now=120) == []  # grew
    assert stable.arrivals(listing(("r_2026Q3.csv", 9, 112.0)), now=130) == []  # too young
    assert stable.arrivals(listing(("r_2026Q3.csv", 9, 112.0)), now=150) == ["r_2026Q3.csv"]


def test_arrival_trigger_never_connects_without_a_pin(stack, demo_config, monkeypatch):
    feed = demo_config.feed(SFTP_FEED)
    trigger = SftpArrivalTrigger(
        sftp_conn_id=feed.transport.connection, directory=feed.transport.directory, pattern=feed.transport.pattern
    )
    upload(stack, feed, NAME, b"a,b\n1,2\n")
    for extra in ({}, {"no_host_key_check": "true"}, {"known_hosts": "none"}):
        monkeypatch.setenv("AIRFLOW_CONN_PARTNERFLOW_SFTP_COUNCIL", _connection(stack, **extra))
        with pytest.raises(HostKeyNotPinned, match="ssh-keyscan"):
            asyncio.run(trigger.listing())
    assert stack.sftp.auth_attempts == 0

    other = ensure_keys(stack.var / "other-server")
    monkeypatch.setenv("AIRFLOW_CONN_PARTNERFLOW_SFTP_COUNCIL", _connection(stack, host_key=other.host_key_line))
    with pytest.raises(Exception, match="(?i)host key"):
        asyncio.run(trigger.listing())  # a changed key: asyncssh refuses it before logging in
    assert stack.sftp.auth_attempts == 0

    monkeypatch.setenv("AIRFLOW_CONN_PARTNERFLOW_SFTP_COUNCIL", _connection(stack, host_key=stack.keys.host_key_line))
    assert NAME in [e.name for e in asyncio.run(trigger.listing())]  # the pinned key: listed
