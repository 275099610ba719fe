"""Period ids (and days) are ASCII only, at every entry point that parses one (issue 12).

``\\d`` matches any Unicode digit and ``int()`` reads them, so ``icb_safeguarding_٢٠٢٦Q4.csv`` once became a
phantom period ``٢٠٢٦Q4`` of its own. Here: the period parser, SFTP file names (listing and near misses),
the calendar and validate and approve-pack command lines, DAG run conf, and the API's Retry-After.
The real SFTP drop and ledger are in tests/integration/test_ascii_periods_ingest.py.
"""

from __future__ import annotations

import datetime as dt
import re
import stat
import unicodedata
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from partnerflow.airflow import callbacks
from partnerflow.chasing import ladder
from partnerflow.cli.main import main
from partnerflow.core import clock, periods
from partnerflow.core.config import load_config
from partnerflow.core.periods import Period, ascii_folded, collecting_period, iso_day, period_of_name
from partnerflow.pipeline import collect, ingest
from partnerflow.transport import http, sftp

CONFIG = load_config()
HEALTH = CONFIG.feed("health_icb")
ARABIC_INDIC = "icb_safeguarding_٢٠٢٦Q4.csv"
FULL_WIDTH = "icb_safeguarding_２０２７Q1.csv"
NOT_ASCII = ["٢٠٢٦Q4", "２０２７Q1", "2026Q٣", "2026Ｑ3", "۲۰۲۶Q4", "𝟐𝟎𝟐𝟔Q4", "2026M1٠", "2026T３"]
NON_ASCII_DIGITS = st.characters(categories=["Nd"]).filter(lambda c: not c.isascii())


def listing(*names: str) -> list[SimpleNamespace]:
    return [SimpleNamespace(filename=n, st_mode=stat.S_IFREG | 0o644, st_size=10, st_mtime=1) for n in names]


# --- the parser -----------------------------------------------------------------------------------


@pytest.mark.parametrize("period_id", NOT_ASCII + ["2026Q3\n", " 2026Q3", "2026q3", "2026Q03", "", "2026Q"])
def test_only_ascii_period_ids_parse(period_id):
    with pytest.raises(ValueError, match="is not a period id"):
        Period.from_id(period_id)


def test_the_reason_is_given_for_other_digits_and_no_value_is_guessed():
    with pytest.raises(ValueError, match="non-ASCII look-alikes"):
        Period.from_id("٢٠٢٦Q4")
    for not_text in (2026, None, ["2026Q3"]):
        with pytest.raises(ValueError):
            Period.from_id(not_text)
    assert [Period.from_id(p).id for p in ("2026Q3", "2026M10", "2026T3")] == ["2026Q3", "2026M10", "2026T3"]


@given(year=st.lists(NON_ASCII_DIGITS, min_size=4, max_size=4), letter=st.sampled_from("QMT"))
def test_no_other_script_digits_ever_make_a_period(year, letter):
    period_id = "".join(year) + letter + "1"
    assert not re.search(periods.period_id_regex(), period_id)
    with pytest.raises(ValueError):
        Period.from_id(period_id)
    assert ascii_folded(period_id) == "".join(str(unicodedata.decimal(c)) for c in year) + letter + "1"  # a near miss


# --- SFTP file names --------------------------------------------------------------------------------


def test_names_with_other_digits_are_never_a_period_but_a_near_miss_with_its_reason():
    regex = sftp.name_regex(HEALTH.transport.pattern)
    found = sftp.matching_files(listing(ARABIC_INDIC, FULL_WIDTH, "icb_safeguarding_2026Q3.csv"), HEALTH.transport)
    assert [(f.name, f.period_id) for f in found] == [("icb_safeguarding_2026Q3.csv", "2026Q3")]
    for name in (ARABIC_INDIC, FULL_WIDTH):
        assert "non-ASCII look-alikes" in sftp.near_miss(name, regex)
    for name in ("icb_safeguarding_2026Q3.csv", "other_٢٠٢٦Q4.csv", "notes.txt", "icb_safeguarding_final.csv"):
        assert sftp.near_miss(name, regex) is None  # a match, or plainly not the feed's name


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("icb_safeguarding_2026Q3.CSV", "different case from the one agreed (for example an upper-case extension)"),
        ("icb_safeguarding_2026q3.csv", "different case"),
        ("-icb_safeguarding_2026Q3.csv", "starts with '-'"),
        ("icb_safеguarding_2026Q3.csv", "letter from another alphabet"),  # a Cyrillic "е"
        ("icb_safeguarding_2026-Q3.csv", "period is not written the agreed way (like 2026Q3)"),
        ("icb_safeguarding_Q3_2026.csv", "period is not written the agreed way"),
        ("icb_safeguarding_2026Q5.csv", "period is not written the agreed way"),  # no such quarter
    ],
)
def test_names_that_nearly_match_say_why(name, reason):
    assert reason in sftp.near_miss(name, sftp.name_regex(HEALTH.transport.pattern))


