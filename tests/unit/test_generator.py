"""The synthetic data generator: deterministic, shaped like the datasets, defects where it says."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json

import pytest

from partnerflow import generator
from partnerflow.calendar import Period, add_working_days, working_days_between
from partnerflow.config import load_config
from partnerflow.paths import repo_path

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
    assert generator.referrals_rows(PERIOD, seed=7) == generator.referrals_rows(PERIOD, seed=7)
    assert generator.referrals_csv(PERIOD, seed=7, defects=True) == generator.referrals_csv(
        PERIOD, seed=7, defects=True
    )
    assert generator.police_ppn_records(PERIOD, seed=7) == generator.police_ppn_records(PERIOD, seed=7)


def test_different_seed_or_period_different_rows():
    rows = generator.referrals_rows(PERIOD, seed=7)
    assert rows != generator.referrals_rows(PERIOD, seed=8)
    assert rows != generator.referrals_rows(PERIOD.next(), seed=7)


def test_referral_rows_have_the_dataset_columns_in_order():
    rows = generator.referrals_rows(PERIOD, seed=1, n=25)
    assert len(rows) == 25
    assert list(generator.REFERRAL_COLUMNS) == dataset_columns("referrals")
    assert all(list(row) == dataset_columns("referrals") for row in rows)
    assert all(isinstance(value, str) for row in rows for value in row.values())


def test_referral_values_are_plausible_and_valid():
    rows = generator.referrals_rows(PERIOD, seed=3, n=2000)
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
    rows = generator.referrals_rows(PERIOD, seed=3, n=2000)
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
    earlier = [generator.referrals_rows(p, seed=5) for p in (PERIOD.previous(), PERIOD.previous().previous())]
    known = {row["child_id"]: row for rows in earlier for row in rows}
    now = generator.referrals_rows(PERIOD, seed=5)
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
    data = generator.referrals_csv(PERIOD, seed=2, n=60)
    assert data.startswith(b"referral_id,child_id,child_name,")
    parsed = list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
    assert parsed == generator.referrals_rows(PERIOD, seed=2, n=60)


def test_referral_defects_are_where_the_generator_says():
    good = generator.referrals_rows(PERIOD, seed=4, n=100)
    bad = generator.referrals_rows(PERIOD, seed=4, n=100, defects=True)
    sources = set(contract_value_set("referrals", "REF-006"))
    defects = generator.REFERRAL_DEFECTS
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
        generator.referrals_rows(PERIOD, seed=1, n=20, defects=True)


def test_police_records_shape_and_defects():
    records = generator.police_ppn_records(PERIOD, seed=9)
    assert all(list(record) == dataset_columns("police_ppn") for record in records)
    pairs = [[r["measure_code"], r["grade"]] for r in records]
    assert sorted(pairs) == sorted(contract_value_set("police_ppn", "PPN-005"))
    assert all(isinstance(r["value"], int) and r["value"] >= 0 for r in records)

    bad = generator.police_ppn_records(PERIOD, seed=9, defects=True)
    negative = tuple(i for i, r in enumerate(bad, start=1) if r["value"] < 0)
    unknown = tuple(i for i, r in enumerate(bad, start=1) if r["grade"] not in {"H", "M", "L", "A"})
    assert negative == generator.POLICE_PPN_DEFECTS["negative_value"]
    assert unknown == generator.POLICE_PPN_DEFECTS["unknown_grade"]


def test_fast_working_days_match_the_calendar():
    start = dt.date(2026, 12, 20)
    for n in (0, 1, 5, 45, 90):
        assert generator._add_working_days(start, n) == add_working_days(start, n)
