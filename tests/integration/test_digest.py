"""The officer's weekly digest: the submissions matrix for the current and previous period, who was chased and
when, sent once a week; against a real PostgreSQL with returns accepted and rejected by publish/quarantine."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from partnerflow import warehouse
from partnerflow.chasing import digest
from partnerflow.chasing.ladder import run_ladder
from partnerflow.core import clock
from partnerflow.core.config import Partnership
from partnerflow.core.periods import Period
from tests.integration.ladder_world import (
    MIDDAY,
    WARNING_FAILURE,
    accept,
    arrive,
    at,
    days,
    four_partners,
    outbox,
    reject,
)

Q2, Q3 = Period.from_id("2026Q2"), Period.from_id("2026Q3")
MONDAY = dt.date(2026, 10, 26)


@pytest.fixture
def world(demo_config: Partnership) -> Partnership:
    return four_partners(demo_config)


@pytest.fixture
def engine(warehouse_url: str, world: Partnership):
    """Q2 and most of Q3, up to the morning of Mon 26 Oct 2026."""
    eng = warehouse.engine()
    police, council, health, education = world.feeds
    at(dt.date(2026, 7, 10), MIDDAY)
    accept(eng, world, police, Q2)
    at(dt.date(2026, 7, 24), MIDDAY)
    accept(eng, world, council, Q2)  # due Tue 21 Jul: 3 working days late
    arrivals = {
        dt.date(2026, 10, 19): lambda: accept(eng, world, police, Q3, warnings=[WARNING_FAILURE]),
        dt.date(2026, 10, 20): lambda: reject(eng, world, health, Q3, version=1),
        dt.date(2026, 10, 23): lambda: arrive(eng, world, education, Q3, version=1),  # not decided yet
    }
    try:
        for day in days(dt.date(2026, 10, 1), MONDAY):
            at(day)
            run_ladder(eng, world, as_of=day)
            if day in arrivals:
                at(day, MIDDAY)
                arrivals[day]()
        at(MONDAY, dt.time(8))
        yield eng
    finally:
        clock.set_now(None)


def test_the_matrix_for_this_period_and_the_last(engine, world: Partnership) -> None:
    rows = {row.feed.id: row for row in digest.matrix(engine, world, as_of=MONDAY)}
    police, council, health, education = (rows[f"{p}_counts"] for p in ("police", "council", "health", "education"))

    assert [r.current.period.id for r in rows.values()] == ["2026Q3"] * 4
    assert [r.previous.period.id for r in rows.values()] == ["2026Q2"] * 4
    assert police.current.status_text == "On time (accepted with warnings)"
    assert police.current.published_on == dt.date(2026, 10, 19)
    assert council.current.status_text == "Overdue by 3 working days"
    assert health.current.status_text == (
        "Rejected: grade_is_h_m_or_l × 1; report to the partner not sent yet; overdue by 3 working days"
    )
    assert health.current.versions_rejected == 1
    assert education.current.status_text == "Received, being checked; overdue by 3 working days"

    assert police.previous.status_text == "On time"
    assert council.previous.status_text == "Late by 3 working days"
    assert health.previous.status == digest.OVERDUE and health.previous.chased == ()

    assert [(c.what, c.to, c.on, c.delivery) for c in council.current.chased] == [
        ("advance reminder", "data contact", dt.date(2026, 10, 14), "waiting to send"),
        ("due-day reminder", "data contact", dt.date(2026, 10, 21), "waiting to send"),
        ("overdue reminder", "data contact, officer copied", dt.date(2026, 10, 26), "waiting to send"),
    ]
    # Rejected the day before it was due: the still-not-accepted notice took the due-day reminder's place.
    assert [(c.what, c.on) for c in health.current.chased] == [
        ("advance reminder", dt.date(2026, 10, 14)),
        ("still-not-accepted notice", dt.date(2026, 10, 21)),
        ("overdue reminder", dt.date(2026, 10, 26)),
    ]


def test_the_digest_email_reads_well_and_goes_once_a_week(engine, world: Partnership) -> None:
    key = digest.send_weekly_digest(engine, world, as_of=MONDAY)
    assert key == "weekly-digest:2026-W44"
    assert digest.send_weekly_digest(engine, world, as_of=MONDAY) is None
    assert digest.send_weekly_digest(engine, world, as_of=dt.date(2026, 10, 28)) is None  # same week

    message = outbox(engine)[key]
    assert message["recipients"] == [world.officer.email] and message["cc"] == []
    assert message["subject"] == "Blanktown SCP: weekly submissions digest, w/c Mon 26 Oct – 1 of 4 current returns in"
    with engine.connect() as conn:
        text, html = conn.execute(
            sa.text("SELECT text_body, html_body FROM ops.notifications WHERE key = :k"), {"k": key}
        ).one()
    assert "As of Monday 26 October 2026, 1 of 4 returns for the periods being collected now are in." in text
    assert "Council counts (Blanktown Council)" in text
    assert "- Q2 2026/27 (Jul–Sep 2026): Overdue by 3 working days" in text
    assert (
        "Chased: advance reminder to data contact, Wed 14 Oct (waiting to send); due-day reminder to data contact, "
        "Wed 21 Oct (waiting to send); overdue reminder to data contact, officer copied, Mon 26 Oct (waiting to send)"
    ) in text
    assert "- Q1 2026/27 (Apr–Jun 2026): Late by 3 working days; accepted Fri 24 Jul" in text
    assert "- Wed 28 Oct: Council counts for Q2 2026/27: escalation to the senior lead if still not in" in text
    assert "Police counts for Q2 2026/27: escalation" not in text  # already in
    # Accessible markup: a captioned table with header cells that say what they head.
    assert "<caption>Each return: the period being collected now, and the one before it</caption>" in html
    assert html.count('<th scope="row">') == 4 and html.count('<th scope="col">') == 3

    next_week = digest.send_weekly_digest(engine, world, as_of=dt.date(2026, 11, 2))
    assert next_week == "weekly-digest:2026-W45"


def test_periods_before_go_live_are_never_reported_missing(engine, world: Partnership) -> None:
    live = world.model_copy(update={"go_live": dt.date(2026, 7, 1)})
    rows = digest.matrix(engine, live, as_of=MONDAY)
    assert [row.previous for row in rows] == [None] * 4  # Q2 ended before go-live
    assert all(len(row.cells) == 1 for row in rows)
    message = digest.build(engine, live, as_of=MONDAY)
    assert "Q1 2026/27" not in message.text and "Before go-live" in message.html
    # The digest leads with what needs attention: council overdue, health rejected, then the rest.
    attention = message.text.split("NEEDS YOUR ATTENTION", 1)[1].split("EACH RETURN", 1)[0]
    assert "Council counts (Blanktown Council), Q2 2026/27: Overdue by 3 working days" in attention
    assert "Health counts" in attention and "Police counts" not in attention
