"""Periods, working days (England and Wales bank holidays) and due dates."""

import datetime as dt
import re
from pathlib import Path

import pytest
import yaml

from partnerflow.cli import main
from partnerflow.core.config import ConfigError, FeedCalendar, LadderOverride, config_path, load_config, partnership
from partnerflow.core.periods import (
    MONTH,
    PERIOD_ID_PATTERN,
    TERM,
    Period,
    TermDates,
    add_working_days,
    board_meetings,
    collecting_period,
    due_date,
    period_of_name,
    schedule,
    working_days_between,
)


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


def test_monthly_and_term_ids_sort_and_parse_one_way():
    ids = ["2026M09", "2026M10", "2026M11", "2026M12", "2027M01"]
    assert [Period.from_id(i).id for i in ids] == ids
    assert sorted(ids) == ids and sorted(Period.from_id(i) for i in reversed(ids)) == [Period.from_id(i) for i in ids]
    october = Period.from_id("2026M10")
    assert (october.start, october.end, october.label) == (dt.date(2026, 10, 1), dt.date(2026, 10, 31), "October 2026")
    assert Period.from_id("2026M12").next().id == "2027M01"
    assert Period.from_id("2026M01").previous().id == "2025M12"

    autumn = Period.from_id("2026T3")
    assert (autumn.start, autumn.end) == (dt.date(2026, 9, 1), dt.date(2026, 12, 31))
    assert autumn.label == "Autumn term 2026 (Sep–Dec 2026)" and autumn.short_label == "Autumn term 2026"
    assert [p.id for p in (autumn.previous(), autumn.next())] == ["2026T2", "2027T1"]
    assert Period.from_id("2027T1").label == "Spring term 2027 (Jan–Mar 2027)"

    for wrong in ("2026M9", "2026M13", "2026M00", "2026T4", "2026T0", "2026Q5", "2026q3", "26Q3", "2026Q03"):
        with pytest.raises(ValueError):
            Period.from_id(wrong)


def test_the_period_api_stays_as_it_was_for_quarters():
    assert Period(2026, 3) == Period.from_id("2026Q3")
    assert Period(2026, 3).quarter == 3 and str(Period(2026, 3)) == "2026Q3"
    assert Period.containing(dt.date(2026, 8, 15)).id == "2026Q3"
    assert Period.from_id("2026Q3").contains(dt.date(2026, 9, 30))
    assert Period.from_id("2026Q3").short_label == "Q2 2026/27"


def test_terms_follow_the_configured_start_days():
    terms = TermDates(spring=(1, 6), summer=(4, 20), autumn=(9, 2))
    # New Year's Day belongs to the autumn term that started the September before.
    autumn = Period.containing(dt.date(2027, 1, 3), TERM, terms=terms)
    assert autumn.id == "2026T3" and autumn.end == dt.date(2027, 1, 5)
    assert autumn.label == "Autumn term 2026 (Sep 2026–Jan 2027)"
    assert Period.containing(dt.date(2026, 4, 19), TERM, terms=terms).id == "2026T1"
    assert Period.containing(dt.date(2026, 4, 20), TERM, terms=terms).id == "2026T2"


def test_a_feed_can_report_monthly_with_a_fixed_due_day(demo_config):
    feed = demo_config.feed("police_ppn")
    monthly = feed.model_copy(update={"calendar": FeedCalendar(period="month", due_day_of_month=10)})
    config = demo_config.model_copy(update={"feeds": (monthly,)})
    sched = schedule(config, monthly)
    assert sched.kind == MONTH
    # 10 Oct 2026 is a Saturday: the return is due the next working day.
    assert sched.due_date(Period.from_id("2026M09")) == dt.date(2026, 10, 12)
    assert sched.due_date(Period.from_id("2026M11")) == dt.date(2026, 12, 10)
    assert collecting_period(dt.date(2026, 10, 5), config, monthly).id == "2026M09"
    assert collecting_period(dt.date(2026, 10, 5)).id == "2026Q3"  # no feed: quarters, as before


