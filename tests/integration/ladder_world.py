"""A small partnership for the ladder, digest and quarter tests, and how its partners' returns arrive.

Four partners each send one aggregate return (the police PPN shape) by API, so a return can be staged by hand
and then accepted or rejected by the real ``publish``/``quarantine`` functions, without files or Great
Expectations. Every address is on a reserved domain covered by the demo allow-list.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from partnerflow.core import clock
from partnerflow.core.config import Feed, Partner, Partnership, Person
from partnerflow.core.periods import Period, due_date
from partnerflow.intake.reader import staging_table
from partnerflow.transport.landing import land_bytes
from partnerflow.warehouse import ledger, publish

MORNING = dt.time(7, 0)
MIDDAY = dt.time(12, 0)
PARTNER_IDS = ("police", "council", "health", "education")


def four_partners(demo: Partnership) -> Partnership:
    """The demo partnership cut down to four partners with one API feed each, all of the police_ppn shape."""
    template = demo.partner("police")
    partners = tuple(_partner(template, partner_id) for partner_id in PARTNER_IDS)
    base = demo.feed("police_ppn")
    feeds = tuple(
        base.model_copy(
            update={
                "id": f"{partner_id}_counts",
                "partner": partner_id,
                "title": f"{partner_id.capitalize()} counts",
                "transport": base.transport.model_copy(update={"endpoint": f"/v1/{partner_id}/{{period}}"}),
            }
        )
        for partner_id in PARTNER_IDS
    )
    return demo.model_copy(
        update={
            "partners": partners,
            "datasets": (demo.dataset("police_ppn"),),
            "feeds": feeds,
            "kpis": (),
        }
    )


def _partner(template: Partner, partner_id: str) -> Partner:
    domain = f"{partner_id}.blanktown.example.org"
    return template.model_copy(
        update={
            "id": partner_id,
            "name": f"Blanktown {partner_id.capitalize()}",
            "contact": Person(name=f"{partner_id.capitalize()} analyst", email=f"analyst@{domain}"),
            "senior_lead": Person(name=f"{partner_id.capitalize()} director", email=f"director@{domain}"),
        }
    )


def at(day: dt.date, time: dt.time = MORNING) -> None:
    """Set partnerflow's clock to ``time`` (London) on ``day``."""
    clock.set_now(dt.datetime.combine(day, time, tzinfo=clock.LONDON))


def arrive(engine: Engine, partnership: Partnership, feed: Feed, period: Period, *, version: int) -> int:
    """A version of a return arrives: landed, in the ledger and staged (two rows); returns its file id."""
    content = json.dumps({"feed": feed.id, "period": period.id, "version": version}).encode()
    with engine.begin() as conn:
        received = ledger.record_received(
            conn,
            feed_id=feed.id,
            period_id=period.id,
            source_name=feed.transport.endpoint.replace("{period}", period.id),
            landed=land_bytes(content),
            source_mtime=None,
            due_date=due_date(partnership, feed, period),
        )
        table = staging_table(partnership.dataset(feed.dataset), received.id)
        conn.execute(
            sa.text(f"CREATE TABLE {table} (row_number integer, measure_code text, grade text, value integer)")
        )
        conn.execute(sa.text(f"INSERT INTO {table} VALUES (1, 'PPN', 'H', 12), (2, 'PPN', 'M', 30)"))
    return received.id


def accept(engine: Engine, partnership: Partnership, feed: Feed, period: Period, *, version: int = 1, warnings=()):
    """A version arrives and passes its checks (with warning-level failures, if given): it is published."""
    file_id = arrive(engine, partnership, feed, period, version=version)
    report = {"passed": True, "rules_checked": 3, "rows_checked": 2, "failures": list(warnings)}
    return publish.publish(
        engine, partnership, file_id=file_id, feed=feed, dataset=partnership.dataset(feed.dataset), report=report
    )


def reject(engine: Engine, partnership: Partnership, feed: Feed, period: Period, *, version: int):
    """A version arrives and fails one of its three checks: it is quarantined."""
    file_id = arrive(engine, partnership, feed, period, version=version)
    report = {"passed": False, "rules_checked": 3, "rows_checked": 2, "failures": [GRADE_FAILURE]}
    return publish.quarantine(
        engine, partnership, file_id=file_id, feed=feed, dataset=partnership.dataset(feed.dataset), report=report
    )


GRADE_FAILURE = {
    "code": "grade_is_h_m_or_l",
    "message": "Grade must be H, M or L",
    "columns": ["grade"],
    "severity": "error",
    "failing_rows": 1,
    "row_numbers": [2],
}
WARNING_FAILURE = {
    "code": "value_within_usual_range",
    "message": "Value is far from last quarter's",
    "columns": ["value"],
    "severity": "warning",
    "failing_rows": 1,
    "row_numbers": [1],
}


def outbox(engine: Engine) -> dict[str, dict]:
    """Every outbox row by key: kind, feed, period, recipients, cc, subject, state."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT key, kind, feed_id, period_id, recipients, cc, subject, state FROM ops.notifications")
        ).mappings()
        return {row["key"]: dict(row) for row in rows}


def days(start: dt.date, end: dt.date) -> Iterable[dt.date]:
    """Every day from ``start`` to ``end`` inclusive."""
    day = start
    while day <= end:
        yield day
        day += dt.timedelta(days=1)
