"""``partnerflow validate FEED FILE``: a dry run of a local file that prints the partner's report and keeps
nothing. Run through the command's own entry point, against the test warehouse or (once, as a real
process) a temporary PostgreSQL of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import sqlalchemy as sa

from partnerflow import warehouse
from partnerflow.cli.main import main
from partnerflow.contracts import suites
from partnerflow.core.periods import Period
from partnerflow_dev import synthetic

PERIOD = Period.from_id("2026Q3")
SEED = 41
IDENTIFYING = ("referral_id", "child_id", "child_name", "date_of_birth", "postcode")


@pytest.fixture
def returns(tmp_path: Path) -> Path:
    """Partners' returns as they would email them to an engineer: defective and good referrals, police JSON."""
    folder = tmp_path / "returns"
    folder.mkdir()
    (folder / "referrals_2026Q3.csv").write_bytes(synthetic.referrals_csv(PERIOD, seed=SEED, defects=True))
    (folder / "referrals_good_2026Q3.csv").write_bytes(synthetic.referrals_csv(PERIOD, seed=SEED))
    records = synthetic.police_ppn_records(PERIOD, seed=SEED, defects=True)
    (folder / "ppn_2026Q3.json").write_text(json.dumps(records))
    (folder / "ppn_page.json").write_text(json.dumps({"page": 1, "total_pages": 1, "records": records}))
    (folder / "referrals.csv").write_bytes(synthetic.referrals_csv(PERIOD, seed=SEED, n=30))
    return folder


def personal_values() -> set[str]:
    rows = synthetic.referrals_rows(PERIOD, seed=SEED, defects=True)
    return {row[c] for row in rows for c in IDENTIFYING if row[c]}