def test_a_feed_can_report_termly_n_working_days_after_term_end(demo_config):
    feed = demo_config.feed("council_referrals")
    termly = feed.model_copy(update={"calendar": FeedCalendar(period="term", due_working_days=10)})
    config = demo_config.model_copy(update={"feeds": (termly,)})
    # Autumn term 2026 ends Thu 31 Dec; 1 Jan is a bank holiday.
    assert due_date(config, termly, Period.from_id("2026T3")) == dt.date(2027, 1, 15)
    assert collecting_period(dt.date(2026, 9, 10), config, termly).id == "2026T2"


def test_per_feed_ladder_overrides_only_what_they_give(demo_config):
    feed = demo_config.feed("police_ppn")
    own = feed.model_copy(update={"calendar": FeedCalendar(ladder=LadderOverride(advance_working_days=10))})
    ladder = schedule(demo_config, own).ladder
    assert (ladder.advance_working_days, ladder.overdue_working_days, ladder.escalation_working_days) == (10, 3, 5)


def test_a_ladder_that_escalates_before_it_is_overdue_is_refused(tmp_path):
    raw = yaml.safe_load(Path(config_path()).read_text())
    raw["feeds"][0]["calendar"] = {"ladder": {"escalation_working_days": 1}}
    path = tmp_path / "partnership.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(ConfigError, match="escalation_working_days"):
        load_config(path)


def test_board_meetings_have_their_pack_date(demo_config):
    first = board_meetings(demo_config)[0]
    # Five working days before Thu 10 Dec 2026.
    assert (first.meeting, first.pack_due) == (dt.date(2026, 12, 10), dt.date(2026, 12, 3))


def test_which_period_a_file_belongs_to(demo_config):
    council = demo_config.feed("council_referrals")
    police = demo_config.feed("police_ppn")
    assert period_of_name(demo_config, council, "referrals_2026Q3.csv") == Period.from_id("2026Q3")
    assert period_of_name(demo_config, council, "referrals_2026Q3.csv.part") is None
    assert period_of_name(demo_config, council, "referrals_2026M10.csv") is None  # a quarterly feed
    assert period_of_name(demo_config, police, "/v1/returns/ppn/2026Q4") == Period.from_id("2026Q4")
    assert re.fullmatch(PERIOD_ID_PATTERN, "2026M10") and not re.fullmatch(PERIOD_ID_PATTERN, "2026M1")


def test_the_calendar_command(capsys, monkeypatch, var):
    monkeypatch.setenv("PARTNERFLOW_CONFIG", str(config_path()))
    partnership.cache_clear()
    try:
        assert main.main(["calendar", "--from", "2026-10-14", "--to", "2026-10-21", "--feed", "police_ppn"]) == 0
        out = capsys.readouterr().out
        assert "Wed 14 Oct 2026  advance reminder  Q2 2026/27: police_ppn" in out
        assert "Wed 21 Oct 2026  return due" in out
        assert main.main(["calendar", "--which", "referrals_2026Q3.csv"]) == 0
        assert capsys.readouterr().out.strip() == (
            "referrals_2026Q3.csv is council_referrals's return for Q2 2026/27 (Jul–Sep 2026), due Wed 21 Oct 2026"
        )
        assert main.main(["calendar", "--which", "notes.txt", "--feed", "council_referrals"]) == 1
        assert "referrals_{period}.csv" in capsys.readouterr().err
    finally:
        partnership.cache_clear()


def test_one_label_for_a_period_and_what_its_id_means():
    from partnerflow.core.periods import period_label

    q3 = Period.from_id("2026Q3")
    assert q3.label == "Q2 2026/27 (Jul–Sep 2026)"
    assert q3.months == "Jul–Sep 2026"
    assert q3.id_meaning == "2026Q3 means Jul–Sep 2026"
    assert q3.explain_name("referrals_2026Q3.csv") == "referrals_2026Q3.csv — 2026Q3 means Jul–Sep 2026"
    assert q3.explain_name("/v1/returns/ppn") == "/v1/returns/ppn"
    assert Period.from_id("2026Q1").label == "Q4 2025/26 (Jan–Mar 2026)"
    assert Period.from_id("2026M10").id_meaning == "2026M10 means October 2026"
    assert Period.from_id("2026T3").id_meaning == "2026T3 means Sep–Dec 2026"
    assert period_label("2026Q3") == q3.label and period_label("not-a-period") == "not-a-period"
