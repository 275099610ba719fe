"""Data contracts against a real PostgreSQL: staged generator rows pass or fail with codes, counts and rows.

Every rule of every configured dataset's contract is run on its own pass and fail examples (``meta.examples``
in the contract file). A contract GX cannot evaluate fails the run for engineers and leaves the file received.
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

from partnerflow import warehouse
from partnerflow.contracts import suites
from partnerflow.core.config import Dataset, Partnership, load_config
from partnerflow.core.periods import Period
from partnerflow.intake import reader
from partnerflow.pipeline import ingest
from partnerflow.warehouse import ledger
from partnerflow_dev import synthetic

PERIOD = Period(2026, 3)
PSEUDONYM_KEY = b"test-only-key"
CANARY = "ZQ9X"


@pytest.fixture(scope="module")
def staging_db(postgres) -> Iterator[str]:
    """A migrated warehouse of this module's own, for staged tables the tests write directly."""
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
DATASETS = load_config().datasets


def _examples() -> tuple[list, list[str]]:
    """(dataset, example) for every rule example of every configured dataset's contract; a contract whose
    examples can't be read becomes one failing case."""
    cases, ids = [], []
    for dataset in DATASETS:
        try:
            found = [(dataset, example) for example in suites.read_examples(dataset.suite_name)]
        except suites.ContractError as exc:
            cases.append(exc)
            ids.append(f"{dataset.id}-unreadable")
            continue
        cases += found
        ids += [f"{example.code}-{example.expect}" for _, example in found]
    return cases, ids


EXAMPLES, EXAMPLE_IDS = _examples()


def stage_staged_rows(url: str, dataset: Dataset, rows: tuple[dict, ...]) -> str:
    """COPY rows that are already as intake stages them (minimised) into a new staging table."""
    table = f"staging.{dataset.id}_e{next(_file_ids)}"
    columns = dataset.loaded_columns
    ddl = ", ".join(["row_number integer NOT NULL"] + [f"{c.name} {reader.SQL_TYPES[c.type]}" for c in columns])
    names = ", ".join(["row_number"] + [c.name for c in columns])
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        conn.execute(f"CREATE TABLE {table} ({ddl})")
        with conn.cursor().copy(f"COPY {table} ({names}) FROM STDIN") as copy:
            for number, row in enumerate(rows, start=1):
                copy.write_row([number] + [row.get(c.name) for c in columns])
    return table


def stage(url: str, dataset: Dataset, rows: list[dict], *, types: dict[str, str] | None = None) -> str:
    """Minimise ``rows`` as intake does and COPY them into a new ``staging.<dataset>_f<n>`` table."""
    table = f"staging.{dataset.id}_f{next(_file_ids)}"
    columns = dataset.loaded_columns
    types = {c.name: reader.SQL_TYPES[c.type] for c in columns} | (types or {})
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


def failures_by_code(report: suites.ContractReport) -> dict[str, tuple[str, int, tuple[int, ...]]]:
    return {f.code: (f.severity, f.failing_rows, f.row_numbers) for f in report.failures}


def validate(url: str, dataset: Dataset, table: str, period: Period = PERIOD) -> suites.ContractReport:
    return suites.validate_staged(warehouse_url=url, table=table, dataset=dataset, period=period)


@pytest.mark.parametrize("dataset", DATASETS, ids=lambda d: d.id)
def test_gx_understands_every_rule_of_every_contract(dataset):
    suite = suites.load_suite(dataset.suite_name)
    rules = suites.read_rules(dataset.suite_name)
    assert [e.meta["code"] for e in suite.expectations] == [r.code for r in rules]


@pytest.mark.parametrize("example", EXAMPLES, ids=EXAMPLE_IDS)
def test_every_rule_passes_and_fails_its_own_examples(staging_db, example):
    """Each rule's pass and fail case from its contract file (``meta.examples``), staged and checked."""
    if isinstance(example, suites.ContractError):
        raise example
    dataset, case = example
    table = stage_staged_rows(staging_db, dataset, case.rows)
    report = suites.validate_staged(
        warehouse_url=staging_db,
        table=table,
        dataset=dataset,
        period=case.period,
        volume_baseline=case.volume_baseline,
    )
    failed = {f.code: f for f in report.failures}
    if case.expect == "pass":
        assert case.code not in failed, f"{case.code} failed its pass example"
        return
    assert case.code in failed, f"{case.code} passed its fail example"
    if case.row_numbers is not None:
        assert failed[case.code].row_numbers == case.row_numbers
        assert failed[case.code].failing_rows == len(case.row_numbers)


