"""Data contracts against a real PostgreSQL: staged generator rows pass or fail with codes, counts and rows.

Uses the tests' embedded PostgreSQL and a fresh database per module.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest
import sqlalchemy as sa

from partnerflow import contracts, generator, warehouse
from partnerflow.calendar import Period
from partnerflow.config import Dataset, load_config

PERIOD = Period(2026, 3)
PSEUDONYM_KEY = b"test-only-key"
SQL_TYPES = {"text": "text", "code": "text", "date": "date", "integer": "bigint", "decimal": "numeric"}
CANARY = "ZQ9X"


@pytest.fixture(scope="module")
def warehouse_url(postgres) -> Iterator[str]:
    name = f"partnerflow_contracts_{uuid.uuid4().hex[:8]}"
    postgres.create_database(name)
    url = postgres.url(name)
    engine = sa.create_engine(url)
    try:
        warehouse.migrate(engine)
        engine.dispose()
        yield url
    finally:
        with psycopg.connect(postgres.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def referrals() -> Dataset:
    return load_config().dataset("referrals")


@pytest.fixture(scope="module")
def police_ppn() -> Dataset:
    return load_config().dataset("police_ppn")


_file_ids = iter(range(1, 10_000))


def stage(url: str, dataset: Dataset, rows: list[dict], *, types: dict[str, str] | None = None) -> str:
    """Minimise ``rows`` as intake does and COPY them into a new ``staging.<dataset>_f<n>`` table."""
    table = f"staging.{dataset.id}_f{next(_file_ids)}"
    columns = dataset.loaded_columns
    types = {c.name: SQL_TYPES[c.type] for c in columns} | (types or {})
    ddl = ", ".join(["row_number integer"] + [f"{c.name} {types[c.name]}" for c in columns])
    names = ", ".join(["row_number"] + [c.name for c in columns])
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        conn.execute(f"CREATE TABLE {table} ({ddl})")
        with conn.cursor().copy(f"COPY {table} ({names}) FROM STDIN") as copy:
            for number, row in enumerate(rows, start=1):
                copy.write_row([number] + [minimise(c.minimise, row[c.name]) for c in columns])
    return table


def minimise(how: str, value):
    if value in ("", None):
        return None
    if how == "pseudonymise":
        return hmac.new(PSEUDONYM_KEY, str(value).encode(), hashlib.sha256).hexdigest()
    if how == "month":
        return value[:8] + "01"
    if how == "postcode_sector":
        return value[:-2]
    return value


def failures_by_code(report: contracts.ContractReport) -> dict[str, tuple[str, int, tuple[int, ...]]]:
    return {f.code: (f.severity, f.failing_rows, f.row_numbers) for f in report.failures}


def validate(url: str, dataset: Dataset, table: str, period: Period = PERIOD) -> contracts.ContractReport:
    return contracts.validate_staged(warehouse_url=url, table=table, dataset=dataset, period=period)


def test_contract_files_load_with_every_rule(referrals, police_ppn):
    for dataset, count in ((referrals, 11), (police_ppn, 7)):
        suite = contracts.load_suite(dataset.id)
        rules = contracts.read_rules(dataset.id)
        assert len(suite.expectations) == len(rules) == count
        assert [e.meta["code"] for e in suite.expectations] == [r.code for r in rules]
        not_null = {r.columns[0] for r in rules if r.expectation_type == "expect_column_values_to_not_be_null"}
        assert not_null == {c.name for c in dataset.loaded_columns if c.required}


def test_good_referrals_pass(warehouse_url, referrals):
    table = stage(warehouse_url, referrals, generator.referrals_rows(PERIOD, seed=11))
    report = validate(warehouse_url, referrals, table)
    assert report == contracts.ContractReport(passed=True, rules_checked=11, rows_checked=400, failures=())


def test_defective_referrals_fail_with_codes_counts_and_rows(warehouse_url, referrals):
    rows = generator.referrals_rows(PERIOD, seed=11, defects=True)
    report = validate(warehouse_url, referrals, stage(warehouse_url, referrals, rows))
    defects = generator.REFERRAL_DEFECTS
    assert not report.passed
    assert failures_by_code(report) == {
        "REF-006": ("error", 3, defects["unknown_referral_source"]),
        "REF-008": ("error", 1, defects["referral_date_outside_period"]),
        "REF-010": ("error", 2, defects["authorised_before_start"]),
        "REF-011": ("warning", 1, defects["assessment_before_referral"]),
    }
    ref_006 = report.failures[0]
    assert ref_006.columns == ("referral_source",)
    assert "CIN census referral source code" in ref_006.message


def test_the_period_bounds_come_from_the_period_validated(warehouse_url, referrals):
    table = stage(warehouse_url, referrals, generator.referrals_rows(PERIOD, seed=12, n=50))
    report = validate(warehouse_url, referrals, table, period=PERIOD.next())
    assert failures_by_code(report)["REF-008"][1] == 50


def test_warnings_alone_still_pass(warehouse_url, referrals):
    rows = generator.referrals_rows(PERIOD, seed=13, n=60)
    row = next(r for r in rows if r["assessment_start_date"])
    referral_date = dt.date.fromisoformat(row["referral_date"])
    row["assessment_start_date"] = (referral_date - dt.timedelta(days=1)).isoformat()
    row["assessment_authorised_date"] = ""
    report = validate(warehouse_url, referrals, stage(warehouse_url, referrals, rows))
    assert report.passed
    assert failures_by_code(report) == {"REF-011": ("warning", 1, (rows.index(row) + 1,))}


def test_missing_and_repeated_values(warehouse_url, referrals):
    rows = generator.referrals_rows(PERIOD, seed=14, n=60)
    rows[9]["referral_id"] = rows[4]["referral_id"]
    rows[19]["child_id"] = ""
    rows[29]["nfa"] = "y"
    rows[39]["referral_source"] = ""
    report = validate(warehouse_url, referrals, stage(warehouse_url, referrals, rows))
    assert failures_by_code(report) == {
        "REF-002": ("error", 1, (20,)),
        "REF-004": ("error", 1, (40,)),
        "REF-007": ("error", 1, (30,)),
        "REF-009": ("error", 2, (5, 10)),
    }


def test_police_returns(warehouse_url, police_ppn):
    good = generator.police_ppn_records(PERIOD, seed=15)
    report = validate(warehouse_url, police_ppn, stage(warehouse_url, police_ppn, good))
    assert report == contracts.ContractReport(passed=True, rules_checked=7, rows_checked=4, failures=())

    bad = generator.police_ppn_records(PERIOD, seed=15, defects=True)
    report = validate(warehouse_url, police_ppn, stage(warehouse_url, police_ppn, bad))
    assert failures_by_code(report) == {
        "PPN-005": ("error", 1, generator.POLICE_PPN_DEFECTS["unknown_grade"]),
        "PPN-006": ("error", 1, generator.POLICE_PPN_DEFECTS["negative_value"]),
    }

    repeated = good + [dict(good[0]), {"measure_code": "PPN_ADULT", "grade": "H", "value": 3}]
    report = validate(warehouse_url, police_ppn, stage(warehouse_url, police_ppn, repeated))
    assert failures_by_code(report) == {
        "PPN-004": ("error", 1, (6,)),
        "PPN-005": ("error", 1, (6,)),
        "PPN-007": ("error", 2, (1, 5)),
    }


def test_no_values_in_the_report_or_the_logs(warehouse_url, referrals, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    rows = generator.referrals_rows(PERIOD, seed=16, defects=True)
    for number in generator.REFERRAL_DEFECTS["unknown_referral_source"]:
        rows[number - 1]["referral_source"] = CANARY
    rows[5]["referral_id"] = rows[6]["referral_id"]  # a repeated id: its pseudonym must not leak either
    table = stage(warehouse_url, referrals, rows)
    report = validate(warehouse_url, referrals, table)
    failing = {n for f in report.failures for n in f.row_numbers}
    assert failing >= {3, 6, 7, 8, 12, 17, 23, 29, 41}
    secrets = {CANARY}
    for number in failing:
        row = rows[number - 1]
        secrets |= {minimise("pseudonymise", row["referral_id"]), minimise("pseudonymise", row["child_id"])}
        secrets |= {row[c] for c in ("referral_date", "assessment_start_date", "assessment_authorised_date")}
    secrets.discard("")
    stored = report.to_json()
    assert contracts.ContractReport.from_json(stored) == report
    out, err = capsys.readouterr()
    for place, text in (("report", stored), ("logs", caplog.text), ("stdout", out), ("stderr", err)):
        leaked = sorted(s for s in secrets if s in text)
        assert not leaked, f"{place} holds values from failing rows: {leaked}"
    assert "Calculating Metrics" not in err


def test_a_misspelled_expectation_type_is_refused(tmp_path):
    suite = json.loads(contracts.contract_path("referrals").read_text())
    suite["expectations"][5]["type"] = "expect_column_values_to_be_in_sett"
    (tmp_path / "referrals.json").write_text(json.dumps(suite))
    with pytest.raises(contracts.ContractError, match=r"rule REF-006: GX does not understand"):
        contracts.load_suite("referrals", directory=tmp_path)


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (lambda rule: rule["kwargs"].update(value_sett=rule["kwargs"].pop("value_set")), "GX does not understand"),
        (lambda rule: rule["meta"].pop("message"), "meta lacks message"),
        (lambda rule: rule["meta"].update(severity="fatal"), "severity must be one of"),
        (lambda rule: rule["meta"].update(columns=["nfa"]), "differ from the columns"),
        (lambda rule: rule.update(kwarg={}), "unknown keys"),
    ],
)
def test_malformed_rules_are_refused(tmp_path, change, complaint):
    suite = json.loads(contracts.contract_path("referrals").read_text())
    change(suite["expectations"][5])
    (tmp_path / "referrals.json").write_text(json.dumps(suite))
    with pytest.raises(contracts.ContractError, match=complaint):
        contracts.load_suite("referrals", directory=tmp_path)


def test_repeated_codes_and_unknown_parameters_are_refused(tmp_path):
    suite = json.loads(contracts.contract_path("referrals").read_text())
    suite["expectations"][1]["meta"]["code"] = "REF-001"
    (tmp_path / "referrals.json").write_text(json.dumps(suite))
    with pytest.raises(contracts.ContractError, match="repeated: REF-001"):
        contracts.read_rules("referrals", directory=tmp_path)

    suite = json.loads(contracts.contract_path("referrals").read_text())
    suite["expectations"][7]["kwargs"]["min_value"] = {"$PARAMETER": "period_begin"}
    (tmp_path / "referrals.json").write_text(json.dumps(suite))
    with pytest.raises(contracts.ContractError, match="unknown \\$PARAMETER"):
        contracts.read_rules("referrals", directory=tmp_path)


def test_a_type_mismatch_is_an_engineers_problem(warehouse_url, police_ppn, caplog):
    caplog.set_level(logging.DEBUG)
    records = generator.police_ppn_records(PERIOD, seed=17)
    records[0]["value"] = CANARY
    table = stage(warehouse_url, police_ppn, records, types={"value": "text"})
    with pytest.raises(contracts.ContractConfigurationError, match="rule PPN-006") as raised:
        validate(warehouse_url, police_ppn, table)
    assert CANARY not in str(raised.value) and CANARY not in caplog.text


def test_a_missing_table_is_an_engineers_problem(warehouse_url, police_ppn):
    with pytest.raises(contracts.ContractConfigurationError, match="staging.police_ppn_f0"):
        validate(warehouse_url, police_ppn, "staging.police_ppn_f0")


def test_no_connections_are_left_open(warehouse_url, police_ppn):
    good = stage(warehouse_url, police_ppn, generator.police_ppn_records(PERIOD, seed=19))
    validate(warehouse_url, police_ppn, good)
    with pytest.raises(contracts.ContractConfigurationError):
        validate(warehouse_url, police_ppn, "staging.police_ppn_f0")
    with psycopg.connect(warehouse_url.replace("+psycopg", "")) as conn:
        others = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()[0]
    assert others == 0


def test_validation_time_and_row_number_cap(warehouse_url, referrals):
    """Prints timings (run with -s); asserts only behaviour."""
    small = stage(warehouse_url, referrals, generator.referrals_rows(PERIOD, seed=18))
    rows = generator.referrals_rows(PERIOD, seed=18, n=100_000)
    for row in rows[1000:2500]:
        row["referral_source"] = "11"
    large = stage(warehouse_url, referrals, rows)
    validate(warehouse_url, referrals, small)  # pays GX's import and first-use costs

    started = time.perf_counter()
    validate(warehouse_url, referrals, small)
    small_seconds = time.perf_counter() - started
    started = time.perf_counter()
    report = validate(warehouse_url, referrals, large)
    large_seconds = time.perf_counter() - started
    print(f"\ncontract validation: 400 rows {small_seconds:.2f} s; 100,000 rows {large_seconds:.2f} s")

    assert report.rows_checked == 100_000
    (failure,) = report.failures
    assert (failure.code, failure.failing_rows) == ("REF-006", 1500)
    assert len(failure.row_numbers) == contracts.ROW_NUMBERS_CAP
    assert set(failure.row_numbers) <= set(range(1001, 2501))
