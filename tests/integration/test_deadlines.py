"""The reminder ladder against a real PostgreSQL: stages, catch-up, backfills, extensions, still-failing
notices, monthly feeds, and the day a DAG run acts for (across the BST/GMT change)."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from partnerflow.chasing.ladder import run_day, run_ladder
from partnerflow.core import clock
from partnerflow.core.config import FeedCalendar, LadderOverride, Partnership
from partnerflow.core.periods import Period, due_date

Q3 = Period.from_id("2026Q3")
# For 2026Q3 (ends Wed 30 Sep 2026) with the demo calendar: due 15 working days later; the ladder at
# -5, -2 (still failing), +3 and +5 working days.
ADVANCE, STILL_FAILING, DUE, OVERDUE, ESCALATION = (
    dt.date(2026, 10, 14),
    dt.date(2026, 10, 19),
    dt.date(2026, 10, 21),
    dt.date(2026, 10, 26),
    dt.date(2026, 10, 28),
)


@pytest.fixture(autouse=True)
def clean(engine: Engine, var) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "TRUNCATE ops.ladder_steps, ops.notification_attempts, ops.notifications, ops.submissions,"
                " ops.validation_reports, ops.file_events, ops.received_files CASCADE"
            )
        )


@pytest.fixture(scope="module")
def partnership(demo_config: Partnership) -> Partnership:
    """The demo partnership with its two original feeds."""
    feeds = (demo_config.feed("council_referrals"), demo_config.feed("police_ppn"))
    return demo_config.model_copy(update={"feeds": feeds})


def ladder(engine: Engine, partnership: Partnership, day: dt.date) -> list[str]:
    """The morning run of ``day``, on ``day``."""
    return sorted(run_ladder(engine, partnership, as_of=day, today=day))


def publish(engine: Engine, feed_id: str, period: Period = Q3) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE ops.submissions SET state = 'published', published_at = now() "
                "WHERE feed_id = :f AND period_id = :p"
            ),
            {"f": feed_id, "p": period.id},
        )


def receive(engine: Engine, feed_id: str, *, state: str, on: dt.date, period: Period = Q3) -> None:
    """A version arrives (and, for 'rejected', fails two checks), recorded as the ledger would."""
    received_at = dt.datetime.combine(on, dt.time(12), tzinfo=clock.LONDON)
    with engine.begin() as conn:
        file_id = conn.execute(
            sa.text(
                "INSERT INTO ops.received_files (feed_id, period_id, source_name, sha256, landed_path, state,"
                " received_at) VALUES (:f, :p, :n, :h, 'x', :s, :at) RETURNING id"
            ),
            {
                "f": feed_id,
                "p": period.id,
                "n": f"{feed_id}_{period.id}.csv",
                "h": uuid.uuid4().hex * 2,
                "s": state,
                "at": received_at,
            },
        ).scalar_one()
        if state == "rejected":
            failures = '[{"code": "a", "severity": "error"}, {"code": "b"}, {"code": "c", "severity": "warning"}]'
            conn.execute(
                sa.text(
                    "INSERT INTO ops.validation_reports (file_id, passed, report) VALUES (:i, false, CAST(:r AS jsonb))"
                ),
                {"i": file_id, "r": f'{{"failures": {failures}}}'},
            )
        conn.execute(
            sa.text(
                "INSERT INTO ops.submissions (feed_id, period_id, due_date, state) VALUES (:f, :p, :d, :s)"
                " ON CONFLICT (feed_id, period_id) DO UPDATE SET state = excluded.state"
            ),
            {"f": feed_id, "p": period.id, "d": DUE, "s": "rejected" if state == "rejected" else "received"},
        )


def outbox(engine: Engine) -> dict[str, dict]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT key, recipients, cc, subject, text_body FROM ops.notifications"))
        return {row.key: dict(row._mapping) for row in rows}


def steps(engine: Engine) -> dict[tuple[str, str], tuple[str, str | None]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT feed_id, stage, outcome, reason FROM ops.ladder_steps"))
        return {(r.feed_id, r.stage): (r.outcome, r.reason) for r in rows}


def test_the_demo_calendar_dates(partnership: Partnership) -> None:
    for feed in partnership.feeds:
        assert due_date(partnership, feed, Q3) == DUE


def test_a_quarter_of_reminders_for_two_feeds(engine: Engine, partnership: Partnership) -> None:
    plan = [
        (dt.date(2026, 10, 1), []),
        (dt.date(2026, 10, 13), []),
        (ADVANCE, ["reminder-advance:council_referrals:2026Q3", "reminder-advance:police_ppn:2026Q3"]),
        (dt.date(2026, 10, 15), []),
        (dt.date(2026, 10, 20), "publish police_ppn"),
        (DUE, ["reminder-due:council_referrals:2026Q3"]),
        (dt.date(2026, 10, 23), []),
        (OVERDUE, ["reminder-overdue:council_referrals:2026Q3"]),
        (dt.date(2026, 10, 27), []),
        (ESCALATION, ["escalation:council_referrals:2026Q3"]),
        (dt.date(2026, 11, 30), []),
    ]
    for day, expected in plan:
        if isinstance(expected, str):
            publish(engine, expected.split()[1])
            continue
        assert ladder(engine, partnership, day) == expected, day

    sent = outbox(engine)
    assert len(sent) == 5
    council, police = partnership.partner("council"), partnership.partner("police")
    assert sent["escalation:council_referrals:2026Q3"]["recipients"] == [council.senior_lead.email]
    assert sent["escalation:council_referrals:2026Q3"]["cc"] == [partnership.officer.email]
    assert sent["reminder-advance:police_ppn:2026Q3"]["recipients"] == [police.contact.email]
    assert sent["reminder-overdue:council_referrals:2026Q3"]["subject"].endswith("3 working days late")

    # Rerunning any past day, today or later, sends nothing new.
    for day, expected in plan:
        if not isinstance(expected, str):
            assert run_ladder(engine, partnership, as_of=day, today=dt.date(2026, 11, 30)) == [], day
            assert ladder(engine, partnership, day) == [], day
    assert outbox(engine).keys() == sent.keys()

    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT feed_id, period_id, due_date, state FROM ops.submissions ORDER BY 1"))
        assert [tuple(r) for r in rows] == [
            ("council_referrals", "2026Q3", DUE, "expected"),
            ("police_ppn", "2026Q3", DUE, "published"),
        ]


def test_a_missed_day_catches_up_once_with_the_latest_reminder(engine: Engine, partnership: Partnership) -> None:
    # No run before the day after the due date: the due-day reminder goes, not a stale advance one.
    assert ladder(engine, partnership, dt.date(2026, 10, 22)) == [
        "reminder-due:council_referrals:2026Q3",
        "reminder-due:police_ppn:2026Q3",
    ]
    assert steps(engine)[("police_ppn", "reminder-advance")] == ("skipped", "overtaken by reminder-due")
    assert outbox(engine)["reminder-due:police_ppn:2026Q3"]["subject"].endswith("was due Wed 21 Oct")
    assert ladder(engine, partnership, dt.date(2026, 10, 22)) == []
    # Next run well past both the overdue and escalation days: both go, once.
    assert ladder(engine, partnership, dt.date(2026, 11, 3)) == [
        "escalation:council_referrals:2026Q3",
        "escalation:police_ppn:2026Q3",
        "reminder-overdue:council_referrals:2026Q3",
        "reminder-overdue:police_ppn:2026Q3",
    ]
    assert ladder(engine, partnership, dt.date(2026, 11, 4)) == []
    assert "9 working days late" in outbox(engine)["reminder-overdue:police_ppn:2026Q3"]["subject"]


def test_a_backfill_never_sends_a_reminder_that_a_later_one_has_overtaken(
    engine: Engine, partnership: Partnership
) -> None:
    today = dt.date(2026, 10, 27)  # after the overdue day; the deadlines DAG was down since 1 October
    assert run_ladder(engine, partnership, as_of=ADVANCE, today=today) == []
    assert run_ladder(engine, partnership, as_of=DUE, today=today) == []
    assert sorted(run_ladder(engine, partnership, as_of=OVERDUE, today=today)) == [
        "reminder-overdue:council_referrals:2026Q3",
        "reminder-overdue:police_ppn:2026Q3",
    ]
    assert run_ladder(engine, partnership, as_of=ADVANCE, today=today) == []
    assert ladder(engine, partnership, today) == []


def test_an_extended_due_date_is_honoured(engine: Engine, partnership: Partnership) -> None:
    assert ladder(engine, partnership, dt.date(2026, 10, 1)) == []
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE ops.submissions SET due_date = :d WHERE feed_id = 'council_referrals'"),
            {"d": dt.date(2026, 11, 20)},
        )

    assert ladder(engine, partnership, DUE) == ["reminder-due:police_ppn:2026Q3"]
    assert ladder(engine, partnership, dt.date(2026, 11, 4)) == [
        "escalation:police_ppn:2026Q3",
        "reminder-overdue:police_ppn:2026Q3",
    ]
    # Past the calendar's own window for Q3, the extended return is still chased on its new dates.
    assert ladder(engine, partnership, dt.date(2026, 11, 20)) == ["reminder-due:council_referrals:2026Q3"]
    assert ladder(engine, partnership, dt.date(2026, 11, 27)) == [
        "escalation:council_referrals:2026Q3",
        "reminder-overdue:council_referrals:2026Q3",
    ]


def test_a_feed_without_an_agreement_in_force_is_not_chased(engine: Engine, partnership: Partnership) -> None:
    police = partnership.partner("police")
    lapsed = police.model_copy(
        update={"agreement": police.agreement.model_copy(update={"in_force_to": dt.date(2026, 9, 30)})}
    )
    partners = tuple(lapsed if p.id == "police" else p for p in partnership.partners)
    without_police = partnership.model_copy(update={"partners": partners})

    assert ladder(engine, without_police, DUE) == ["reminder-due:council_referrals:2026Q3"]
    with engine.connect() as conn:
        feeds = conn.execute(sa.text("SELECT feed_id FROM ops.submissions")).scalars().all()
    assert feeds == ["council_referrals"]


def test_a_rejected_return_gets_one_still_failing_notice(engine: Engine, partnership: Partnership) -> None:
    council = partnership.partner("council")
    assert "reminder-advance:council_referrals:2026Q3" in ladder(engine, partnership, ADVANCE)
    receive(engine, "council_referrals", state="rejected", on=dt.date(2026, 10, 15))
    assert ladder(engine, partnership, dt.date(2026, 10, 16)) == []
    assert ladder(engine, partnership, STILL_FAILING) == ["still-failing:council_referrals:2026Q3"]
    receive(engine, "council_referrals", state="rejected", on=dt.date(2026, 10, 20))
    assert ladder(engine, partnership, dt.date(2026, 10, 20)) == []  # one notice per period, however many fail
    assert ladder(engine, partnership, DUE) == [
        "reminder-due:council_referrals:2026Q3",
        "reminder-due:police_ppn:2026Q3",
    ]

    notice = outbox(engine)["still-failing:council_referrals:2026Q3"]
    assert notice["recipients"] == [council.contact.email] and notice["cc"] == [partnership.officer.email]
    assert notice["subject"] == (
        "Blanktown SCP: Council referrals and assessments for Q2 2026/27 still not accepted – due Wed 21 Oct"
    )
    assert (
        "council_referrals_2026Q3.csv (received Thursday 15 October 2026; 2026Q3 means Jul–Sep 2026)"
        in notice["text_body"]
    )
    assert "2 checks failed" in notice["text_body"]  # the warning is not counted


def test_a_still_failing_notice_takes_the_place_of_that_days_reminder(engine: Engine, partnership: Partnership) -> None:
    receive(engine, "council_referrals", state="rejected", on=dt.date(2026, 10, 20))
    assert ladder(engine, partnership, DUE) == [
        "reminder-due:police_ppn:2026Q3",
        "still-failing:council_referrals:2026Q3",
    ]
    assert steps(engine)[("council_referrals", "reminder-due")] == (
        "skipped",
        "covered by the still-failing notice sent the same day",
    )
    assert steps(engine)[("council_referrals", "reminder-advance")] == ("skipped", "a version had already arrived")
    assert ladder(engine, partnership, OVERDUE) == [
        "reminder-overdue:council_referrals:2026Q3",
        "reminder-overdue:police_ppn:2026Q3",
    ]


def test_a_version_waiting_for_a_decision_pauses_the_ladder(engine: Engine, partnership: Partnership) -> None:
    receive(engine, "police_ppn", state="received", on=dt.date(2026, 10, 20))
    assert ladder(engine, partnership, DUE) == ["reminder-due:council_referrals:2026Q3"]
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE ops.received_files SET state = 'duplicate' WHERE feed_id = 'police_ppn'"))
    assert ladder(engine, partnership, dt.date(2026, 10, 22)) == ["reminder-due:police_ppn:2026Q3"]


def test_a_monthly_feed_is_chased_to_its_escalation_after_the_next_month_ends(
    engine: Engine, partnership: Partnership
) -> None:
    own = FeedCalendar(period="month", due_working_days=15, ladder=LadderOverride(escalation_working_days=10))
    monthly = partnership.feed("police_ppn").model_copy(update={"calendar": own})
    config = partnership.model_copy(update={"feeds": (monthly,)})
    # September 2026 is due Wed 21 Oct; its escalation falls on Wed 4 Nov, when October is collecting.
    # August's ladder is still open on 14 Oct, but the ladder never knew August: it is not escalated.
    assert ladder(engine, config, dt.date(2026, 10, 14)) == ["reminder-advance:police_ppn:2026M09"]
    assert ladder(engine, config, dt.date(2026, 11, 4)) == [
        "escalation:police_ppn:2026M09",
        "reminder-overdue:police_ppn:2026M09",
    ]
    # October's own ladder starts with its advance reminder, 5 working days before Fri 20 Nov.
    assert ladder(engine, config, dt.date(2026, 11, 13)) == ["reminder-advance:police_ppn:2026M10"]
    subject = outbox(engine)["reminder-advance:police_ppn:2026M10"]["subject"]
    assert subject == "Blanktown SCP: Police PPNs and DA incidents with a child present for October 2026 due Fri 20 Nov"


def test_the_day_a_run_acts_for() -> None:
    # Conf wins; a scheduled run acts for its logical date in London, whichever side of the clock change.
    assert run_day({"as_of": "2026-10-21"}, logical_date=None, run_type="manual") == DUE
    scheduled = {
        dt.datetime(2026, 10, 24, 6, 0, tzinfo=dt.UTC): dt.date(2026, 10, 24),  # 07:00 BST
        dt.datetime(2026, 10, 25, 7, 0, tzinfo=dt.UTC): dt.date(2026, 10, 25),  # 07:00 GMT, clocks went back
        dt.datetime(2026, 10, 23, 23, 30, tzinfo=dt.UTC): dt.date(2026, 10, 24),  # 00:30 BST is already the 24th
        dt.datetime(2026, 3, 29, 6, 0, tzinfo=dt.UTC): dt.date(2026, 3, 29),  # 07:00 BST, clocks went forward
    }
    for logical_date, day in scheduled.items():
        assert run_day({"as_of": None}, logical_date=logical_date, run_type="scheduled") == day
        assert run_day(None, logical_date=logical_date, run_type="backfill") == day


def test_a_manual_run_acts_for_the_clocks_day_and_a_pinned_clock_stops_scheduled_runs(var) -> None:
    clock.set_now(dt.datetime(2026, 10, 21, 23, 30, tzinfo=dt.UTC))  # 00:30 on the 22nd in London
    try:
        assert run_day({}, logical_date=None, run_type="manual") == dt.date(2026, 10, 22)
        assert run_day({}, logical_date=dt.datetime(2026, 11, 27, 7, tzinfo=dt.UTC), run_type="scheduled") is None
    finally:
        clock.set_now(None)


def test_a_rerun_on_the_day_of_a_clock_change_sends_nothing_twice(engine: Engine, partnership: Partnership) -> None:
    # Mon 26 Oct is the overdue day, the first working day after the clocks go back: the 07:00 run and a late
    # rerun (logical dates an hour apart in UTC) are the same London day.
    first = run_day(None, logical_date=dt.datetime(2026, 10, 26, 7, tzinfo=dt.UTC), run_type="scheduled")
    again = run_day(None, logical_date=dt.datetime(2026, 10, 26, 6, tzinfo=dt.UTC), run_type="scheduled")
    assert first == again == OVERDUE
    assert len(ladder(engine, partnership, first)) == 2
    assert ladder(engine, partnership, again) == []
