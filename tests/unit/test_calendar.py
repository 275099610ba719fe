"""Periods, working days (England and Wales bank holidays) and due dates."""

import datetime as dt

import pytest

from partnerflow.calendar import Period, add_working_days, collecting_period, due_date, working_days_between
from partnerflow.config import load_config


def test_period_ids_and_labels():
    period = Period.from_id("2026Q3")
    assert (period.start, period.end) == (dt.date(2026, 7, 1), dt.date(2026, 9, 30))
    assert period.label == "Q2 2026/27 (Jul–Sep 2026)"
    assert Period.from_id("2026Q1").label == "Q4 2025/26 (Jan–Mar 2026)"
    assert Period.from_id("2026Q4").next().id == "2027Q1"
    assert Period.from_id("2027Q1").previous().id == "2026Q4"
    with pytest.raises(ValueError):
        Period.from_id("2026-Q3")


def test_working_days_skip_weekends_and_bank_holidays():
    # Christmas Eve 2026 is a Thursday; 25th, 28th (Boxing Day substitute) are bank holidays.
    assert add_working_days(dt.date(2026, 12, 24), 1) == dt.date(2026, 12, 29)
    assert add_working_days(dt.date(2026, 12, 29), -1) == dt.date(2026, 12, 24)
    assert working_days_between(dt.date(2026, 12, 24), dt.date(2026, 12, 29)) == 1


def test_due_date_is_fifteen_working_days_after_quarter_end():
    config = load_config()
    feed = config.feed("council_referrals")
    assert due_date(config, feed, Period.from_id("2026Q3")) == dt.date(2026, 10, 21)
    # Q4 2026 ends on New Year's Eve; New Year's Day 2027 is a bank holiday.
    assert due_date(config, feed, Period.from_id("2026Q4")) == dt.date(2027, 1, 22)


def test_collecting_period_is_the_latest_ended_quarter():
    assert collecting_period(dt.date(2026, 10, 21)).id == "2026Q3"
    assert collecting_period(dt.date(2027, 1, 2)).id == "2026Q4"
