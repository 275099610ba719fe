"""A quarter under the controllable clock: the ladder runs every morning for four partners, returns arrive and
are accepted or rejected by the real publish and quarantine, and every email goes through the SendGrid sink.

Q2 2026/27 (2026Q3) is due Wed 21 Oct 2026. The ladder: advance Wed 14 Oct, still-failing from Mon 19 Oct,
due Wed 21 Oct, overdue Mon 26 Oct (the day after the clocks go back), escalation Wed 28 Oct.

- police: on time (accepted Mon 19 Oct);
- council: late, then submitted (accepted Tue 27 Oct, after the overdue reminder, before escalation);
- health: never submitted;
- education: rejected twice (Thu 15 and Thu 22 Oct), accepted Fri 30 Oct after its escalation.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from collections.abc import Iterator

import psycopg
import pytest
import sqlalchemy as sa

from partnerflow import warehouse
from partnerflow.chasing.ladder import run_ladder
from partnerflow.core import clock
from partnerflow.core.config import Partnership
from partnerflow.core.periods import Period
from partnerflow.notify.sender import SenderSettings, send_pending
from partnerflow_dev.postgres import EmbeddedPostgres
from partnerflow_dev.sendgrid_sink import SendgridSink
from tests.integration.ladder_world import MIDDAY, accept, at, days, four_partners, outbox, reject

Q3 = Period.from_id("2026Q3")
API_KEY = "SG.quarter.test"
FIRST, LAST = dt.date(2026, 10, 1), dt.date(2026, 11, 13)
ADVANCE, STILL_FAILING, DUE = dt.date(2026, 10, 14), dt.date(2026, 10, 19), dt.date(2026, 10, 21)
OVERDUE, ESCALATION = dt.date(2026, 10, 26), dt.date(2026, 10, 28)


@pytest.fixture(scope="module")
def world(demo_config: Partnership) -> Partnership:
    return four_partners(demo_config)


@pytest.fixture(scope="module")
def sink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SendgridSink]:
    with SendgridSink(out_dir=tmp_path_factory.mktemp("sink"), api_key=API_KEY) as server:
        yield server


@pytest.fixture(scope="module")
def quarter(postgres: EmbeddedPostgres, tmp_path_factory, world: Partnership, sink: SendgridSink) -> Iterator[dict]:
    """Play the quarter day by day, once for this module; what the outbox held and the day each key appeared."""
    name = f"t_quarter_{uuid.uuid4().hex[:12]}"
    postgres.create_database(name)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PARTNERFLOW_VAR", str(tmp_path_factory.mktemp("var")))
        env.setenv("PARTNERFLOW_WAREHOUSE_URL", postgres.url(name))
        warehouse.migrate()
        engine = warehouse.engine()
        settings = SenderSettings(api_key=API_KEY, host=sink.url, notifications=world.notifications, partnership=world)
        police, council, health, education = world.feeds
        arrivals = {
            dt.date(2026, 10, 15): lambda: reject(engine, world, education, Q3, version=1),
            dt.date(2026, 10, 19): lambda: accept(engine, world, police, Q3),
            dt.date(2026, 10, 22): lambda: reject(engine, world, education, Q3, version=2),
            dt.date(2026, 10, 27): lambda: accept(engine, world, council, Q3),
            dt.date(2026, 10, 30): lambda: accept(engine, world, education, Q3, version=3),
        }
        first_seen: dict[str, dt.date] = {}
        try:
            for day in days(FIRST, LAST):
                at(day)
                run_ladder(engine, world, as_of=day)
                if day in arrivals:
                    at(day, MIDDAY)
                    arrivals[day]()
                send_pending(engine, settings=settings)
                for key in outbox(engine):
                    first_seen.setdefault(key, day)
        finally:
            clock.set_now(None)
        yield {"engine": engine, "settings": settings, "first_seen": first_seen}
        warehouse._engine_for.cache_clear()
        engine.dispose()
    with psycopg.connect(postgres.dsn("postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_every_message_once_to_the_right_people_on_the_right_day(quarter, world: Partnership, sink) -> None:
    officer = world.officer.email
    contact = {p.id: p.contact.email for p in world.partners}
    lead = {p.id: p.senior_lead.email for p in world.partners}
    expected = {
        *(("reminder-advance", f"{p}_counts", ADVANCE, (contact[p],), ()) for p in contact),
        ("rejection", "education_counts", dt.date(2026, 10, 15), (contact["education"],), (officer,)),
        ("receipt", "police_counts", dt.date(2026, 10, 19), (contact["police"],), ()),
        ("still-failing", "education_counts", STILL_FAILING, (contact["education"],), (officer,)),
        *(("reminder-due", f"{p}_counts", DUE, (contact[p],), ()) for p in ("council", "health", "education")),
        ("rejection", "education_counts", dt.date(2026, 10, 22), (contact["education"],), (officer,)),
        *(
            ("reminder-overdue", f"{p}_counts", OVERDUE, (contact[p],), (officer,))
            for p in ("council", "health", "education")
        ),
        ("receipt", "council_counts", dt.date(2026, 10, 27), (contact["council"],), ()),
        *(("escalation", f"{p}_counts", ESCALATION, (lead[p],), (officer,)) for p in ("health", "education")),
        ("receipt", "education_counts", dt.date(2026, 10, 30), (contact["education"],), ()),
    }

    held = outbox(quarter["engine"])
    actual = {
        (row["kind"], row["feed_id"], quarter["first_seen"][key], tuple(row["recipients"]), tuple(row["cc"]))
        for key, row in held.items()
    }
    assert actual == expected
    assert len(held) == len(expected) == 18
    assert {row["period_id"] for row in held.values()} == {"2026Q3"}

    # The sink got each of them exactly once, as SendGrid would have.
    delivered = Counter(m["custom_args"]["partnerflow_key"] for m in sink.messages())
    assert delivered == Counter(held.keys())
    assert {row["state"] for row in held.values()} == {"sent"}


def test_subjects_say_what_and_when(quarter) -> None:
    subjects = {key: row["subject"] for key, row in outbox(quarter["engine"]).items()}
    assert (
        subjects["reminder-advance:health_counts:2026Q3"]
        == "Blanktown SCP: Health counts for Q2 2026/27 due Wed 21 Oct"
    )
    assert subjects["still-failing:education_counts:2026Q3"] == (
        "Blanktown SCP: Education counts for Q2 2026/27 still not accepted – due Wed 21 Oct"
    )
    assert subjects["reminder-due:health_counts:2026Q3"] == "Blanktown SCP: Health counts for Q2 2026/27 is due today"
    assert subjects["reminder-overdue:health_counts:2026Q3"].endswith("is overdue – 3 working days late")
    assert subjects["escalation:health_counts:2026Q3"].endswith("is 5 working days late")


def test_the_ladder_remembers_each_stage_and_why_it_was_skipped(quarter) -> None:
    with quarter["engine"].connect() as conn:
        steps = {
            (feed, stage): (as_of, outcome)
            for feed, stage, as_of, outcome in conn.execute(
                sa.text("SELECT feed_id, stage, as_of, outcome FROM ops.ladder_steps")
            )
        }
    assert steps[("education_counts", "still-failing")] == (STILL_FAILING, "sent")
    assert steps[("health_counts", "escalation")] == (ESCALATION, "sent")
    assert ("police_counts", "reminder-due") not in steps  # published before its day: the ladder stopped
    assert ("council_counts", "escalation") not in steps


def test_escalation_names_the_days_the_contact_was_chased(quarter) -> None:
    with quarter["engine"].connect() as conn:
        text = conn.execute(
            sa.text("SELECT text_body FROM ops.notifications WHERE key = 'escalation:education_counts:2026Q3'")
        ).scalar_one()
    assert "on Wed 14 Oct, Mon 19 Oct, Wed 21 Oct and Mon 26 Oct." in text
    assert "we need it by Thursday 3 December 2026" in text  # the pack date of the 10 December Board


def test_rerunning_every_past_day_sends_nothing(quarter, world: Partnership, sink) -> None:
    engine = quarter["engine"]
    before = outbox(engine).keys()
    delivered = len(sink.messages())
    at(LAST)
    try:
        for day in days(FIRST, LAST):
            assert run_ladder(engine, world, as_of=day) == [], day
        send_pending(engine, settings=quarter["settings"])
    finally:
        clock.set_now(None)
    assert outbox(engine).keys() == before
    assert len(sink.messages()) == delivered
