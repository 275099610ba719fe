"""The reminder ladder over a quarter, for two feeds, against a real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator

import psycopg
import pytest
import sqlalchemy as sa
from psycopg import sql
from sqlalchemy.engine import Engine

from partnerflow import warehouse
from partnerflow.calendar import Period, due_date
from partnerflow.config import Partnership, load_config
from partnerflow.deadlines import run_ladder
from partnerflow.devstack.postgres import EmbeddedPostgres

Q3 = Period.from_id("2026Q3")
# For 2026Q3 (ends Wed 30 Sep 2026) with the demo calendar: due 15 working days later; the ladder at
# -5, +3 and +5 working days.
ADVANCE, DUE, OVERDUE, ESCALATION = (
    dt.date(2026, 10, 14),
    dt.date(2026, 10, 21),
    dt.date(2026, 10, 26),
    dt.date(2026, 10, 28),
)


@pytest.fixture(scope="module")
def engine(postgres: EmbeddedPostgres) -> Iterator[Engine]:
    """A migrated warehouse of this module's own on the embedded server."""
    name = f"t_ladder_{uuid.uuid4().hex[:12]}"
    postgres.create_database(name)
    eng = sa.create_engine(postgres.url(name))
    try:
        warehouse.migrate(eng)
        yield eng
    finally:
        eng.dispose()
        with psycopg.connect(postgres.dsn("postgres"), autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(autouse=True)
def clean(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE ops.notification_attempts, ops.notifications, ops.submissions"))


@pytest.fixture(scope="module")
def partnership() -> Partnership:
    return load_config()


def publish(engine: Engine, feed_id: str, period: Period = Q3) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE ops.submissions SET state = 'published', published_at = now() "
                "WHERE feed_id = :f AND period_id = :p"
            ),
            {"f": feed_id, "p": period.id},
        )


def outbox(engine: Engine) -> dict[str, dict]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT key, recipients, cc, subject FROM ops.notifications")).mappings()
        return {row["key"]: dict(row) for row in rows}


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
        assert sorted(run_ladder(engine, partnership, as_of=day)) == expected, day

    sent = outbox(engine)
    assert len(sent) == 5
    council, police = partnership.partner("council"), partnership.partner("police")
    assert sent["escalation:council_referrals:2026Q3"]["recipients"] == [council.senior_lead.email]
    assert sent["escalation:council_referrals:2026Q3"]["cc"] == [partnership.officer.email]
    assert sent["reminder-advance:police_ppn:2026Q3"]["recipients"] == [police.contact.email]
    assert sent["reminder-overdue:council_referrals:2026Q3"]["subject"].endswith("3 working days late")

    # Rerunning any past day sends nothing new.
    for day, expected in plan:
        if not isinstance(expected, str):
            assert run_ladder(engine, partnership, as_of=day) == [], day
    assert outbox(engine).keys() == sent.keys()

    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT feed_id, period_id, due_date, state FROM ops.submissions ORDER BY 1"))
        assert [tuple(r) for r in rows] == [
            ("council_referrals", "2026Q3", DUE, "expected"),
            ("police_ppn", "2026Q3", DUE, "published"),
        ]


def test_a_missed_day_catches_up_once_with_the_latest_reminder(engine: Engine, partnership: Partnership) -> None:
    # No run before the day after the due date: the due-day reminder goes, not a stale advance one.
    assert sorted(run_ladder(engine, partnership, as_of=dt.date(2026, 10, 22))) == [
        "reminder-due:council_referrals:2026Q3",
        "reminder-due:police_ppn:2026Q3",
    ]
    assert run_ladder(engine, partnership, as_of=dt.date(2026, 10, 22)) == []
    # Next run well past both the overdue and escalation days: both go, once.
    assert sorted(run_ladder(engine, partnership, as_of=dt.date(2026, 11, 3))) == [
        "escalation:council_referrals:2026Q3",
        "escalation:police_ppn:2026Q3",
        "reminder-overdue:council_referrals:2026Q3",
        "reminder-overdue:police_ppn:2026Q3",
    ]
    assert run_ladder(engine, partnership, as_of=dt.date(2026, 11, 4)) == []
    assert "9 working days late" in outbox(engine)["reminder-overdue:police_ppn:2026Q3"]["subject"]


def test_an_extended_due_date_is_honoured(engine: Engine, partnership: Partnership) -> None:
    assert run_ladder(engine, partnership, as_of=dt.date(2026, 10, 1)) == []
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE ops.submissions SET due_date = :d WHERE feed_id = 'council_referrals'"),
            {"d": dt.date(2026, 11, 4)},
        )

    assert run_ladder(engine, partnership, as_of=DUE) == ["reminder-due:police_ppn:2026Q3"]
    assert run_ladder(engine, partnership, as_of=dt.date(2026, 11, 4)) == [
        "reminder-due:council_referrals:2026Q3",
        "reminder-overdue:police_ppn:2026Q3",
        "escalation:police_ppn:2026Q3",
    ]


def test_a_feed_without_an_agreement_in_force_is_not_chased(engine: Engine, partnership: Partnership) -> None:
    police = partnership.partner("police")
    lapsed = police.model_copy(
        update={"agreement": police.agreement.model_copy(update={"in_force_to": dt.date(2026, 9, 30)})}
    )
    partners = tuple(lapsed if p.id == "police" else p for p in partnership.partners)
    without_police = partnership.model_copy(update={"partners": partners})

    assert run_ladder(engine, without_police, as_of=DUE) == ["reminder-due:council_referrals:2026Q3"]
    with engine.connect() as conn:
        feeds = conn.execute(sa.text("SELECT feed_id FROM ops.submissions")).scalars().all()
    assert feeds == ["council_referrals"]
