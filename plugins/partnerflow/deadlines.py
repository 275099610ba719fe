"""The reminder ladder: who gets chased, and when, for each feed's return of the collecting period.

For each feed, relative to the return's due date (working days from ``calendar.ladder``):

    advance reminder   due - advance_working_days     to the partner contact
    due-day reminder   due                            to the partner contact
    overdue reminder   due + overdue_working_days     to the partner contact, cc the officer
    escalation         due + escalation_working_days  to the partner's senior lead, cc the officer

A stage is enqueued on the first run on or after its day, and its outbox key stops it ever being sent
twice, so a missed day catches up once and rerunning a past day sends nothing new. When a run catches up
over several partner-contact stages at once, only the latest is sent (an advance reminder after the due
date would be wrong); the escalation goes to a different person and is sent whenever it is reached. The
ladder stops once the return is published.

The due date is the one stored in ``ops.submissions`` (created from the calendar when missing), so an
extension agreed with a partner is honoured by updating that row.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from partnerflow.calendar import Period, add_working_days, collecting_period, due_date
from partnerflow.config import Feed, Partnership
from partnerflow.notify import messages
from partnerflow.notify.outbox import Message, enqueue, message_key

log = logging.getLogger(__name__)

Builder = Callable[..., Message]

_BUILDERS: dict[str, Builder] = {
    messages.ADVANCE_REMINDER: messages.advance_reminder,
    messages.DUE_REMINDER: messages.due_reminder,
    messages.OVERDUE_REMINDER: messages.overdue_reminder,
    messages.ESCALATION: messages.escalation,
}

_ENSURE_SUBMISSION = sa.text(
    """
    INSERT INTO ops.submissions (feed_id, period_id, due_date)
    VALUES (:feed_id, :period_id, :due_date)
    ON CONFLICT (feed_id, period_id) DO NOTHING
    """
)

# FOR UPDATE: a publish committing at the same moment is seen before deciding to chase.
_LOCK_SUBMISSION = sa.text(
    """
    SELECT state, due_date FROM ops.submissions
    WHERE feed_id = :feed_id AND period_id = :period_id
    FOR UPDATE
    """
)

_EXISTING_KEYS = sa.text("SELECT key FROM ops.notifications WHERE key = ANY(:keys)")


def ladder_days(partnership: Partnership, due: dt.date) -> dict[str, dt.date]:
    """The day each stage of the ladder falls on, for a return due on ``due``."""
    ladder = partnership.calendar.ladder
    return {
        messages.ADVANCE_REMINDER: add_working_days(due, -ladder.advance_working_days),
        messages.DUE_REMINDER: due,
        messages.OVERDUE_REMINDER: add_working_days(due, ladder.overdue_working_days),
        messages.ESCALATION: add_working_days(due, ladder.escalation_working_days),
    }


def stages_reached(partnership: Partnership, due: dt.date, as_of: dt.date) -> list[str]:
    """The stages to have sent by ``as_of`` for an unpublished return: the latest partner-contact reminder
    reached, and the escalation once reached."""
    days = ladder_days(partnership, due)
    contact_stages = (messages.ADVANCE_REMINDER, messages.DUE_REMINDER, messages.OVERDUE_REMINDER)
    reached = [kind for kind in contact_stages if days[kind] <= as_of][-1:]
    if days[messages.ESCALATION] <= as_of:
        reached.append(messages.ESCALATION)
    return reached


def run_ladder(engine: Engine, partnership: Partnership, *, as_of: dt.date) -> list[str]:
    """Chase every feed's return for the period being collected on ``as_of``; return the keys enqueued now."""
    period = collecting_period(as_of)
    enqueued: list[str] = []
    for feed in partnership.feeds:
        agreement = partnership.partner(feed.partner).agreement
        if not agreement.in_force(as_of):
            log.info("ladder: %s skipped, data-sharing agreement %s not in force", feed.id, agreement.reference)
            continue
        with engine.begin() as conn:
            enqueued += _chase(conn, partnership, feed, period, as_of)
    if enqueued:
        log.info("ladder for %s as of %s: enqueued %s", period.id, as_of, ", ".join(enqueued))
    return enqueued


def _chase(conn: Connection, partnership: Partnership, feed: Feed, period: Period, as_of: dt.date) -> list[str]:
    params = {"feed_id": feed.id, "period_id": period.id}
    conn.execute(_ENSURE_SUBMISSION, {**params, "due_date": due_date(partnership, feed, period)})
    state, due = conn.execute(_LOCK_SUBMISSION, params).one()
    if state == "published":
        return []
    kinds = stages_reached(partnership, due, as_of)
    keys = {kind: message_key(kind, feed.id, period.id) for kind in kinds}
    existing = set(conn.execute(_EXISTING_KEYS, {"keys": list(keys.values())}).scalars()) if keys else set()
    enqueued = []
    for kind in kinds:
        if keys[kind] in existing:
            continue
        builder = _BUILDERS[kind]
        message = (
            builder(partnership, feed, period, due=due)
            if kind == messages.DUE_REMINDER
            else builder(partnership, feed, period, due=due, as_of=as_of)
        )
        if enqueue(conn, message):
            enqueued.append(message.key)
    return enqueued
