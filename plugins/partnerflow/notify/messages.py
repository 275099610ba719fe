"""The emails partnerflow sends, built from the templates in ``notify/templates``.

Each builder returns a ``Message`` with a deterministic key, a short specific subject, an HTML part (a
shared accessible layout) and a plain-text part. Nothing here ever puts a row value in an email: a
rejection report is read through a whitelist of fields (rule code, plain message, column names, counts,
row numbers), so whatever else a report carries never reaches the template.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, TypeGuard

import jinja2
from markupsafe import Markup

from partnerflow.core import wording
from partnerflow.core.clock import LONDON
from partnerflow.core.config import Feed, Partnership
from partnerflow.core.periods import (
    Period,
    add_working_days,
    board_meetings,
    due_date,
    schedule,
    working_days_between,
)
from partnerflow.core.spreadsheet import spreadsheet_safe
from partnerflow.notify.outbox import Attachment, Message, message_key

TEMPLATES_DIR = Path(__file__).with_name("templates")
ROW_NUMBERS_SHOWN = 20
CSV_MIME_TYPE = "text/csv"

RECEIPT = "receipt"
REJECTION = "rejection"
ADVANCE_REMINDER = "reminder-advance"
DUE_REMINDER = "reminder-due"
OVERDUE_REMINDER = "reminder-overdue"
ESCALATION = "escalation"
STILL_FAILING = "still-failing"
BOARD_PACK = "board-pack"
FAILURE_ALERT = "failure"
WEEKLY_DIGEST = "weekly-digest"
NEAR_MISS = "near-miss"
INCIDENT = "incident"
INCIDENT_RECOVERY = "incident-recovery"
DELIVERY_PROBLEM = "delivery-problem"
LADDER_KINDS = (ADVANCE_REMINDER, DUE_REMINDER, OVERDUE_REMINDER, STILL_FAILING, ESCALATION)

_SAFE_CODE = re.compile(r"^[A-Za-z0-9_.\-]{1,80}$")
_SAFE_COLUMN = re.compile(r"^[A-Za-z0-9_ .\-]{1,64}$")
_MESSAGE_MAX = 300
_SOURCE_NAME_MAX = 120


@dataclass(frozen=True)
class RuleFailure:
    """One failed contract rule as an email may show it: no values, only names, counts and row numbers."""

    code: str
    message: str
    columns: tuple[str, ...]
    severity: str
    failing_rows: int
    row_numbers: tuple[int, ...]

    @property
    def shown_rows(self) -> tuple[int, ...]:
        return self.row_numbers[:ROW_NUMBERS_SHOWN]

    @property
    def more_rows(self) -> int:
        """How many failing rows the email body does not list."""
        return max(self.failing_rows, len(self.row_numbers)) - len(self.shown_rows)


def receipt(
    partnership: Partnership,
    feed: Feed,
    period: Period,
    *,
    file_id: int,
    source_name: str,
    rows: int,
    warnings: Sequence[Mapping[str, Any] | str] = (),
    notes: Sequence[Mapping[str, Any]] = (),
) -> Message:
    """The partner contact's receipt: the return arrived, passed its checks and is published.

    ``warnings`` are failures of warning-severity rules (report failure dicts) or short plain sentences.
    ``notes`` are intake's notes on how the file was read (severity "info" report entries).
    """
    partner = partnership.partner(feed.partner)
    read_notes = [_rule_failure(n) for n in notes]
    warning_failures = [_rule_failure(w) for w in warnings if isinstance(w, Mapping)]
    warning_notes = [w for w in warnings if isinstance(w, str)]
    subject = f"{partnership.short_name}: {feed.title} for {_quarter(period)} received – {wording.count(rows, 'row')}"
    return _build(
        partnership,
        kind=RECEIPT,
        key=message_key(RECEIPT, feed.id, period.id, file=file_id),
        feed_id=feed.id,
        period_id=period.id,
        recipients=(partner.contact.email,),
        cc=(),
        subject=subject,
        template="receipt",
        context={
            "partner": partner,
            "feed": feed,
            "period": period,
            "source_name": _short(source_name, _SOURCE_NAME_MAX),
            "rows": rows,
            "warning_failures": warning_failures,
            "warning_notes": warning_notes,
            "read_notes": read_notes,
        },
    )


def rejection(
    partnership: Partnership,
    feed: Feed,
    period: Period,
    *,
    file_id: int,
    source_name: str,
    report: Mapping[str, Any],
    due: dt.date,
) -> Message:
    """The rejection report to the partner contact (cc the officer), with a CSV of every failing row number."""
    partner = partnership.partner(feed.partner)
    failures = [_rule_failure(f) for f in report.get("failures", ())]
    errors = [f for f in failures if f.severity == "error"]
    warnings = [f for f in failures if f.severity == "warning"]
    read_notes = [f for f in failures if f.severity == "info"]
    rules_checked = _non_negative_int(report.get("rules_checked"))
    rows_checked = _non_negative_int(report.get("rows_checked"))
    failed = len(errors) or len(warnings)
    checks = (
        f"{failed} of {rules_checked} checks failed" if rules_checked else wording.count(failed, "check") + " failed"
    )
    subject = f"{partnership.short_name}: {feed.title} for {_quarter(period)} not accepted – {checks}"
    csv_name = f"rejection-{feed.id}-{period.id}.csv"
    return _build(
        partnership,
        kind=REJECTION,
        key=message_key(REJECTION, feed.id, period.id, file=file_id),
        feed_id=feed.id,
        period_id=period.id,
        recipients=(partner.contact.email,),
        cc=(partnership.officer.email,),
        subject=subject,
        template="rejection",
        context={
            "partner": partner,
            "feed": feed,
            "period": period,
            "source_name": _short(source_name, _SOURCE_NAME_MAX),
            "errors": errors,
            "warnings": warnings,
            "read_notes": read_notes,
            "rules_checked": rules_checked,
            "rows_checked": rows_checked,
            "due": due,
            "csv_name": csv_name,
            "csv_rows": sum(len(f.row_numbers) for f in failures),
        },
        attachments=(Attachment(filename=csv_name, content=_rejection_csv(failures), mime_type=CSV_MIME_TYPE),),
    )


def near_miss(
    partnership: Partnership,
    feed: Feed,
    period: Period,
    *,
    source_name: str,
    reason: str,
    expected_name: str,
    name_digest: str,
) -> Message:
    """To the partner contact, once per file name: a file in their drop was left alone, and the name expected.

    ``name_digest`` stands for the name in the key (a name may hold ``:``), so each name is told once.
    """
    partner = partnership.partner(feed.partner)
    subject = f"{partnership.short_name}: {feed.title} – a file was not taken; please rename it {expected_name}"
    return _build(
        partnership,
        kind=NEAR_MISS,
        key=message_key(NEAR_MISS, feed.id, period.id, name=name_digest),
        feed_id=feed.id,
        period_id=period.id,
        recipients=(partner.contact.email,),
        cc=(),
        subject=_short(subject, 200),
        template="near_miss",
        context={
            "partner": partner,
            "feed": feed,
            "period": period,
            "source_name": _short(source_name, _SOURCE_NAME_MAX),
            "reason": reason,
            "expected_name": expected_name,
        },
    )


def advance_reminder(
    partnership: Partnership, feed: Feed, period: Period, *, due: dt.date, as_of: dt.date | None = None
) -> Message:
    """A friendly note to the partner contact some working days before the due date. ``as_of`` (default:
    the stage's day) sets how many working days away the email says the due date is."""
    return _reminder(partnership, feed, period, due=due, kind=ADVANCE_REMINDER, as_of=as_of)


def due_reminder(
    partnership: Partnership, feed: Feed, period: Period, *, due: dt.date, as_of: dt.date | None = None
) -> Message:
    """The due-day reminder to the partner contact. Sent after the day (a run catching up), it says the
    return was due rather than is due today."""
    return _reminder(partnership, feed, period, due=due, kind=DUE_REMINDER, as_of=as_of)


def overdue_reminder(
    partnership: Partnership, feed: Feed, period: Period, *, due: dt.date, as_of: dt.date | None = None
) -> Message:
    """The overdue reminder to the partner contact, cc the officer. ``as_of`` (default: the stage's day)
    sets how many working days late the email says the return is."""
    return _reminder(partnership, feed, period, due=due, kind=OVERDUE_REMINDER, as_of=as_of)


def escalation(
    partnership: Partnership,
    feed: Feed,
    period: Period,
    *,
    due: dt.date,
    as_of: dt.date | None = None,
    reminded_on: Sequence[dt.date] = (),
) -> Message:
    """The escalation to the partner's senior lead, cc the officer, when a return is seriously late.
    ``reminded_on``: the days the partner's contact was chased, which the email lists."""
    return _reminder(partnership, feed, period, due=due, kind=ESCALATION, as_of=as_of, reminded_on=reminded_on)


def still_failing(
    partnership: Partnership,
    feed: Feed,
    period: Period,
    *,
    due: dt.date,
    as_of: dt.date,
    source_name: str,
    received_on: dt.date,
    versions_rejected: int,
    checks_failed: int,
) -> Message:
    """To the partner contact, cc the officer: the latest version was rejected and the due date is near or
    past. Names the partner's own file and how many checks failed, never a value."""
    partner = partnership.partner(feed.partner)
    late = working_days_between(due, as_of)
    when = f"due {wording.day_in_year(due)}" if late <= 0 else f"{wording.count(late, 'working day')} late"
    subject = f"{partnership.short_name}: {feed.title} for {_quarter(period)} still not accepted – {when}"
    return _build(
        partnership,
        kind=STILL_FAILING,
        key=message_key(STILL_FAILING, feed.id, period.id),
        feed_id=feed.id,
        period_id=period.id,
        recipients=(partner.contact.email,),
        cc=(partnership.officer.email,),
        subject=subject,
        template="still_failing",
        context={
            "partner": partner,
            "feed": feed,
            "period": period,
            "due": due,
            "days_late": max(late, 0),
            "working_days_to_due": max(-late, 0),
            "source_name": _short(source_name, _SOURCE_NAME_MAX),
            "received_on": received_on,
            "versions_rejected": versions_rejected,
            "checks_failed": checks_failed,
            "escalation_day": add_working_days(due, schedule(partnership, feed).ladder.escalation_working_days),
        },
    )


def weekly_digest(
    partnership: Partnership,
    *,
    week_of: dt.date,
    as_of: dt.date,
    rows: Sequence[Any],
    coming_up: Sequence[Any],
    returns_in: int,
    returns_expected: int,
    attention: Sequence[Any] = (),
) -> Message:
    """The officer's weekly digest: the submissions matrix for each feed's current and previous period.

    ``rows`` are ``partnerflow.chasing.digest.DigestRow``; ``attention`` the ``(row, cell)`` pairs that need
    the officer (overdue, rejected, near misses), listed first; ``coming_up`` are ``(date, what)`` pairs.
    """
    year, week, _ = week_of.isocalendar()
    subject = (
        f"{partnership.short_name}: weekly submissions digest, w/c {wording.day_in_year(week_of)} – "
        f"{returns_in} of {returns_expected} current returns in"
    )
    return _build(
        partnership,
        kind=WEEKLY_DIGEST,
        key=message_key(WEEKLY_DIGEST, f"{year}-W{week:02d}"),
        feed_id=None,
        period_id=None,
        recipients=(partnership.officer.email,),
        cc=(),
        subject=subject,
        template="weekly_digest",
        context={
            "week_of": week_of,
            "as_of": as_of,
            "rows": rows,
            "attention": attention,
            "coming_up": coming_up,
            "returns_in": returns_in,
            "returns_expected": returns_expected,
        },
    )


@dataclass(frozen=True)
class Retrying:
    """How partnerflow goes on trying a failed job, from its DAG's retry settings and schedule.

    ``tries``: attempts in one run (the first and its retries), ``first_wait`` to ``longest_wait`` apart;
    ``runs``: when the job runs, in words (``every 30 minutes``); ``next_run``: its next run, if it has a clock.
    """

    tries: int
    first_wait: dt.timedelta
    longest_wait: dt.timedelta
    runs: str
    next_run: dt.datetime | None = None


@dataclass(frozen=True)
class _Job:
    """What a failing DAG is, for people: ``headline`` ends "…"; the return (ingest) or pack it is about."""

    failing: str  # "we can't collect the Q2 2026/27 return"
    working: str  # "we can collect the Q2 2026/27 return again"
    title: str  # "Council referrals and assessments from Blanktown Council Children's Services"
    feed: Feed | None
    period: Period | None


def _job(partnership: Partnership, dag_id: str, task_ids: Sequence[str], period_id: str | None) -> _Job:
    """The plain words for a DAG (``ingest_<feed>``, ``deadlines``, ``weekly_digest``, ``board_pack``)."""
    period = _period_or_none(period_id)
    label = _quarter(period) if period else "this period's"
    feed = next((f for f in partnership.feeds if dag_id == f"ingest_{f.id}"), None)
    if feed is not None:
        period = schedule(partnership, feed).period(period.id) if period else None
        partner = partnership.partner(feed.partner)
        collecting = not task_ids or "fetch" in task_ids
        verb = "collect" if collecting else "check and publish"
        return _Job(
            failing=f"we can't {verb} the {label} return",
            working=f"we can {verb} the {label} return again",
            title=f"{feed.title} from {partner.name}",
            feed=feed,
            period=period,
        )
    if dag_id == "deadlines":
        return _Job("reminders to partners not sent", "reminders to partners going out again", "Reminders", None, None)
    if dag_id == "weekly_digest":
        return _Job(
            "the weekly digest was not sent", "the weekly digest is going out again", "Weekly digest", None, None
        )
    if dag_id == "board_pack":
        built = not task_ids or "build" in task_ids
        return _Job(
            failing=f"Board pack for {label} not {'built' if built else 'sent'}",
            working=f"Board pack for {label} on its way again",
            title="Board pack",
            feed=None,
            period=period,
        )
    return _Job("a partnerflow job is failing", "a partnerflow job works again", "A partnerflow job", None, period)


def _subject(partnership: Partnership, job: _Job, words: str) -> str:
    if job.feed is not None:
        return f"{partnership.short_name}: {job.title} — {words}"
    return f"{partnership.short_name}: {words[0].upper()}{words[1:]}"


def _data_team(partnership: Partnership) -> list[Any]:
    """The people to contact about partnerflow itself: the engineers who are not the officer."""
    return [p for p in partnership.engineers if p.email != partnership.officer.email]


def _board_pack_risk(partnership: Partnership, job: _Job, due: dt.date | None, as_of: dt.date) -> str:
    """One sentence: whether the Board pack is at risk, with its date from the calendar."""
    if job.title == "Weekly digest":
        return "Board pack: not affected."
    after = due if due is not None else as_of
    meeting = next((m for m in board_meetings(partnership) if m.pack_due >= max(after, as_of)), None)
    if meeting is None:
        return "Board pack: no Board meeting is set after this date, so no pack is at risk yet."
    when = (
        f"the pack for the Board meeting on {wording.long_date(meeting.meeting)}, "
        f"due {wording.long_date(meeting.pack_due)}"
    )
    if job.feed is not None:
        return (
            f"Board pack at risk: this return goes into {when}. "
            "If it is still missing then, the pack is built without it."
        )
    if job.title == "Board pack":
        return f"Board pack at risk: {when}."
    return f"Board pack: not directly at risk. The next one is {when}; a return that is not chased in time may miss it."


def incident_alert(
    partnership: Partnership,
    *,
    name: str,
    period_id: str,
    incident_id: int,
    alert_number: int,
    failing: Sequence[str],
    detail: str,
    opened_at: dt.datetime,
    failures: int,
    run_url: str,
    cooldown_hours: float,
    must_act: str | None = None,
    error: str = "",
    error_message: str | None = None,
    retrying: Retrying | None = None,
    partner_must_act: bool = False,
    as_of: dt.date | None = None,
) -> Message:
    """To the engineers, cc the officer: a job is failing for a period (first alert, or still failing after
    the cool-down), in words the officer can act on.

    The subject names the partner and the return (or the reminders, the digest, the Board pack), never the
    DAG. The body says which return and due date are affected, whether the Board pack is at risk, what
    partnerflow is doing (``retrying``, or not: someone must act) and who must act; the task, DAG, run and
    error go in a section for the data team. ``must_act`` is the cause of a terminal failure (a partnerflow
    error's message: names, never personal data); ``error`` the kind of error; ``error_message`` a
    partnerflow error's message, never an arbitrary exception's (it may carry values).
    """
    as_of = as_of or opened_at.astimezone(LONDON).date()
    again = alert_number > 1
    job = _job(partnership, name, failing, period_id)
    words = job.failing.replace("we can't", "we still can't") if again else job.failing
    subject = _subject(partnership, job, words) + (": someone must act" if must_act else "")
    partner = partnership.partner(job.feed.partner) if job.feed is not None else None
    due = due_date(partnership, job.feed, job.period) if job.feed is not None and job.period else None
    returns = []
    if job.title == "Reminders":
        for feed in partnership.feeds:
            period = schedule(partnership, feed).collecting_period(as_of)
            returns.append(
                {
                    "title": feed.title,
                    "partner": partnership.partner(feed.partner).name,
                    "period": period.label,
                    "due": due_date(partnership, feed, period),
                }
            )
    return _build(
        partnership,
        kind=INCIDENT,
        key=message_key(INCIDENT, name, period_id or "none", incident=incident_id, alert=alert_number),
        feed_id=job.feed.id if job.feed is not None else None,
        period_id=period_id or None,
        recipients=tuple(p.email for p in partnership.engineers),
        cc=(partnership.officer.email,),
        subject=subject,
        template="incident",
        context={
            "job": job,
            "headline": words[0].upper() + words[1:],
            "partner": partner,
            "due": due,
            "returns": returns,
            "board_pack": _board_pack_risk(partnership, job, due, as_of),
            "retrying": retrying,
            "partner_must_act": bool(must_act) and partner_must_act and partner is not None,
            "data_team": _data_team(partnership),
            "name": name,
            "again": again,
            "failing": list(failing),
            "detail": detail,
            "error": error,
            "error_message": error_message,
            "opened_at": opened_at,
            "failures": failures,
            "run_url": run_url,
            "cooldown_hours": cooldown_hours,
            "must_act": must_act,
        },
    )


def incident_recovery(
    partnership: Partnership,
    *,
    name: str,
    period_id: str,
    incident_id: int,
    opened_at: dt.datetime,
    resolved_at: dt.datetime,
    failures: int,
    title: str | None = None,
) -> Message:
    """To the engineers, cc the officer: what was failing works again, in the alert's plain words (``name``
    a DAG id, told as the return, reminders, digest or pack it is about); ``title`` names anything else
    (e.g. "Email delivery through SendGrid")."""
    if title:
        job = _Job(f"{title} failing", f"{title} working again", title, None, _period_or_none(period_id))
        subject = f"{partnership.short_name}: {job.working}"
    else:
        job = _job(partnership, name, (), period_id)
        subject = _subject(partnership, job, job.working)
    return _build(
        partnership,
        kind=INCIDENT_RECOVERY,
        key=message_key(INCIDENT_RECOVERY, name, period_id or "none", incident=incident_id),
        feed_id=job.feed.id if job.feed is not None else None,
        period_id=period_id or None,
        recipients=tuple(p.email for p in partnership.engineers),
        cc=(partnership.officer.email,),
        subject=subject,
        template="incident_recovery",
        context={
            "job": job,
            "headline": job.working[0].upper() + job.working[1:],
            "name": name,
            "opened_at": opened_at,
            "resolved_at": resolved_at,
            "failures": failures,
            "data_team": _data_team(partnership),
        },
    )


def delivery_problem(
    partnership: Partnership,
    *,
    incident_id: int,
    alert_number: int,
    problems: Sequence[Any],
    credentials_rejected: bool,
) -> Message:
    """For the fallback route (SMTP), to the officer and engineers: SendGrid is not delivering.

    ``problems`` are ``partnerflow.notify.fallback.Undelivered``: kind, subject, state, attempts, reason.
    """
    count = len(problems)
    subject = f"{partnership.short_name}: emails not delivered – {wording.count(count, 'message')} held or failed"
    if credentials_rejected:
        subject = f"{partnership.short_name}: emails not delivered – SendGrid refused the API key"
    return _build(
        partnership,
        kind=DELIVERY_PROBLEM,
        key=message_key(DELIVERY_PROBLEM, "sendgrid", incident=incident_id, alert=alert_number),
        feed_id=None,
        period_id=None,
        recipients=(partnership.officer.email,),
        cc=tuple(p.email for p in partnership.engineers),
        subject=subject,
        template="delivery_problem",
        context={"problems": problems, "credentials_rejected": credentials_rejected},
    )


def board_pack(
    partnership: Partnership, period: Period, *, html_summary: str, attachments: Sequence[Attachment]
) -> Message:
    """The Board's MI pack: the HTML summary (trusted markup from the report module) and the PDF."""
    summary = Markup(html_summary)  # noqa: S704 - built by partnerflow.report from escaped templates
    return _build(
        partnership,
        kind=BOARD_PACK,
        key=message_key(BOARD_PACK, period.id),
        feed_id=None,
        period_id=period.id,
        recipients=tuple(p.email for p in partnership.board.recipients),
        cc=(),
        subject=f"{partnership.short_name}: Board performance pack for {_quarter(period)}",
        template="board_pack",
        context={
            "period": period,
            "board": partnership.board,
            "summary_html": summary,
            "summary_text": html_to_text(html_summary),
            "attachment_names": [a.filename for a in attachments],
        },
        attachments=tuple(attachments),
    )


def failure_alert(
    partnership: Partnership, *, dag_id: str, task_id: str, period_id: str | None, run_url: str
) -> Message:
    """A pipeline failure alert to the engineers, cc the officer: which DAG, task and period, and a link."""
    period = _period_or_none(period_id)
    period_text = _quarter(period) if period else (period_id or "no period")
    run = hashlib.sha256(run_url.encode("utf-8")).hexdigest()[:12]
    return _build(
        partnership,
        kind=FAILURE_ALERT,
        key=message_key(FAILURE_ALERT, dag_id, task_id, period_id or "none", run=run),
        feed_id=None,
        period_id=period_id,
        recipients=tuple(p.email for p in partnership.engineers),
        cc=(partnership.officer.email,),
        subject=f"{partnership.short_name}: {dag_id} failed at {task_id} for {period_text}",
        template="failure_alert",
        context={
            "dag_id": dag_id,
            "task_id": task_id,
            "period": period,
            "period_text": period_text,
            "run_url": run_url,
        },
    )


def html_to_text(html: str) -> str:
    """A readable plain-text rendering of simple HTML (headings, paragraphs, lists, tables)."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    return parser.text()


# --- building ----------------------------------------------------------------------------------------


def _reminder(
    partnership: Partnership,
    feed: Feed,
    period: Period,
    *,
    due: dt.date,
    kind: str,
    as_of: dt.date | None,
    reminded_on: Sequence[dt.date] = (),
) -> Message:
    partner = partnership.partner(feed.partner)
    ladder = schedule(partnership, feed).ladder
    quarter = _quarter(period)
    what = f"{feed.title} for {quarter}"
    recipients: tuple[str, ...]
    cc: tuple[str, ...]
    if kind == ADVANCE_REMINDER:
        as_of = as_of or add_working_days(due, -ladder.advance_working_days)
        recipients, cc = (partner.contact.email,), ()
        subject = f"{partnership.short_name}: {what} due {wording.day_in_year(due)}"
    elif kind == DUE_REMINDER:
        as_of = as_of or due
        recipients, cc = (partner.contact.email,), ()
        subject = f"{partnership.short_name}: {what} " + (
            "is due today" if as_of <= due else f"was due {wording.day_in_year(due)}"
        )
    elif kind == OVERDUE_REMINDER:
        as_of = as_of or add_working_days(due, ladder.overdue_working_days)
        recipients, cc = (partner.contact.email,), (partnership.officer.email,)
        days_late = working_days_between(due, as_of)
        subject = f"{partnership.short_name}: {what} is overdue – {wording.count(days_late, 'working day')} late"
    else:
        as_of = as_of or add_working_days(due, ladder.escalation_working_days)
        recipients, cc = (partner.senior_lead.email,), (partnership.officer.email,)
        days_late = working_days_between(due, as_of)
        subject = f"{partnership.short_name}: {what} is {wording.count(days_late, 'working day')} late"
    return _build(
        partnership,
        kind=kind,
        key=message_key(kind, feed.id, period.id),
        feed_id=feed.id,
        period_id=period.id,
        recipients=recipients,
        cc=cc,
        subject=subject,
        template=kind.replace("-", "_"),
        context={
            "partner": partner,
            "feed": feed,
            "period": period,
            "due": due,
            "working_days_to_due": working_days_between(as_of, due) if kind == ADVANCE_REMINDER else 0,
            "days_late": working_days_between(due, as_of) if as_of and kind != ADVANCE_REMINDER else 0,
            "escalation_day": add_working_days(due, ladder.escalation_working_days),
            "reminded_on": sorted(set(reminded_on)),
            "next_board": next((m for m in board_meetings(partnership) if m.pack_due >= (as_of or due)), None),
        },
    )


def _build(
    partnership: Partnership,
    *,
    kind: str,
    key: str,
    feed_id: str | None,
    period_id: str | None,
    recipients: Iterable[str],
    cc: Iterable[str],
    subject: str,
    template: str,
    context: Mapping[str, Any],
    attachments: tuple[Attachment, ...] = (),
) -> Message:
    to = unique_addresses(recipients)
    copies = [address for address in unique_addresses(cc) if address not in to]
    full_context = {"partnership": partnership, "subject": subject, "key": key, **context}
    text, html = _render(template, full_context)
    return Message(
        key=key,
        kind=kind,
        feed_id=feed_id,
        period_id=period_id,
        recipients=tuple(to),
        cc=tuple(copies),
        subject=subject,
        text=text,
        html=html,
        attachments=attachments,
    )


def _render(template: str, context: Mapping[str, Any]) -> tuple[str, str]:
    env = _environment()
    text = env.get_template(f"{template}.txt").render(context)
    html = env.get_template(f"{template}.html").render(context)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n", html


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=True, default=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(wording.FILTERS)
    env.filters["time"] = _london_time
    env.filters["quarter"] = _quarter
    env.filters["wait"] = _wait
    env.globals["how_to_send"] = _how_to_send
    return env


def _how_to_send(feed: Feed, period: Period) -> dict[str, str]:
    """What a partner does to send (or resend) a return, in words, from the feed's transport."""
    transport = feed.transport
    file_format = {"csv": "a CSV file", "json": "JSON", "xlsx": "an Excel (.xlsx) workbook"}[feed.format.kind]
    if transport.kind == "sftp":
        name = transport.pattern.replace("{period}", period.id)
        finish = {
            "rename": "Upload it under a temporary name and rename it to that name when the upload is complete.",
            "done_marker": f"When the upload is complete, add an empty file named {name}.done beside it.",
            "stable_size": "We take it once its size has stopped changing.",
        }[transport.completeness]
        return {
            "how": f"Upload {file_format} named {name} ({period.id_meaning}) to the folder {transport.directory} "
            "on the partnership SFTP server.",
            "finish": finish,
        }
    endpoint = transport.endpoint.replace("{period}", period.id)
    return {
        "how": f"Publish the return as {file_format} at your API endpoint {endpoint} ({period.id_meaning}).",
        "finish": "We collect it from there automatically, several times a day.",
    }


# --- whitelisting a validation report ------------------------------------------------------------------


def _rule_failure(raw: Mapping[str, Any]) -> RuleFailure:
    """Read only the whitelisted fields of a report failure, each checked for shape."""
    code = str(raw.get("code", ""))
    columns = raw.get("columns") or ()
    if isinstance(columns, str):
        columns = (columns,)
    row_numbers = sorted({n for n in (raw.get("row_numbers") or ()) if _is_int(n) and n > 0})
    return RuleFailure(
        code=code if _SAFE_CODE.match(code) else "unnamed-rule",
        message=_short(str(raw.get("message", "")), _MESSAGE_MAX),
        columns=tuple(c if _SAFE_COLUMN.match(str(c)) else "(unnamed column)" for c in map(str, columns)),
        severity=raw["severity"] if raw.get("severity") in ("warning", "info") else "error",
        failing_rows=_non_negative_int(raw.get("failing_rows")),
        row_numbers=tuple(row_numbers),
    )


def _rejection_csv(failures: Sequence[RuleFailure]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(["row_number", "rule_code"])
    pairs = sorted((n, f.code) for f in failures for n in f.row_numbers)
    writer.writerows((n, spreadsheet_safe(code)) for n, code in pairs)
    return buffer.getvalue().encode("utf-8")


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _non_negative_int(value: object) -> int:
    return value if _is_int(value) and value >= 0 else 0


# --- wording ----------------------------------------------------------------------------------------


def _quarter(period: Period) -> str:
    """``Q2 2026/27``, ``October 2026``: the period label without the months, for subjects."""
    return period.short_label


def _london_time(moment: dt.datetime) -> str:
    """``Wed 21 Oct 09:05`` in London time."""
    local = moment.astimezone(LONDON)
    return f"{wording.day_in_year(local.date())} {local:%H:%M}"


def _wait(delay: dt.timedelta) -> str:
    """``30 seconds``, ``30 minutes``, ``2 hours``: a wait between tries."""
    seconds = int(delay.total_seconds())
    if seconds % 3600 == 0 and seconds:
        return wording.count(seconds // 3600, "hour")
    if seconds % 60 == 0 and seconds:
        return wording.count(seconds // 60, "minute")
    return wording.count(seconds, "second")


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def unique_addresses(addresses: Iterable[str]) -> list[str]:
    """Addresses lower-cased, blanks and repeats dropped, in their first order."""
    seen: list[str] = []
    for address in addresses:
        address = address.strip().lower()
        if address and address not in seen:
            seen.append(address)
    return seen


def _period_or_none(period_id: str | None) -> Period | None:
    try:
        return Period.from_id(period_id) if period_id else None
    except ValueError:
        return None


class _TextExtractor(HTMLParser):
    _BLOCKS = {"p", "div", "section", "article", "header", "footer", "table", "ul", "ol", "br", "hr"}
    _SKIP = {"style", "script", "head", "title"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._parts: list[str] = []
        self._skipping = 0
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag in ("h1", "h2", "h3", "h4"):
            self._parts.append("\n\n")
        elif tag == "li":
            self._parts.append("\n- ")
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []
        elif tag in self._BLOCKS:
            self._parts.append("\n\n" if tag != "br" else "\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skipping = max(0, self._skipping - 1)
        elif tag in ("h1", "h2", "h3", "h4"):
            self._parts.append("\n")
        elif tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self._parts.append("\n" + " | ".join(self._row))
            self._row = None
        elif tag in self._BLOCKS:
            self._parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._skipping:
            return
        if self._cell is not None:
            self._cell.append(data)
        else:
            self._parts.append(re.sub(r"\s+", " ", data))

    def text(self) -> str:
        lines = [line.strip() for line in "".join(self._parts).splitlines()]
        return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
