"""The officer's weekly digest: who has sent what, for each feed's current period and the one before.

For every feed, each of the two periods gets the one status ``warehouse.status`` decides (on time, late,
overdue, rejected with its rules and when the partner was told, received and being checked, or not due
yet; superseded versions and near-miss uploads), and who was chased and on which day. The digest leads
with what needs attention (overdue, rejected, near misses); periods before go-live are left out. A short
"coming up" list names the due dates, escalations and Board dates of the week ahead. The digest goes to
the officer once per ISO week (its outbox key is the week).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from partnerflow.chasing.ladder import ladder_days
from partnerflow.core.config import Feed, Partnership
from partnerflow.core.periods import Period, board_meetings, schedule
from partnerflow.notify import messages
from partnerflow.notify.outbox import Message, enqueue
from partnerflow.warehouse import status

log = logging.getLogger(__name__)

ON_TIME, LATE, OVERDUE, REJECTED, RECEIVED, NOT_DUE = (
    status.ON_TIME,
    status.LATE,
    status.OVERDUE,
    status.REJECTED,
    status.RECEIVED,
    status.NOT_DUE,
)
MISSING = OVERDUE  # the digest's older word for it
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
    """Where one feed's return for one period stands (``warehouse.status`` decides), and who was chased."""

    period: Period
    ret: status.ReturnStatus
    chased: tuple[Chase, ...]

    @property
    def due(self) -> dt.date:
        return self.ret.due_date

    @property
    def status(self) -> str:
        return self.ret.status

    @property
    def days_late(self) -> int:
        return self.ret.days_late

    @property
    def published_on(self) -> dt.date | None:
        return self.ret.published_on

    @property
    def with_warnings(self) -> bool:
        return self.ret.with_warnings

    @property
    def versions_rejected(self) -> int:
        return self.ret.versions_rejected

    @property
    def needs_attention(self) -> bool:
        return self.ret.needs_attention

    @property
    def status_text(self) -> str:
        """``Late by 2 working days (accepted with warnings)``: the status as the officer reads it."""
        return self.ret.summary


@dataclass(frozen=True)
class DigestRow:
    """One feed: its current period and the previous one, side by side."""

    feed: Feed
    partner: str
    current: DigestCell
    previous: DigestCell | None  # None when that period ended before the partnership's go-live

    @property
    def cells(self) -> tuple[DigestCell, ...]:
        return (self.current,) if self.previous is None else (self.current, self.previous)

    @property
    def needs_attention(self) -> bool:
        return any(cell.needs_attention for cell in self.cells)


@dataclass(frozen=True)
class ComingUp:
    on: dt.date
    what: str


def matrix(engine: Engine, partnership: Partnership, *, as_of: dt.date) -> list[DigestRow]:
    """Every feed's current and previous period as of ``as_of`` (the previous one only from go-live)."""
    wanted: list[tuple[Feed, Period]] = []
    for feed in partnership.feeds:
        current = schedule(partnership, feed).collecting_period(as_of)
        wanted += [(feed, current), (feed, current.previous())]
    with engine.connect() as conn:
        found = {(r.feed_id, r.period_id): r for r in status.returns(conn, partnership, as_of=as_of, slices=wanted)}
        rows = []
        for feed in partnership.feeds:
            current = schedule(partnership, feed).collecting_period(as_of)
            cells = [
                DigestCell(period=p, ret=found[(feed.id, p.id)], chased=tuple(_chases(conn, partnership, feed, p)))
                if (feed.id, p.id) in found
                else None
                for p in (current, current.previous())
            ]
            if cells[0] is None:
                continue  # the period being collected ended before go-live: nothing to say yet
            rows.append(
                DigestRow(
                    feed=feed,
                    partner=partnership.partner(feed.partner).name,
                    current=cells[0],
                    previous=cells[1],
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
    attention = [row for row in rows if row.needs_attention]
    week_of = as_of - dt.timedelta(days=as_of.weekday())
    return messages.weekly_digest(
        partnership,
        week_of=week_of,
        as_of=as_of,
        rows=attention + [row for row in rows if not row.needs_attention],
        attention=[(row, cell) for row in attention for cell in row.cells if cell.needs_attention],
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


_CHASED = sa.text(
    """
    SELECT l.stage, l.as_of, n.state, n.recipients, n.cc
    FROM ops.ladder_steps l
    JOIN ops.notifications n ON n.key = l.notification_key
    WHERE l.feed_id = :feed_id AND l.period_id = :period_id AND l.outcome = 'sent'
    ORDER BY l.as_of, l.decided_at
    """
)


def _chases(conn: Connection, partnership: Partnership, feed: Feed, period: Period) -> list[Chase]:
    params = {"feed_id": feed.id, "period_id": period.id}
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
