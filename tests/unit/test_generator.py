"""The synthetic data generator: deterministic, shaped like the datasets, defects where it says."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json

import openpyxl
import pytest

from partnerflow.core.config import load_config
from partnerflow.core.paths import repo_path
from partnerflow.core.periods import Period, add_working_days, working_days_between
from partnerflow_dev import synthetic

PERIOD = Period(2026, 3)


def dataset_columns(dataset_id: str) -> list[str]:
    return [c.name for c in load_config().dataset(dataset_id).columns]


def contract_value_set(dataset_id: str, code: str) -> list:
    suite = json.loads(repo_path("expectations", f"{dataset_id}.json").read_text(encoding="utf-8"))
    rule = next(e for e in suite["expectations"] if e["meta"]["code"] == code)
    return rule["kwargs"].get("value_set") or rule["kwargs"]["value_pairs_set"]


def day(value: str) -> dt.date | None:
    return dt.date.fromisoformat(value) if value else None


def test_same_seed_same_rows_and_bytes():
    assert synthetic.referrals_rows(PERIOD, seed=7) == synthetic.referrals_rows(PERIOD, seed=7)
    assert synthetic.referrals_csv(PERIOD, seed=7, defects=True) == synthetic.referrals_csv(
        PERIOD, seed=7, defects=True
    )
    assert synthetic.police_ppn_records(PERIOD, seed=7) == synthetic.police_ppn_records(PERIOD, seed=7)


def test_different_seed_or_period_different_rows():
    rows = synthetic.referrals_rows(PERIOD, seed=7)
    assert rows != synthetic.referrals_rows(PERIOD, seed=8)
    assert rows != synthetic.referrals_rows(PERIOD.next(), seed=7)


def test_referral_rows_have_the_dataset_columns_in_order():
    rows = synthetic.referrals_rows(PERIOD, seed=1, n=25)
    assert len(rows) == 25
    assert list(synthetic.REFERRAL_COLUMNS) == dataset_columns("referrals")
    columns = dataset_columns("referrals")
    assert all(list(row) == columns for row in rows)
    assert all(isinstance(value, str) for row in rows for value in row.values())


def test_referral_values_are_plausible_and_valid():
    rows = synthetic.referrals_rows(PERIOD, seed=3, n=2000)
    sources = set(contract_value_set("referrals", "REF-006"))
    assert {row["referral_source"] for row in rows} <= sources
    assert {row["nfa"] for row in rows} == {"Y", "N"}
    assert len({row["referral_id"] for row in rows}) == len(rows)
    for row in rows:
        referral = day(row["referral_date"])
        start, authorised = day(row["assessment_start_date"]), day(row["assessment_authorised_date"])
        assert PERIOD.contains(referral)
        assert day(row["date_of_birth"]) <= referral
        assert len(row["child_id"]) == 7 and row["child_id"].isdigit()
        assert row["postcode"][:2] == "BK" and len(row["postcode"].split()) == 2
        assert len(row["referral_id"]) <= 20
        if row["nfa"] == "Y":
            assert start is None and authorised is None
        if authorised:
            assert start and start <= authorised
        if start:
            assert referral <= start
    assert any(row["child_id"].startswith("0") for row in rows)
    assert [row["referral_date"] for row in rows] == sorted(row["referral_date"] for row in rows)


def test_assessment_timeliness_and_missing_dates_are_realistic():
    rows = synthetic.referrals_rows(PERIOD, seed=3, n=2000)
    started = [row for row in rows if row["assessment_start_date"]]
    done = [row for row in started if row["assessment_authorised_date"]]
    late = [
        row
        for row in done
        if working_days_between(day(row["assessment_start_date"]), day(row["assessment_authorised_date"])) > 45
    ]
    assert 0.05 < len(late) / len(done) < 0.25
    assert 0.02 < 1 - len(done) / len(started) < 0.4  # some not yet authorised at extract time
    assert 0.05 < sum(row["nfa"] == "Y" for row in rows) / len(rows) < 0.2


def test_children_keep_their_ids_across_periods():
    earlier = [synthetic.referrals_rows(p, seed=5) for p in (PERIOD.previous(), PERIOD.previous().previous())]
    known = {row["child_id"]: row for rows in earlier for row in rows}
    now = synthetic.referrals_rows(PERIOD, seed=5)
    again = [row for row in now if row["child_id"] in known]
    assert 0.08 < len(again) / len(now) < 0.3
    for row in again:
        first = known[row["child_id"]]
        assert (row["child_name"], row["date_of_birth"], row["postcode"]) == (
            first["child_name"],
            first["date_of_birth"],
            first["postcode"],
        )


def test_csv_round_trips_with_header():
    data = synthetic.referrals_csv(PERIOD, seed=2, n=60)
    assert data.startswith(b"referral_id,child_id,child_name,")
    parsed = list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
    assert parsed == synthetic.referrals_rows(PERIOD, seed=2, n=60)


def test_referral_defects_are_where_the_generator_says():
    good = synthetic.referrals_rows(PERIOD, seed=4, n=100)
    bad = synthetic.referrals_rows(PERIOD, seed=4, n=100, defects=True)
    sources = set(contract_value_set("referrals", "REF-006"))
    defects = synthetic.REFERRAL_DEFECTS
    planted = {r for rows in defects.values() for r in rows}
    changed = {number for number, (a, b) in enumerate(zip(good, bad, strict=True), start=1) if a != b}
    assert changed == planted

    def rows_where(test):
        return tuple(number for number, row in enumerate(bad, start=1) if test(row))

    def authorised_before_start(r):
        return r["assessment_authorised_date"] and r["assessment_authorised_date"] < r["assessment_start_date"]

    def started_before_referral(r):
        return r["assessment_start_date"] and r["assessment_start_date"] < r["referral_date"]

    def outside_period(r):
        return not PERIOD.contains(day(r["referral_date"]))

    assert rows_where(lambda r: r["referral_source"] not in sources) == defects["unknown_referral_source"]
    assert rows_where(authorised_before_start) == defects["authorised_before_start"]
    assert rows_where(outside_period) == defects["referral_date_outside_period"]
    assert rows_where(started_before_referral) == defects["assessment_before_referral"]


def test_defects_need_enough_rows():
    with pytest.raises(ValueError, match="n >= 41"):
        synthetic.referrals_rows(PERIOD, seed=1, n=20, defects=True)


def test_police_records_shape_and_defects():
    records = synthetic.police_ppn_records(PERIOD, seed=9)
    assert all(list(record) == dataset_columns("police_ppn") for record in records)
    pairs = [[r["measure_code"], r["grade"]] for r in records]
    assert sorted(pairs) == sorted(contract_value_set("police_ppn", "PPN-005"))
    assert all(isinstance(r["value"], int) and r["value"] >= 0 for r in records)

    bad = synthetic.police_ppn_records(PERIOD, seed=9, defects=True)
    negative = tuple(i for i, r in enumerate(bad, start=1) if r["value"] < 0)
    unknown = tuple(i for i, r in enumerate(bad, start=1) if r["grade"] not in {"H", "M", "L", "A"})
    assert negative == synthetic.POLICE_PPN_DEFECTS["negative_value"]
    assert unknown == synthetic.POLICE_PPN_DEFECTS["unknown_grade"]


def test_fast_working_days_match_the_calendar():
    start = dt.date(2026, 12, 20)
    for n in (0, 1, 5, 45, 90):
        assert synthetic._add_working_days(start, n) == add_working_days(start, n)


# --- the other feeds of the demo partnership ---------------------------------------------------------

ALL_DATASETS = (
    "referrals",
    "police_ppn",
    "child_protection",
    "children_in_care",
    "health_icb",
    "exclusions",
    "yjb_kpis",
)


@pytest.mark.parametrize("dataset_id", ALL_DATASETS)
def test_sample_return_is_deterministic_for_every_dataset(dataset_id):
    good = synthetic.sample_return(dataset_id, PERIOD, seed=7)
    assert good == synthetic.sample_return(dataset_id, PERIOD, seed=7)
    assert good != synthetic.sample_return(dataset_id, PERIOD, seed=8)
    assert good != synthetic.sample_return(dataset_id, PERIOD, seed=7, defects=True)
    assert synthetic.sample_return(dataset_id, PERIOD, seed=7, defects=True) == synthetic.sample_return(
        dataset_id, PERIOD, seed=7, defects=True
    )


def test_sample_return_names_unknown_datasets():
    with pytest.raises(KeyError, match="no sample return for dataset 'probation'"):
        synthetic.sample_return("probation", PERIOD, seed=1)


@pytest.mark.parametrize(
    ("rows_of", "dataset_id"),
    [
        (lambda **kw: synthetic.child_protection_rows(PERIOD, **kw), "child_protection"),
        (lambda **kw: synthetic.children_in_care_rows(PERIOD, **kw), "children_in_care"),
        (lambda **kw: synthetic.health_icb_rows(PERIOD, **kw), "health_icb"),
        (lambda **kw: synthetic.exclusions_rows(PERIOD, **kw), "exclusions"),
        (lambda **kw: synthetic.yjb_kpi_records(PERIOD, **kw), "yjb_kpis"),
    ],
)
def test_rows_have_the_dataset_columns_and_defects_are_where_the_generator_says(rows_of, dataset_id):
    good, bad = rows_of(seed=4), rows_of(seed=4, defects=True)
    columns = dataset_columns(dataset_id)
    assert all(list(row) == columns for row in good)
    planted = getattr(synthetic, DEFECTS_OF[dataset_id])
    changed = {number for number, (a, b) in enumerate(zip(good, bad, strict=True), start=1) if a != b}
    assert changed == {r for rows in planted.values() for r in rows}


DEFECTS_OF = {
    "child_protection": "CHILD_PROTECTION_DEFECTS",
    "children_in_care": "CHILDREN_IN_CARE_DEFECTS",
    "health_icb": "HEALTH_ICB_DEFECTS",
    "exclusions": "EXCLUSION_DEFECTS",
    "yjb_kpis": "YJB_KPI_DEFECTS",
}


def test_child_protection_plans_are_plausible():
    rows = synthetic.child_protection_rows(PERIOD, seed=3, n=250)
    categories = set(contract_value_set("child_protection", "CPP-006"))
    assert len({row["plan_id"] for row in rows}) == len(rows) == 250
    assert {row["category_of_abuse"] for row in rows} == categories
    referred_before = {
        row["child_id"] for p in _periods_before(PERIOD, 12) for row in synthetic.referrals_rows(p, seed=3)
    }
    assert {row["child_id"] for row in rows} <= referred_before  # the same children as the referrals
    for row in rows:
        start, end = day(row["plan_start_date"]), day(row["plan_end_date"])
        assert day(row["date_of_birth"]) < start <= PERIOD.end
        assert day(row["s47_start_date"]) <= day(row["icpc_date"]) == start
        assert end is None or (start < end and PERIOD.contains(end))
        assert 0 <= int(row["previous_plans"]) <= 3
    open_at_start = [r for r in rows if day(r["plan_start_date"]) < PERIOD.start]
    assert 0.45 < len(open_at_start) / len(rows) < 0.75
    assert any(working_days_between(day(r["s47_start_date"]), day(r["icpc_date"])) > 15 for r in rows)
    assert any((PERIOD.end - day(r["plan_start_date"])).days >= 730 for r in rows)  # plans lasting 2+ years


def test_children_in_care_rows_are_plausible():
    rows = synthetic.children_in_care_rows(PERIOD, seed=3, n=300)
    assert len({row["child_id"] for row in rows}) == len(rows) == 300
    for row in rows:
        assert isinstance(row["missing_episodes"], int) and isinstance(row["care_start_date"], dt.date)
        assert row["date_of_birth"] < row["care_start_date"] <= PERIOD.end
        assert row["care_end_date"] is None or PERIOD.contains(row["care_end_date"])
        for check in ("health_assessment_date", "dental_check_date"):
            assert row[check] is None or row["care_start_date"] <= row[check] <= PERIOD.end
        offered, accepted = row["return_interview_offered_date"], row["return_interview_accepted_date"]
        assert offered is None or (row["missing_episodes"] > 0 and PERIOD.contains(offered))
        assert accepted is None or (offered is not None and offered <= accepted)
    went_missing = sum(row["missing_episodes"] > 0 for row in rows)
    assert 0.05 < went_missing / len(rows) < 0.2


def test_the_children_in_care_workbook_has_its_named_sheet_and_real_dates():
    data = synthetic.children_in_care_xlsx(PERIOD, seed=3, n=20)
    book = openpyxl.load_workbook(io.BytesIO(data), read_only=True)
    assert book.sheetnames == ["Read me", synthetic.CHILDREN_IN_CARE_SHEET]
    header, first, *_ = book[synthetic.CHILDREN_IN_CARE_SHEET].iter_rows(values_only=True)
    assert header == synthetic.CHILDREN_IN_CARE_HEADINGS
    assert isinstance(first[0], str) and len(first[0]) == 7  # ids as text, leading zeros kept
    assert isinstance(first[3], dt.datetime)


def test_health_and_youth_justice_aggregates():
    rows = synthetic.health_icb_rows(PERIOD, seed=3)
    pairs = {(row["measure_code"], row["age_band"]) for row in rows}
    measures = contract_value_set("health_icb", "HLT-005")
    bands = contract_value_set("health_icb", "HLT-006")
    assert pairs == {(m, b) for m in measures for b in bands}
    assert all(0 <= int(row["numerator"]) <= int(row["denominator"]) for row in rows)
    records = synthetic.yjb_kpi_records(PERIOD, seed=3)
    assert [r["kpi_code"] for r in records] == contract_value_set("yjb_kpis", "YJB-004")
    assert all(0 <= r["numerator"] <= r["denominator"] for r in records)


def test_exclusions_are_school_census_shaped_and_windows_1252():
    rows = synthetic.exclusions_rows(PERIOD, seed=3, n=350)
    categories, reasons = contract_value_set("exclusions", "EDU-007"), contract_value_set("exclusions", "EDU-008")
    keys = [(row["upn"], row["category"], row["start_date"]) for row in rows]
    assert len(set(keys)) == len(keys)
    assert len({row["upn"] for row in rows}) < len(rows)  # some pupils are suspended more than once
    for row in rows:
        assert row["category"] in categories and row["reason_code"] in reasons
        assert PERIOD.contains(day(row["start_date"])) and not (
            dt.date(2026, 8, 1) <= day(row["start_date"]) <= dt.date(2026, 8, 31)
        )
        assert synthetic.upn(row["upn"][1:]) == row["upn"] and len(row["school_urn"]) == 6
        assert row["sessions"] == "" if row["category"] == "PERM" else int(row["sessions"]) >= 1
    data = synthetic.exclusions_csv(PERIOD, seed=3)
    assert b"\r\n" in data and data.decode("cp1252").startswith("upn,pupil_name,")
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")  # accented names in Windows-1252, as the school systems export them


def test_upn_check_letter():
    assert synthetic.upn("999123400001")[1:] == "999123400001"
    assert synthetic.upn("999123400001")[0] in synthetic.UPN_CHECK_LETTERS
    assert synthetic.upn("999123400001") != synthetic.upn("999123400002")
    with pytest.raises(ValueError):
        synthetic.upn("12345")


def _periods_before(period: Period, n: int) -> list[Period]:
    periods = []
    for _ in range(n):
        period = period.previous()
        periods.append(period)
    return periods