def test_volume_is_checked_against_the_baseline_given(staging_db, referrals):
    table = stage(staging_db, referrals, synthetic.referrals_rows(PERIOD, seed=20, n=100))
    unchecked = validate(staging_db, referrals, table)
    assert unchecked.rules_checked == len(suites.read_rules("referrals")) - 1
    assert unchecked.failures == ()
    for baseline in (50, 200):
        report = suites.validate_staged(
            warehouse_url=staging_db, table=table, dataset=referrals, period=PERIOD, volume_baseline=baseline
        )
        assert (report.passed, failures_by_code(report)) == (True, {})
    report = suites.validate_staged(
        warehouse_url=staging_db, table=table, dataset=referrals, period=PERIOD, volume_baseline=250
    )
    assert report.passed  # a warning: published and reported
    assert failures_by_code(report) == {"REF-013": ("warning", 0, ())}
    assert report.failures[0].columns == ()


def test_good_referrals_pass(staging_db, referrals):
    table = stage(staging_db, referrals, synthetic.referrals_rows(PERIOD, seed=11))
    report = validate(staging_db, referrals, table)
    assert report == suites.ContractReport(passed=True, rules_checked=12, rows_checked=400, failures=())


def test_defective_referrals_fail_with_codes_counts_and_rows(staging_db, referrals):
    rows = synthetic.referrals_rows(PERIOD, seed=11, defects=True)
    report = validate(staging_db, referrals, stage(staging_db, referrals, rows))
    defects = synthetic.REFERRAL_DEFECTS
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


def test_the_period_bounds_come_from_the_period_validated(staging_db, referrals):
    table = stage(staging_db, referrals, synthetic.referrals_rows(PERIOD, seed=12, n=50))
    report = validate(staging_db, referrals, table, period=PERIOD.next())
    assert failures_by_code(report)["REF-008"][1] == 50


def test_warnings_alone_still_pass(staging_db, referrals):
    rows = synthetic.referrals_rows(PERIOD, seed=13, n=60)
    row = next(r for r in rows if r["assessment_start_date"])
    referral_date = dt.date.fromisoformat(row["referral_date"])
    row["assessment_start_date"] = (referral_date - dt.timedelta(days=1)).isoformat()
    row["assessment_authorised_date"] = ""
    report = validate(staging_db, referrals, stage(staging_db, referrals, rows))
    assert report.passed
    assert failures_by_code(report) == {"REF-011": ("warning", 1, (rows.index(row) + 1,))}


def test_missing_and_repeated_values(staging_db, referrals):
    rows = synthetic.referrals_rows(PERIOD, seed=14, n=60)
    rows[9]["referral_id"] = rows[4]["referral_id"]
    rows[19]["child_id"] = ""
    rows[29]["nfa"] = "y"
    rows[39]["referral_source"] = ""
    report = validate(staging_db, referrals, stage(staging_db, referrals, rows))
    assert failures_by_code(report) == {
        "REF-002": ("error", 1, (20,)),
        "REF-004": ("error", 1, (40,)),
        "REF-007": ("error", 1, (30,)),
        "REF-009": ("error", 2, (5, 10)),
    }


def test_police_returns(staging_db, police_ppn):
    good = synthetic.police_ppn_records(PERIOD, seed=15)
    report = validate(staging_db, police_ppn, stage(staging_db, police_ppn, good))
    assert report == suites.ContractReport(passed=True, rules_checked=8, rows_checked=4, failures=())

    bad = synthetic.police_ppn_records(PERIOD, seed=15, defects=True)
    report = validate(staging_db, police_ppn, stage(staging_db, police_ppn, bad))
    assert failures_by_code(report) == {
        "PPN-005": ("error", 1, synthetic.POLICE_PPN_DEFECTS["unknown_grade"]),
        "PPN-006": ("error", 1, synthetic.POLICE_PPN_DEFECTS["negative_value"]),
    }

    repeated = good + [dict(good[0]), {"measure_code": "PPN_ADULT", "grade": "H", "value": 3}]
    report = validate(staging_db, police_ppn, stage(staging_db, police_ppn, repeated))
    assert failures_by_code(report) == {
        "PPN-004": ("error", 1, (6,)),
        "PPN-005": ("error", 1, (6,)),
        "PPN-007": ("error", 2, (1, 5)),
        "PPN-008": ("error", 0, ()),
    }


