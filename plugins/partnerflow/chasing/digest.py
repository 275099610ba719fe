"""The officer's weekly digest: who has sent what, for each feed's current period and the one before.

For every feed, each of the two periods gets one status (on time, late, missing, rejected, received and
being checked, or not due yet), the working days late, whether the accepted version had warnings, and who
was chased and on which day. A short "coming up" list names the due dates, escalations and Board dates of
the week ahead. The digest goes to the officer once per ISO week (its outbox key is the week).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from partnerflow.chasing.ladder import ladder_days
from partnerflow.core.clock import LONDON
from partnerflow.core.config import Feed, Partnership
from partnerflow.core.periods import Period, board_meetings, schedule, working_days_between
from partnerflow.notify import messages
from partnerflow.notify.outbox import Message, enqueue
from partnerflow.warehouse import ledger

log = logging.getLogger(__name__)

ON_TIME, LATE, MISSING, REJECTED, RECEIVED, NOT_DUE = (
    "on time",
    "late",
    "missing",
    "rejected",
    "received, being checked",
    "not due yet",
)
LOOK_AHEAD_DAYS = 7

STAGE_NAMES = {
    messages.ADVANCE_REMINDER: "advance reminder",
    messages.DUE_REMINDER: "due-day reminder",
    messages.OVERDUE_REMINDER: "overdue reminder",
    messages.STILL_FAILING: "still-not-accepted notice",
    messages.ESCALATION: "escalation",
}
DELIVERY = {"sent": "sent", "pending": "waiting to send", "blocked": "not sent (allow-list)", "dead": "not delivered"}


@dataclass(frozen=True)
class Chase:
    """One message of the ladder: what, to whom (by role), on which ladder day, and whether it went."""

    what: str
    to: str
    on: dt.date
    delivery: str


@dataclass(frozen=True)
class DigestCell:
    """Where one feed's return for one period stands."""

    period: Period
    due: dt.date
    status: str
    days_late: int
    published_on: dt.date | None
    with_warnings: bool
    versions_rejected: int
    chased: tuple[Chase, ...]

    @property
    def status_text(self) -> str:
        """``Late by 2 working days (accepted with warnings)``: the status as the officer reads it."""
        text = self.status.capitalize()
        working_days = f"{self.days_late} working day{'s' if self.days_late != 1 else ''}"
        if self.status == LATE:
            text += f" by {working_days}"
        elif self.days_late and self.status in (MISSING, REJECTED):
            text += f", {working_days} late"
        if self.status == NOT_DUE:
            text += f" (due {self.due:%a} {self.due.day} {self.due:%b})"
        if self.with_warnings:
            text += " (accepted with warnings)"
        return text


@dataclass(frozen=True)
class DigestRow:
    """One feed: its current period and the previous one, side by side."""

    feed: Feed
    partner: str
    current: DigestCell
    previous: DigestCell


@dataclass(frozen=True)
class ComingUp:
    on: dt.date
    what: str


def matrix(engine: Engine, partnership: Partnership, *, as_of: dt.date) -> list[DigestRow]:
    """Every feed's current and previous period as of ``as_of``."""
    rows = []
    with engine.connect() as conn:
        for feed in partnership.feeds:
            current = schedule(partnership, feed).collecting_period(as_of)
            rows.append(
                DigestRow(
                    feed=feed,
                    partner=partnership.partner(feed.partner).name,
                    current=_cell(conn, partnership, feed, current, as_of),
                    previous=_cell(conn, partnership, feed, current.previous(), as_of),
                )
            )
    return rows


def coming_up(partnership: Partnership, rows: list[DigestRow], *, as_of: dt.date) -> list[ComingUp]:
    """Due dates and escalations of returns not yet in, and Board dates, in the week from ``as_of``."""
    until = as_of + dt.timedelta(days=LOOK_AHEAD_DAYS - 1)
    events: list[ComingUp] = []
    for row in rows:
        cell = row.current
        if cell.status in (ON_TIME, LATE):
            continue
        days = ladder_days(schedule(partnership, row.feed).ladder, cell.due)
        what = f"{row.feed.title} for {cell.period.short_label}"
        events.append(ComingUp(cell.due, f"{what} due"))
        events.append(ComingUp(days[messages.ESCALATION], f"{what}: escalation to the senior lead if still not in"))
    for meeting in board_meetings(partnership):
        meeting_day = f"{meeting.meeting:%a} {meeting.meeting.day} {meeting.meeting:%b}"
        events.append(ComingUp(meeting.pack_due, f"Board pack due (meeting on {meeting_day})"))
        events.append(ComingUp(meeting.meeting, "Board meeting"))
    return sorted((e for e in events if as_of <= e.on <= until), key=lambda e: (e.on, e.what))


