"""Intake through the real SFTP server and partner API, without Airflow's scheduler: the package's own path.

fetch lands files and records them; decide stages, checks and publishes or quarantines; the ledger, the core
tables and the outbox say what a user would see.
"""

from __future__ import annotations

import json
import logging
import os
import re

import pytest
import sqlalchemy as sa

from partnerflow import warehouse
from partnerflow.core.periods import Period
from partnerflow.pipeline import ingest
from partnerflow_dev.synthetic import police_ppn_records, referrals_csv

PERIOD = Period.from_id("2026Q3")


@pytest.fixture
def stack(devstack):
    """The shared dev stack (tests/conftest.py)."""
    return devstack


def _upload(stack, demo_config, content: bytes, name: str = "referrals_2026Q3.csv"):
    drop = stack.drop_dir(demo_config.feed("council_referrals").transport.directory)
    (drop / f"{name}.part").write_bytes(content)
    os.replace(drop / f"{name}.part", drop / name)
    return drop / name


def _ledger(feed_id: str) -> list[tuple[int, str]]:
    with warehouse.engine().connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                sa.text("SELECT id, state FROM ops.received_files WHERE feed_id = :f ORDER BY id"), {"f": feed_id}
            )
        ]


def _count(sql: str) -> int:
    with warehouse.engine().connect() as conn:
        return conn.execute(sa.text(sql)).scalar_one()


class _Kept(logging.Handler):
    """What loggers emit at INFO and above (Airflow's logging setup may keep them from pytest's caplog)."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_defective_then_corrected_file(stack, demo_config):
    _upload(stack, demo_config, referrals_csv(PERIOD, seed=1, defects=True))
    ids = ingest.fetch("council_referrals", config=demo_config)
    kept, root = _Kept(), logging.getLogger()
    root.addHandler(kept)
    try:
        outcomes = ingest.decide("council_referrals", ids, config=demo_config)
    finally:
        root.removeHandler(kept)
    logged = "\n".join(
        r.getMessage() for r in kept.records if r.levelno >= logging.getLogger(r.name).getEffectiveLevel()
    )
    assert [o["state"] for o in outcomes] == ["rejected"]
    # One summary line for the file, with its rule codes and row counts; none of GX's own chatter.
    (summary,) = re.findall(r"council_referrals: file \d+ for 2026Q3 is [^\[\n]*", logged)
    assert re.fullmatch(rf"council_referrals: file {ids[0]} for 2026Q3 is rejected: [A-Z]+-[0-9]+ × [0-9,]+.*", summary)
    assert not [r for r in kept.records if r.name.startswith("great_expectations") and r.levelno < logging.WARNING]
    assert _count("SELECT count(*) FROM core.referrals") == 0
    assert _count("SELECT count(*) FROM ops.notifications WHERE kind = 'rejection'") == 1

    # Nothing new on the drop: a second run fetches nothing and decides nothing.
    assert ingest.fetch("council_referrals", config=demo_config) == []

    _upload(stack, demo_config, referrals_csv(PERIOD, seed=1, n=300))
    ids = ingest.fetch("council_referrals", config=demo_config)
    outcomes = ingest.decide("council_referrals", ids, config=demo_config)
    assert [(o["state"], o["rows"]) for o in outcomes] == [("published", 300)]
    assert [state for _, state in _ledger("council_referrals")] == ["rejected", "published"]
    assert _count("SELECT count(*) FROM core.referrals WHERE period_id = '2026Q3'") == 300
    assert _count("SELECT count(*) FROM ops.notifications WHERE kind = 'receipt'") == 1
    # Identifiers are keyed pseudonyms, never the partner's ids.
    assert _count("SELECT count(*) FROM core.referrals WHERE length(child_id) <> 64") == 0
    assert _count("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'staging'") == 0


def test_same_bytes_again_is_a_duplicate_and_changes_nothing(stack, demo_config):
    content = referrals_csv(PERIOD, seed=2, n=50)
    _upload(stack, demo_config, content)
    ingest.decide("council_referrals", ingest.fetch("council_referrals", config=demo_config), config=demo_config)
    _upload(stack, demo_config, content, name="referrals_2026Q3 (copy).csv")  # not the feed's pattern: ignored
    path = _upload(stack, demo_config, content)  # same name and bytes, sent again later: fetched, a duplicate
    later = path.stat().st_mtime + 60  # SFTP mtimes have one-second resolution: make "later" unambiguous
    os.utime(path, (later, later))
    ids = ingest.fetch("council_referrals", config=demo_config)
    assert ids == []
    assert [state for _, state in _ledger("council_referrals")] == ["published", "duplicate"]
    assert _count("SELECT count(*) FROM core.referrals") == 50


def test_rejected_resubmission_leaves_published_data(stack, demo_config):
    _upload(stack, demo_config, referrals_csv(PERIOD, seed=3, n=80))
    ingest.decide("council_referrals", ingest.fetch("council_referrals", config=demo_config), config=demo_config)
    _upload(stack, demo_config, b"referral_id,child_id\n")  # empty and missing columns
    outcomes = ingest.decide(
        "council_referrals", ingest.fetch("council_referrals", config=demo_config), config=demo_config
    )
    assert [o["state"] for o in outcomes] == ["rejected"]
    assert _count("SELECT count(*) FROM core.referrals") == 80
    with warehouse.engine().connect() as conn:
        state = conn.execute(sa.text("SELECT state FROM ops.submissions")).scalar_one()
        report = conn.execute(
            sa.text("SELECT report FROM ops.validation_reports ORDER BY file_id DESC LIMIT 1")
        ).scalar_one()
    assert state == "published"
    assert {f["code"] for f in report["failures"]} == {"FILE-002"}


def test_police_api_feed(stack, demo_config):
    assert ingest.fetch("police_ppn", period_id="2026Q3", config=demo_config) == []  # not submitted yet
    stack.partner_api.submit("ppn", "2026Q3", police_ppn_records(PERIOD, seed=4))
    ids = ingest.fetch("police_ppn", period_id="2026Q3", config=demo_config)
    outcomes = ingest.decide("police_ppn", ids, config=demo_config)
    assert [o["state"] for o in outcomes] == ["published"]
    assert _count("SELECT count(*) FROM core.police_ppn") == len(police_ppn_records(PERIOD, seed=4))
    with warehouse.engine().connect() as conn:
        landed = conn.execute(sa.text("SELECT landed_path FROM ops.received_files")).scalar_one()
    document = json.loads((stack.var / "landing" / landed).read_bytes())
    assert document["endpoint"] == "/v1/returns/ppn/2026Q3"