def test_no_values_in_the_report_or_the_logs(staging_db, referrals, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    rows = synthetic.referrals_rows(PERIOD, seed=16, defects=True)
    for number in synthetic.REFERRAL_DEFECTS["unknown_referral_source"]:
        rows[number - 1]["referral_source"] = CANARY
    rows[5]["referral_id"] = rows[6]["referral_id"]  # a repeated id: its pseudonym must not leak either
    table = stage(staging_db, referrals, rows)
    report = validate(staging_db, referrals, table)
    failing = {n for f in report.failures for n in f.row_numbers}
    assert failing >= {3, 6, 7, 8, 12, 17, 23, 29, 41}
    secrets = {CANARY}
    for number in failing:
        row = rows[number - 1]
        secrets |= {minimise("pseudonymise", row["referral_id"]), minimise("pseudonymise", row["child_id"])}
        secrets |= {row[c] for c in ("referral_date", "assessment_start_date", "assessment_authorised_date")}
    secrets.discard("")
    stored = report.to_json()
    assert suites.ContractReport.from_json(stored) == report
    out, err = capsys.readouterr()
    for place, text in (("report", stored), ("logs", caplog.text), ("stdout", out), ("stderr", err)):
        leaked = sorted(s for s in secrets if s in text)
        assert not leaked, f"{place} holds values from failing rows: {leaked}"
    assert "Calculating Metrics" not in err


def test_a_misspelled_expectation_type_is_refused(tmp_path):
    suite = json.loads(suites.contract_path("referrals").read_text())
    suite["expectations"][5]["type"] = "expect_column_values_to_be_in_sett"
    (tmp_path / "referrals.json").write_text(json.dumps(suite))
    with pytest.raises(suites.ContractError, match=r"rule REF-006: GX does not understand"):
        suites.load_suite("referrals", directory=tmp_path)


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
    suite = json.loads(suites.contract_path("referrals").read_text())
    change(suite["expectations"][5])
    (tmp_path / "referrals.json").write_text(json.dumps(suite))
    with pytest.raises(suites.ContractError, match=complaint):
        suites.load_suite("referrals", directory=tmp_path)


def test_repeated_codes_and_unknown_parameters_are_refused(tmp_path):
    suite = json.loads(suites.contract_path("referrals").read_text())
    suite["expectations"][1]["meta"]["code"] = "REF-001"
    (tmp_path / "referrals.json").write_text(json.dumps(suite))
    with pytest.raises(suites.ContractError, match="repeated: REF-001"):
        suites.read_rules("referrals", directory=tmp_path)

    suite = json.loads(suites.contract_path("referrals").read_text())
    suite["expectations"][7]["kwargs"]["min_value"] = {"$PARAMETER": "period_begin"}
    (tmp_path / "referrals.json").write_text(json.dumps(suite))
    with pytest.raises(suites.ContractError, match="unknown \\$PARAMETER"):
        suites.read_rules("referrals", directory=tmp_path)


def test_a_type_mismatch_is_an_engineers_problem(staging_db, police_ppn, caplog):
    caplog.set_level(logging.DEBUG)
    records = synthetic.police_ppn_records(PERIOD, seed=17)
    records[0]["value"] = CANARY
    table = stage(staging_db, police_ppn, records, types={"value": "text"})
    with pytest.raises(suites.ContractConfigurationError, match="rule PPN-006") as raised:
        validate(staging_db, police_ppn, table)
    assert CANARY not in str(raised.value) and CANARY not in caplog.text


def test_a_missing_table_is_an_engineers_problem(staging_db, police_ppn):
    with pytest.raises(suites.ContractConfigurationError, match="staging.police_ppn_f0"):
        validate(staging_db, police_ppn, "staging.police_ppn_f0")


def test_no_connections_are_left_open(staging_db, police_ppn):
    good = stage(staging_db, police_ppn, synthetic.police_ppn_records(PERIOD, seed=19))
    validate(staging_db, police_ppn, good)
    with pytest.raises(suites.ContractConfigurationError):
        validate(staging_db, police_ppn, "staging.police_ppn_f0")
    with psycopg.connect(staging_db.replace("+psycopg", "")) as conn:
        others = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()[0]
    assert others == 0


def test_validation_time_and_row_number_cap(staging_db, referrals):
    """Prints timings (run with -s); asserts only behaviour."""
    small = stage(staging_db, referrals, synthetic.referrals_rows(PERIOD, seed=18))
    rows = synthetic.referrals_rows(PERIOD, seed=18, n=100_000)
    for row in rows[1000:2500]:
        row["referral_source"] = "11"
    large = stage(staging_db, referrals, rows)
    validate(staging_db, referrals, small)  # pays GX's import and first-use costs

    started = time.perf_counter()
    validate(staging_db, referrals, small)
    small_seconds = time.perf_counter() - started
    started = time.perf_counter()
    report = validate(staging_db, referrals, large)
    large_seconds = time.perf_counter() - started
    print(f"\ncontract validation: 400 rows {small_seconds:.2f} s; 100,000 rows {large_seconds:.2f} s")

    assert report.rows_checked == 100_000
    (failure,) = report.failures
    assert (failure.code, failure.failing_rows) == ("REF-006", 1500)
    assert len(failure.row_numbers) == suites.ROW_NUMBERS_CAP
    assert set(failure.row_numbers) <= set(range(1001, 2501))


@pytest.fixture
def partner_api(devstack):
    """The shared dev stack (tests/conftest.py)."""
    return devstack


def _with_column_type(config: Partnership, dataset_id: str, column: str, new_type: str) -> Partnership:
    raw = config.model_dump()
    dataset = next(d for d in raw["datasets"] if d["id"] == dataset_id)
    next(c for c in dataset["columns"] if c["name"] == column)["type"] = new_type
    return Partnership.model_validate(raw)


def _one(sql: str):
    with warehouse.engine().connect() as conn:
        return conn.execute(sa.text(sql)).one()


def test_a_configuration_error_goes_to_engineers_and_leaves_the_file_received(partner_api, demo_config):
    """An engineer made police ``value`` text in the configuration but not in the contract: GX cannot compare
    text with 0. The task fails (Airflow retries, then alerts engineers); the partner hears nothing."""
    broken = _with_column_type(demo_config, "police_ppn", "value", "text")
    partner_api.partner_api.submit("ppn", PERIOD.id, synthetic.police_ppn_records(PERIOD, seed=21))
    file_ids = ingest.fetch("police_ppn", period_id=PERIOD.id, config=broken)
    with pytest.raises(suites.ContractConfigurationError, match="rule PPN-006"):
        ingest.decide("police_ppn", file_ids, config=broken)

    assert _one("SELECT state FROM ops.received_files") == ("received",)
    assert _one("SELECT state FROM ops.submissions") == ("received",)
    assert _one("SELECT count(*) FROM ops.validation_reports") == (0,)
    assert _one("SELECT count(*) FROM ops.notifications") == (0,)  # no rejection, no receipt
    assert _one("SELECT count(*) FROM core.police_ppn") == (0,)

    # After the fix, the next run decides the file it left.
    with warehouse.engine().connect() as conn:
        pending = ledger.pending(conn, "police_ppn")
    outcomes = ingest.decide("police_ppn", pending, config=demo_config)
    assert [o["state"] for o in outcomes] == ["published"]


def test_the_volume_baseline_is_the_last_published_return(partner_api, demo_config, police_ppn):
    with warehouse.engine().connect() as conn:
        assert ingest.volume_baseline(conn, "police_ppn", police_ppn) is None
    for period, seed in ((PERIOD, 22), (PERIOD.next(), 23)):
        partner_api.partner_api.submit("ppn", period.id, synthetic.police_ppn_records(period, seed=seed))
        ingest.decide("police_ppn", ingest.fetch("police_ppn", period_id=period.id, config=demo_config))
    latest = sum(int(r["value"]) for r in synthetic.police_ppn_records(PERIOD.next(), seed=23))
    with warehouse.engine().connect() as conn:
        assert ingest.volume_baseline(conn, "police_ppn", police_ppn) == latest
