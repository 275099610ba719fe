"""``partnerflow backfill``: past returns from a folder go through the same landing, ledger, contract and
publish as this quarter's, and nobody is e-mailed about them."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import sqlalchemy as sa

from partnerflow import warehouse
from partnerflow.cli.main import main
from partnerflow.core import clock
from partnerflow.core.periods import Period
from partnerflow.pipeline.backfill import backfill, history_name
from partnerflow_dev.synthetic import police_ppn_records, referrals_csv, sample_return

COLLECTING = Period.from_id("2026Q3")  # the clock is pinned to the morning after it ends
Q1, Q2 = Period.from_id("2026Q1"), Period.from_id("2026Q2")


@pytest.fixture
def history(tmp_path, warehouse_url, demo_config):
    clock.set_now(dt.datetime.combine(COLLECTING.end + dt.timedelta(days=1), dt.time(9), tzinfo=clock.LONDON))
    folder = tmp_path / "history"
    folder.mkdir()
    feeds = ("council_referrals", "police_ppn", "council_child_protection")
    referrals, police, cp = (demo_config.feed(f) for f in feeds)
    for period in (Q1, Q2):
        (folder / history_name(referrals, period)).write_bytes(referrals_csv(period, seed=5, n=120))
        (folder / history_name(police, period)).write_text(json.dumps(police_ppn_records(period, seed=5)))
    (folder / history_name(cp, Q2)).write_bytes(sample_return("child_protection", Q2, seed=5, defects=True))  # type: ignore[arg-type]
    (folder / history_name(referrals, COLLECTING)).write_bytes(referrals_csv(COLLECTING, seed=5, n=120))
    (folder / "notes.txt").write_text("not a return")
    yield folder
    clock.set_now(None)


def _rows(sql: str) -> list[tuple]:
    with warehouse.engine().connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(sql))]


def test_past_returns_are_checked_and_published_and_nobody_is_emailed(history, demo_config):
    results = backfill(history, config=demo_config)
    outcomes = {(r.name, r.outcome) for r in results}
    assert ("referrals_2026Q1.csv", "published") in outcomes
    assert ("referrals_2026Q2.csv", "published") in outcomes
    assert ("police_ppn_2026Q1.json", "published") in outcomes
    assert ("police_ppn_2026Q2.json", "published") in outcomes
    assert ("child_protection_2026Q2.csv", "rejected") in outcomes  # the contract still applies to history
    assert ("notes.txt", "skipped: the name is no feed's file name") in outcomes
    (current,) = [r for r in results if r.name == "referrals_2026Q3.csv"]
    assert current.outcome.startswith("skipped: not a past period")

    assert _rows("SELECT period_id, count(*) FROM core.referrals GROUP BY period_id ORDER BY 1") == [
        ("2026Q1", 120),
        ("2026Q2", 120),
    ]
    assert _rows("SELECT count(*) FROM core.police_ppn") == [(8,)]
    assert _rows("SELECT feed_id, period_id, state FROM ops.submissions ORDER BY 1, 2") == [
        ("council_child_protection", "2026Q2", "rejected"),
        ("council_referrals", "2026Q1", "published"),
        ("council_referrals", "2026Q2", "published"),
        ("police_ppn", "2026Q1", "published"),
        ("police_ppn", "2026Q2", "published"),
    ]
    # No receipt, no rejection report: the outbox is empty, and each file's history says why.
    assert _rows("SELECT count(*) FROM ops.notifications") == [(0,)]
    assert _rows(
        "SELECT count(DISTINCT file_id) FROM ops.file_events WHERE reason LIKE 'history for a past period%'"
    ) == [(5,)]


def test_running_it_again_adds_nothing(history, demo_config):
    backfill(history, config=demo_config, feed_ids=["council_referrals"])
    before = _rows("SELECT count(*) FROM ops.received_files")
    again = backfill(history, config=demo_config, feed_ids=["council_referrals"])
    assert {r.name: r.outcome for r in again if r.feed_id} == {
        "referrals_2026Q1.csv": "already loaded",
        "referrals_2026Q2.csv": "already loaded",
        "referrals_2026Q3.csv": again[-1].outcome,
    }
    assert _rows("SELECT count(*) FROM ops.received_files") == before == [(2,)]


def test_the_command_explains_each_period_id_and_fails_when_a_file_was_not_loaded(history, capsys):
    assert main(["backfill", str(history), "--feed", "police_ppn"]) == 0
    out = capsys.readouterr().out
    assert "police_ppn_2026Q1.json — 2026Q1 means Q4 2025/26 (Jan–Mar 2026): published (4 rows)" in out
    assert "no e-mails sent for past periods" in out
    assert main(["backfill", str(history)]) == 1  # the defective file and the current period's are not loaded