def test_the_trigger_never_fires_for_them():
    from partnerflow.transport.arrival import ArrivalWatch, Listed

    watch = ArrivalWatch(pattern=HEALTH.transport.pattern)
    names = [ARABIC_INDIC, FULL_WIDTH, "icb_safeguarding_2026Q3.csv"]
    assert watch.arrivals([Listed(n, True, 10, 1.0) for n in names], now=100.0) == ["icb_safeguarding_2026Q3.csv"]


def test_the_calendar_names_no_period_for_them():
    for feed in CONFIG.feeds:
        template = feed.transport.pattern if feed.transport.kind == "sftp" else feed.transport.endpoint
        for period_id in NOT_ASCII:
            assert period_of_name(CONFIG, feed, template.replace("{period}", period_id)) is None
    assert period_of_name(CONFIG, HEALTH, "icb_safeguarding_2026Q3.csv") == Period.from_id("2026Q3")


# --- command lines ----------------------------------------------------------------------------------


def test_calendar_which_says_why_such_a_name_is_no_periods(capsys):
    assert main(["calendar", "--which", ARABIC_INDIC]) == 1
    err = capsys.readouterr().err
    assert "is no period's file" in err and "non-ASCII look-alikes" in err
    assert main(["calendar", "--which", "icb_safeguarding_2026Q3.csv", "--json"]) == 0
    assert '"period": "2026Q3"' in capsys.readouterr().out


@pytest.mark.parametrize("day", ["２０２６-10-01", "٢٠٢٦-10-01", "20261001", "2026-W40-4"])
def test_calendar_days_are_ascii_yyyy_mm_dd(capsys, day):
    with pytest.raises(SystemExit) as exited:
        main(["calendar", "--from", day])
    assert exited.value.code == 2
    assert "YYYY-MM-DD in digits 0-9" in capsys.readouterr().err


def test_validate_refuses_a_period_in_other_digits(tmp_path: Path, capsys):
    landed = tmp_path / ARABIC_INDIC
    landed.write_bytes(b"measure_code,age_band,numerator,denominator\r\n")
    assert main(["validate", "health_icb", str(landed)]) == 2
    err = capsys.readouterr().err
    assert "cannot tell the period" in err and "non-ASCII look-alikes" in err
    assert main(["validate", "health_icb", str(landed), "--period", "٢٠٢٦Q4"]) == 2
    assert "is not a period id" in capsys.readouterr().err


def test_approve_pack_refuses_a_period_in_other_digits(capsys):
    assert main(["approve-pack", "２０２７Q1"]) != 0
    assert "is not a period id" in capsys.readouterr().err


# --- DAG run conf -----------------------------------------------------------------------------------


@pytest.mark.parametrize("as_of", ["٢٠٢٦-10-01", "２０２６-10-01", "20261001", "2026-W40-4", 20261001])
def test_conf_as_of_is_an_ascii_day_named_when_refused(as_of):
    with pytest.raises(ValueError, match='conf "as_of"'):
        ingest.as_of_date({"as_of": as_of})
    with pytest.raises(ValueError, match='conf "as_of"'):
        ladder.run_day({"as_of": as_of}, logical_date=None, run_type="manual")
    assert ingest.as_of_date({"as_of": "2026-10-01"}) == dt.date(2026, 10, 1) == iso_day(" 2026-10-01 ")


def test_conf_period_is_refused_before_anything_is_fetched(monkeypatch):
    monkeypatch.setattr(collect, "fetch_http", lambda *a: pytest.fail("fetched"))
    monkeypatch.setattr(collect, "fetch_sftp", lambda *a: pytest.fail("fetched"))
    for feed_id in ("police_ppn", "health_icb"):
        with pytest.raises(ValueError, match="is not a period id"):
            ingest.fetch(feed_id, period_id="٢٠٢٦Q4", config=CONFIG)


def test_an_alerts_conf_period_in_other_digits_is_not_filed_under_it():
    assert callbacks.incident_period({"period": "٢٠٢٦Q4"}, CONFIG) == collecting_period(clock.today(), CONFIG).id
    assert callbacks.incident_period({"as_of": "٢٠٢٦-10-20"}, CONFIG) == collecting_period(clock.today(), CONFIG).id
    assert callbacks.incident_period({"as_of": "2026-10-20"}, CONFIG) == "2026Q3"
    assert callbacks.incident_period({"period": "2026Q2"}, CONFIG) == "2026Q2"


# --- partner API responses --------------------------------------------------------------------------


def test_retry_after_reads_ascii_digits_only():
    assert http._retry_after_seconds("3") == 3.0
    assert http._retry_after_seconds("٣") is None  # neither seconds nor an HTTP date