def build(engine: Engine, partnership: Partnership, *, as_of: dt.date) -> Message:
    """The digest email for the week containing ``as_of``."""
    rows = matrix(engine, partnership, as_of=as_of)
    week_of = as_of - dt.timedelta(days=as_of.weekday())
    return messages.weekly_digest(
        partnership,
        week_of=week_of,
        as_of=as_of,
        rows=rows,
        coming_up=coming_up(partnership, rows, as_of=as_of),
        returns_in=sum(row.current.status in (ON_TIME, LATE) for row in rows),
        returns_expected=len(rows),
    )


def send_weekly_digest(engine: Engine, partnership: Partnership, *, as_of: dt.date) -> str | None:
    """Put this week's digest in the outbox; its key if new, None if this week's was already there."""
    message = build(engine, partnership, as_of=as_of)
    with engine.begin() as conn:
        new = enqueue(conn, message)
    log.info("weekly digest %s: %s", message.key, "enqueued" if new else "already sent this week")
    return message.key if new else None


_SLICE = sa.text(
    """
    SELECT s.state, s.due_date, s.published_at,
           EXISTS (
               SELECT 1 FROM ops.validation_reports v, jsonb_array_elements(v.report -> 'failures') f
               WHERE v.file_id = s.published_file_id AND f ->> 'severity' = 'warning'
           ) AS with_warnings
    FROM ops.submissions s
    WHERE s.feed_id = :feed_id AND s.period_id = :period_id
    """
)

_CHASED = sa.text(
    """
    SELECT l.stage, l.as_of, n.state, n.recipients, n.cc
    FROM ops.ladder_steps l
    JOIN ops.notifications n ON n.key = l.notification_key
    WHERE l.feed_id = :feed_id AND l.period_id = :period_id AND l.outcome = 'sent'
    ORDER BY l.as_of, l.decided_at
    """
)


def _cell(conn: Connection, partnership: Partnership, feed: Feed, period: Period, as_of: dt.date) -> DigestCell:
    params = {"feed_id": feed.id, "period_id": period.id}
    submission = conn.execute(_SLICE, params).mappings().first()
    files = ledger.file_counts(conn, feed_id=feed.id, period_id=period.id)
    due = submission["due_date"] if submission else schedule(partnership, feed).due_date(period)
    published_on = None
    if submission and submission["state"] == "published":
        published_on = submission["published_at"].astimezone(LONDON).date()
        days_late = max(working_days_between(due, published_on), 0)
        status = LATE if days_late else ON_TIME
    else:
        days_late = max(working_days_between(due, as_of), 0)
        if files.waiting:
            status = RECEIVED
        elif submission and submission["state"] == "rejected":
            status = REJECTED
        else:
            status = MISSING if as_of > due else NOT_DUE
    return DigestCell(
        period=period,
        due=due,
        status=status,
        days_late=days_late,
        published_on=published_on,
        with_warnings=bool(submission and submission["with_warnings"]),
        versions_rejected=files.rejected,
        chased=tuple(_chases(conn, partnership, feed, params)),
    )


def _chases(conn: Connection, partnership: Partnership, feed: Feed, params: dict[str, str]) -> list[Chase]:
    partner = partnership.partner(feed.partner)
    roles = {
        partner.contact.email: "data contact",
        partner.senior_lead.email: "senior lead",
        partnership.officer.email: "officer",
    }
    chases = []
    for row in conn.execute(_CHASED, params).mappings():
        to = " and ".join(roles.get(address, "another address") for address in row["recipients"])
        if row["cc"]:
            to += ", " + " and ".join(roles.get(address, "another address") for address in row["cc"]) + " copied"
        chases.append(
            Chase(
                what=STAGE_NAMES.get(row["stage"], row["stage"]),
                to=to,
                on=row["as_of"],
                delivery=DELIVERY.get(row["state"], row["state"]),
            )
        )
    return chases
