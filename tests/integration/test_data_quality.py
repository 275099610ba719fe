"""The data-quality record of each submission, built from the reports that publish and quarantine store.

Files go through the package's own intake path (real SFTP server and partner API, no Airflow scheduler),
as in tests/integration/test_ingest.py; the record is read back through ``partnerflow.contracts.quality``.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os

import pytest
import sqlalchemy as sa

from partnerflow import warehouse
from partnerflow.contracts import quality, suites
from partnerflow.core.periods import Period
from partnerflow.pipeline import ingest
from partnerflow_dev.synthetic import REFERRAL_COLUMNS, police_ppn_records, referrals_csv, referrals_rows

PERIOD = Period.from_id("2026Q3")


@pytest.fixture
def stack(devstack):
    """The shared dev stack (tests/conftest.py)."""
    return devstack


def _send_referrals(stack, demo_config, content: bytes, period: Period = PERIOD) -> list[dict]:
    drop = stack.drop_dir(demo_config.feed("council_referrals").transport.directory)
    name = f"referrals_{period.id}.csv"
    (drop / f"{name}.part").write_bytes(content)
    os.replace(drop / f"{name}.part", drop / name)
    return ingest.decide("council_referrals", ingest.fetch("council_referrals", config=demo_config), config=demo_config)


def _with_one_warning(seed: int) -> bytes:
    """A good referrals file but for one assessment starting the day before its referral (REF-011)."""
    rows = referrals_rows(PERIOD, seed=seed, n=300)
    row = next(r for r in rows if r["assessment_start_date"])
    row["assessment_start_date"] = (dt.date.fromisoformat(row["referral_date"]) - dt.timedelta(days=1)).isoformat()
    row["assessment_authorised_date"] = ""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=REFERRAL_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode()


def _records(period_id: str | None = None) -> dict[tuple[str, str], quality.SubmissionQuality]:
    with warehouse.engine().connect() as conn:
        return {(q.feed_id, q.period_id): q for q in quality.submission_quality(conn, period_id=period_id)}


def test_quality_of_each_submission(stack, demo_config):
    referral_rules = len(suites.read_rules("referrals")) - 1  # no earlier return: volume not checked
    police_rules = len(suites.read_rules("police_ppn")) - 1

    assert [o["state"] for o in _send_referrals(stack, demo_config, referrals_csv(PERIOD, seed=31, defects=True))] == [
        "rejected"
    ]
    corrected = _with_one_warning(seed=31)
    assert [o["state"] for o in _send_referrals(stack, demo_config, corrected)] == ["published"]
    stack.partner_api.submit("ppn", PERIOD.id, police_ppn_records(PERIOD, seed=31))
    assert [o["state"] for o in ingest.decide("police_ppn", ingest.fetch("police_ppn", period_id=PERIOD.id))] == [
        "published"
    ]
    unreadable = _send_referrals(stack, demo_config, b"referral_id,child_id\nR1,C1\n", period=PERIOD.next())
    assert [o["state"] for o in unreadable] == ["rejected"]

    records = _records()
    council = records[("council_referrals", PERIOD.id)]
    assert council.as_dict() == {
        "feed_id": "council_referrals",
        "period_id": PERIOD.id,
        "state": "published",
        "first_time_pass": False,
        "files_checked": 2,
        "files_rejected": 1,
        "file_id": council.file_id,
        "stage": "contract",
        "rules_checked": referral_rules,
        "rules_passed": referral_rules - 1,
        "error_rules_failed": 0,
        "warning_rules_failed": 1,
        "rows_checked": 300,
        "rows_with_warnings": 1,
        "warning_codes": ("REF-011",),
    }
    police = records[("police_ppn", PERIOD.id)]
    assert (police.first_time_pass, police.files_checked, police.files_rejected) == (True, 1, 0)
    assert (police.rules_checked, police.rules_passed, police.rows_with_warnings) == (police_rules, police_rules, 0)
    later = records[("council_referrals", PERIOD.next().id)]
    assert (later.state, later.first_time_pass, later.stage) == ("rejected", False, "intake")
    assert later.error_rules_failed == 1
    assert set(_records(PERIOD.id)) == {("council_referrals", PERIOD.id), ("police_ppn", PERIOD.id)}

    with warehouse.engine().connect() as conn:
        rejected = conn.execute(
            sa.text("SELECT error_codes, warning_codes, rows_with_warnings FROM marts.file_quality ORDER BY file_id")
        ).first()
        baseline = ingest.volume_baseline(conn, "council_referrals", demo_config.dataset("referrals"))
    assert (sorted(rejected.error_codes), rejected.warning_codes, rejected.rows_with_warnings) == (
        ["REF-006", "REF-008", "REF-010"],
        ["REF-011"],
        1,
    )
    assert baseline == 300


def test_a_submission_not_yet_checked_has_an_empty_record(stack, demo_config):
    with warehouse.engine().begin() as conn:
        conn.execute(
            sa.text("INSERT INTO ops.submissions (feed_id, period_id, due_date) VALUES ('police_ppn', :p, :d)"),
            {"p": PERIOD.id, "d": dt.date(2026, 10, 21)},
        )
    (record,) = _records().values()
    assert (record.state, record.first_time_pass, record.files_checked, record.file_id) == ("expected", None, 0, None)
    assert record.warning_codes == ()