def table_counts(url: str) -> dict[str, int]:
    """Rows in every ops table, and how many tables are in staging or a scratch schema."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            tables = conn.execute(
                sa.text(
                    "SELECT table_schema, table_name FROM information_schema.tables"
                    " WHERE table_schema = 'ops' OR table_schema = 'staging' OR table_schema LIKE 'scratch%'"
                    " OR (table_schema = 'core' AND table_type = 'BASE TABLE')"
                )
            ).all()
            counts = {
                f"{schema}.{name}": conn.execute(sa.text(f'SELECT count(*) FROM {schema}."{name}"')).scalar_one()
                for schema, name in tables
                if schema in ("ops", "core") and name != "schema_migrations"
            }
            counts["staging and scratch tables"] = sum(1 for schema, _ in tables if schema not in ("ops", "core"))
            counts["scratch schemas"] = conn.execute(
                sa.text("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'scratch%'")
            ).scalar_one()
    finally:
        engine.dispose()
    return counts


def test_a_defective_file_gets_the_partners_report_and_nothing_is_kept(warehouse_url, var, returns, capsys):
    before = table_counts(warehouse_url)
    code = main(["validate", "council_referrals", str(returns / "referrals_2026Q3.csv")])
    out, err = capsys.readouterr()

    assert code == 1
    assert "council_referrals: referrals_2026Q3.csv for Q2 2026/27 (Jul–Sep 2026)" in out
    assert "Checked 400 rows against" in out
    defects = synthetic.REFERRAL_DEFECTS
    assert "ERROR   REF-006  referral_source: 3 rows of 400" in out
    assert "    rows " + ", ".join(map(str, defects["unknown_referral_source"])) in out
    assert "ERROR   REF-008  referral_date: 1 row of 400" in out
    assert "ERROR   REF-010  assessment_start_date, assessment_authorised_date: 2 rows of 400" in out
    assert "WARNING REF-011" in out
    assert suites.read_rules("referrals")[5].message in out  # the partner's own words
    assert out.rstrip().endswith("Result: would be REJECTED: 3 errors and 1 warning.")

    leaked = sorted(v for v in personal_values() if v in out or v in err)
    assert not leaked, f"values from the file were printed: {leaked[:5]}"
    assert table_counts(warehouse_url) == before  # no ledger row, no report, no email; scratch schema dropped
    assert not (var / "landing").exists()


def test_a_good_file_is_accepted_and_its_volume_compared_with_the_last_accepted_return(warehouse_url, returns, capsys):
    assert main(["validate", "council_referrals", str(returns / "referrals_good_2026Q3.csv")]) == 0
    out, _ = capsys.readouterr()
    assert "volume not checked (no accepted return to compare with)" in out
    assert out.rstrip().endswith("Result: would be ACCEPTED.")

    with warehouse.engine().begin() as conn:  # the feed's last accepted return had 1,000 rows
        conn.execute(
            sa.text(
                "INSERT INTO ops.received_files (feed_id, period_id, source_name, sha256, landed_path, state,"
                " row_count) VALUES ('council_referrals', '2026Q2', 'referrals_2026Q2.csv', repeat('a', 64),"
                " 'aa/aaaa', 'published', 1000)"
            )
        )
    assert main(["validate", "council_referrals", str(returns / "referrals_good_2026Q3.csv")]) == 0
    out, _ = capsys.readouterr()
    assert "volume compared with the last accepted return (1,000)" in out
    assert "WARNING REF-013  the whole file: applies to the file" in out
    assert out.rstrip().endswith("Result: would be ACCEPTED, with 1 warning.")


@pytest.mark.parametrize("name", ["ppn_2026Q3.json", "ppn_page.json"])
def test_an_api_return_given_as_records_or_a_page(warehouse_url, returns, capsys, name):
    code = main(["validate", "police_ppn", str(returns / name), "--period", "2026Q3", "--json"])
    out, _ = capsys.readouterr()
    assert code == 1
    report = json.loads(out)
    assert report["rows_checked"] == 4
    assert {f["code"]: f["row_numbers"] for f in report["failures"]} == {
        "PPN-005": list(synthetic.POLICE_PPN_DEFECTS["unknown_grade"]),
        "PPN-006": list(synthetic.POLICE_PPN_DEFECTS["negative_value"]),
    }


def test_a_file_the_feed_cannot_read_gets_the_intake_report(warehouse_url, tmp_path, capsys):
    path = tmp_path / "referrals_2026Q3.csv"
    path.write_text("referral_id,child_id\nR1,C1\n")
    assert main(["validate", "council_referrals", str(path)]) == 1
    out, _ = capsys.readouterr()
    assert "The file could not be read as the feed declares" in out
    assert "ERROR   FILE-002  referral_date" in out


def test_engineers_problems_exit_2_with_a_reason(warehouse_url, returns, tmp_path, capsys):
    assert main(["validate", "no_such_feed", str(returns / "referrals_2026Q3.csv")]) == 2
    assert "no feed 'no_such_feed' in the configuration (known: council_referrals" in capsys.readouterr().err

    assert main(["validate", "council_referrals", str(returns / "referrals.csv")]) == 2
    assert "give it with --period" in capsys.readouterr().err

    drafts = tmp_path / "drafts"
    drafts.mkdir()
    suite = json.loads(suites.contract_path("referrals").read_text())
    suite["expectations"][5]["type"] = "expect_column_values_to_be_in_sett"
    (drafts / "referrals.json").write_text(json.dumps(suite))
    assert (
        main(["validate", "council_referrals", str(returns / "referrals_2026Q3.csv"), "--contracts", str(drafts)]) == 2
    )
    err = capsys.readouterr().err
    assert "the contract, not the file, needs fixing" in err and "rule REF-006: GX does not understand" in err


def test_anywhere_without_a_warehouse_or_a_key(returns, tmp_path):
    """The real command, with no PARTNERFLOW_* settings: it brings its own PostgreSQL and removes it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARTNERFLOW_")}
    env["PARTNERFLOW_VAR"] = str(tmp_path / "var")
    leftovers = set(Path(tempfile.gettempdir()).glob("partnerflow-validate-*"))
    result = subprocess.run(
        [sys.executable, "-m", "partnerflow.cli.main", "validate", "council_referrals", "referrals_2026Q3.csv"],
        cwd=returns,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 1, result.stderr[-2000:]
    assert "ERROR   REF-006  referral_source: 3 rows of 400" in result.stdout
    assert "starting a temporary PostgreSQL" in result.stderr
    assert "pseudonymising with a random key used for this check only" in result.stderr
    assert "Traceback" not in result.stderr and "INFO" not in result.stderr
    leaked = sorted(v for v in personal_values() if v in result.stdout or v in result.stderr)
    assert not leaked
    assert set(Path(tempfile.gettempdir()).glob("partnerflow-validate-*")) <= leftovers
    assert not (tmp_path / "var").exists()
