"""The reminder ladder: who gets chased, and when, for each feed's returns.

For each feed, relative to a return's due date (working days from the feed's ``calendar.ladder``, else the
partnership's):

    advance reminder   due - advance_working_days        to the partner contact, if nothing has arrived
    still failing      due - still_failing_working_days  to the partner contact, cc the officer, if the
                       (or any day after)                 latest version was rejected
    due-day reminder   due                               to the partner contact
    overdue reminder   due + overdue_working_days        to the partner contact, cc the officer
    escalation         due + escalation_working_days     to the partner's senior lead, cc the officer

Each stage of a feed x period is decided once and recorded in ``ops.ladder_steps``: sent (with its outbox
key, written in the same transaction) or skipped (and why). A run acts "as of" a day; whatever it finds
already decided it leaves alone, so reruns, backfills and the clock changes of BST/GMT send nothing twice.

- When a run finds several partner-contact reminders due at once (no run for a while), only the latest is
  sent and the earlier ones are recorded as overtaken; an escalation goes to a different person and is sent
  whenever it is reached.
- A run for a past day (a backfill) leaves partner-contact reminders that today's run would overtake to
  today's run, so nobody gets a stale "due in 5 days" email.
- A still-failing notice sent in the same run as a due-day or overdue reminder takes its place.
- The ladder stops once the return is published, and pauses while a version is waiting for a decision
  (received, or failed on partnerflow's side: that is the engineers' to fix, not the partner's).

Periods: a feed's collecting period (the latest that has ended; its ``ops.submissions`` row is created on
the first run after it ends), and any earlier period the ladder already knows (it has that row) whose
ladder is still open: from its advance day to ``CATCH_UP_WORKING_DAYS`` after its escalation day. So a
monthly feed's escalation is not lost when the next month ends, and a new feed or deployment does not
escalate last period's return out of the blue. The due date is the one in ``ops.submissions``, so an
extension agreed with a partner is honoured by updating that row.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from partnerflow.core import clock, metrics
from partnerflow.core.config import Feed, Ladder, Partnership
from partnerflow.core.periods import (
    FeedSchedule,
    Period,
    add_working_days,
    after_go_live,
    iso_day,
    schedule,
    working_days_between,
)
from partnerflow.notify import messages
from partnerflow.notify.outbox import Message, enqueue
from partnerflow.warehouse import ledger

log = logging.getLogger(__name__)

ADVANCE, DUE, OVERDUE = messages.ADVANCE_REMINDER, messages.DUE_REMINDER, messages.OVERDUE_REMINDER
STILL_FAILING, ESCALATION = messages.STILL_FAILING, messages.ESCALATION
CONTACT_STAGES = (ADVANCE, DUE, OVERDUE)
CATCH_UP_WORKING_DAYS = 10
MAX_PERIODS_BACK = 13
SENT, SKIPPED = "sent", "skipped"
SCHEDULED_RUN_TYPES = ("scheduled", "backfill")

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

_STORED_DUE_DATES = sa.text(
    """
    SELECT period_id, due_date FROM ops.submissions
    WHERE feed_id = :feed_id AND state <> 'published' AND due_date BETWEEN :earliest AND :latest
    """
)

_DECIDED = sa.text(
    "SELECT stage, outcome, as_of FROM ops.ladder_steps WHERE feed_id = :feed_id AND period_id = :period_id"
)

_RECORD = sa.text(
    """
    INSERT INTO ops.ladder_steps (feed_id, period_id, stage, as_of, outcome, reason, notification_key, decided_at)
    VALUES (:feed_id, :period_id, :stage, :as_of, :outcome, :reason, :key, :decided_at)
    ON CONFLICT (feed_id, period_id, stage) DO NOTHING
    """
)


def ladder_days(ladder: Ladder, due: dt.date) -> dict[str, dt.date]:
    """The day each stage of the ladder falls on, for a return due on ``due``."""
    return {
        ADVANCE: add_working_days(due, -ladder.advance_working_days),
        STILL_FAILING: add_working_days(due, -ladder.still_failing_working_days),
        DUE: due,
        OVERDUE: add_working_days(due, ladder.overdue_working_days),
        ESCALATION: add_working_days(due, ladder.escalation_working_days),
    }


def chase_window(ladder: Ladder, due: dt.date) -> tuple[dt.date, dt.date]:
    """The first and last day the ladder acts for a return due on ``due``."""
    days = ladder_days(ladder, due)
    return min(days.values()), add_working_days(days[ESCALATION], CATCH_UP_WORKING_DAYS)


def periods_to_chase(sched: FeedSchedule, as_of: dt.date) -> list[Period]:
    """The feed's collecting period, and earlier ones whose ladder (by the calendar's due dates) is still open
    on ``as_of``, newest first."""
    collecting = period = sched.collecting_period(as_of)
    found = []
    for _ in range(MAX_PERIODS_BACK):
        first, last = chase_window(sched.ladder, sched.due_date(period))
        if last < as_of and period != collecting:
            break
        if first <= as_of <= last or period == collecting:
            found.append(period)
        period = period.previous()
    return found


def run_ladder(engine: Engine, partnership: Partnership, *, as_of: dt.date, today: dt.date | None = None) -> list[str]:
    """Chase every feed's open returns as of ``as_of``; return the outbox keys enqueued by this run.

    ``today`` (default: the clock's date in London) tells a backfill from a run for the current day.
    """
    today = today or clock.today()
    enqueued: list[str] = []
    for feed in partnership.feeds:
        agreement = partnership.partner(feed.partner).agreement
        if not agreement.in_force(as_of):
            log.info("ladder: %s skipped, data-sharing agreement %s not in force", feed.id, agreement.reference)
            continue
        sched = schedule(partnership, feed)
        with engine.connect() as conn:
            periods = _with_extended_due_dates(conn, sched, feed, periods_to_chase(sched, as_of), as_of)
        collecting = sched.collecting_period(as_of)
        chased = []
        for period in periods:
            if not after_go_live(partnership, period):
                log.info("ladder: %s %s ended before go-live; not chasing", feed.id, period.id)
                continue
            chased.append(period.id)
            with engine.begin() as conn:
                enqueued += _chase(
                    conn, partnership, feed, sched, period, as_of=as_of, today=today, start=period == collecting
                )
        if as_of == today:  # a backfill's view of the deadlines is not today's
            with engine.connect() as conn:
                due = _next_due(conn, sched, feed, chased, collecting)
            metrics.gauge("working_days_to_due", feed.id, working_days_between(as_of, due))
    if enqueued:
        log.info("ladder as of %s: enqueued %s", as_of, ", ".join(enqueued))
    return enqueued


_OLDEST_OPEN_DUE = sa.text(
    "SELECT min(due_date) FROM ops.submissions"
    " WHERE feed_id = :feed_id AND state <> 'published' AND period_id = ANY(:period_ids)"
)


def _next_due(conn: Connection, sched: FeedSchedule, feed: Feed, chased: list[str], collecting: Period) -> dt.date:
    """The due date of the feed's oldest return still open among those chased; when every one is in, the
    next period's."""
    oldest = conn.execute(_OLDEST_OPEN_DUE, {"feed_id": feed.id, "period_ids": chased}).scalar_one()
    return oldest if oldest is not None else sched.due_date(collecting.next())


def run_day(
    conf: Mapping[str, Any] | None, *, logical_date: dt.datetime | None, run_type: str | None
) -> dt.date | None:
    """The day a deadlines or digest DAG run acts for.

    ``conf["as_of"]`` when given (reruns, backfills by hand, the demo); for a scheduled run, its logical date
    in London (so a run that starts late, or is re-run, still acts for its own day, and each day is one
    day across BST/GMT); otherwise the clock's date. None when a scheduled run must not act: outside
    production with partnerflow's clock pinned (the demo, tests), the clock and not Airflow's calendar
    says what day it is.
    """
    if conf and conf.get("as_of"):
        return iso_day(conf["as_of"], 'the DAG run conf "as_of"')
    if run_type in SCHEDULED_RUN_TYPES and logical_date is not None:
        if not clock.production() and clock.clock_file().exists():
            return None
        return logical_date.astimezone(clock.LONDON).date()
    return clock.today()


def _with_extended_due_dates(
    conn: Connection, sched: FeedSchedule, feed: Feed, periods: list[Period], as_of: dt.date
) -> list[Period]:
    """Add unpublished periods whose stored (extended) due date puts their ladder around ``as_of``."""
    ladder = sched.ladder
    earliest = add_working_days(as_of, -(ladder.escalation_working_days + CATCH_UP_WORKING_DAYS))
    latest = add_working_days(as_of, ladder.advance_working_days)
    rows = conn.execute(_STORED_DUE_DATES, {"feed_id": feed.id, "earliest": earliest, "latest": latest})
    extra = []
    for period_id, due in rows:
        try:
            period = sched.period(period_id)
        except ValueError:
            continue  # a period of another kind, from before the feed's calendar changed
        first, last = chase_window(ladder, due)
        if first <= as_of <= last and period not in periods:
            extra.append(period)
    return periods + sorted(extra, reverse=True)


def _chase(
    conn: Connection,
    partnership: Partnership,
    feed: Feed,
    sched: FeedSchedule,
    period: Period,
    *,
    as_of: dt.date,
    today: dt.date,
    start: bool,
) -> list[str]:
    """Decide the stages of one feed x period. ``start``: the period may be new to the ladder (the collecting
    period); an earlier period is only chased if the ladder already knew it, so a new feed or a new
    deployment does not escalate returns nobody was ever reminded of."""
    params = {"feed_id": feed.id, "period_id": period.id}
    if start:
        conn.execute(_ENSURE_SUBMISSION, {**params, "due_date": sched.due_date(period)})
    row = conn.execute(_LOCK_SUBMISSION, params).first()
    if row is None:
        return []
    state, due = row
    if state == "published":
        return []
    if ledger.file_counts(conn, feed_id=feed.id, period_id=period.id).waiting:
        log.info("ladder: %s %s has a version waiting for a decision; not chasing", feed.id, period.id)
        return []
    days = ladder_days(sched.ladder, due)
    decided = {row.stage: row for row in conn.execute(_DECIDED, params)}
    skips: dict[str, str] = {}
    sends: list[str] = []

    contact = [stage for stage in CONTACT_STAGES if days[stage] <= as_of and stage not in decided]
    if state == "rejected" and ADVANCE in contact:
        skips[ADVANCE] = "a version had already arrived"
        contact.remove(ADVANCE)
    if contact:
        latest = contact[-1]
        latest_today = [stage for stage in CONTACT_STAGES if days[stage] <= max(as_of, today)][-1]
        if latest != latest_today:
            log.info("ladder: %s %s as of %s leaves the %s stage to today's run", feed.id, period.id, as_of, latest)
        else:
            skips.update({stage: f"overtaken by {latest}" for stage in contact[:-1]})
            sends.append(latest)
    if state == "rejected" and STILL_FAILING not in decided and days[STILL_FAILING] <= as_of:
        for stage in (DUE, OVERDUE):
            if stage in sends:
                sends.remove(stage)
                skips[stage] = "covered by the still-failing notice sent the same day"
        sends.append(STILL_FAILING)
    if ESCALATION not in decided and days[ESCALATION] <= as_of:
        sends.append(ESCALATION)

    for stage, reason in skips.items():
        _record(conn, params, stage, as_of=as_of, outcome=SKIPPED, reason=reason)
    enqueued = []
    reminded_on = [row.as_of for row in decided.values() if row.outcome == SENT]
    for stage in sends:
        message = _message(conn, partnership, feed, period, stage, due=due, as_of=as_of, reminded_on=reminded_on)
        reminded_on.append(as_of)
        if enqueue(conn, message):
            enqueued.append(message.key)
        _record(conn, params, stage, as_of=as_of, outcome=SENT, key=message.key)
    return enqueued


def _record(
    conn: Connection,
    params: Mapping[str, str],
    stage: str,
    *,
    as_of: dt.date,
    outcome: str,
    reason: str | None = None,
    key: str | None = None,
) -> None:
    values = {"stage": stage, "as_of": as_of, "outcome": outcome, "reason": reason, "key": key}
    conn.execute(_RECORD, {**params, **values, "decided_at": clock.now()})


def _message(
    conn: Connection,
    partnership: Partnership,
    feed: Feed,
    period: Period,
    stage: str,
    *,
    due: dt.date,
    as_of: dt.date,
    reminded_on: list[dt.date],
) -> Message:
    if stage == ADVANCE:
        return messages.advance_reminder(partnership, feed, period, due=due, as_of=as_of)
    if stage == DUE:
        return messages.due_reminder(partnership, feed, period, due=due, as_of=as_of)
    if stage == OVERDUE:
        return messages.overdue_reminder(partnership, feed, period, due=due, as_of=as_of)
    if stage == ESCALATION:
        return messages.escalation(partnership, feed, period, due=due, as_of=as_of, reminded_on=reminded_on)
    latest = ledger.latest_rejection(conn, feed_id=feed.id, period_id=period.id)
    return messages.still_failing(
        partnership,
        feed,
        period,
        due=due,
        as_of=as_of,
        source_name=latest["source_name"],
        received_on=latest["received_at"].astimezone(clock.LONDON).date(),
        versions_rejected=latest["versions"],
        checks_failed=latest["checks_failed"],
    )
