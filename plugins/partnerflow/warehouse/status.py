"""One truth about every return: for each feed x period, where it stands and what the partner was told.

``returns`` is the only place that decides whether a return is on time, late by N working days, overdue,
rejected (which rules, how many rows, when the partner was told), accepted with warnings, superseded or
has near-miss uploads ignored. ``partnerflow status``, the Submissions page and the weekly digest render
what it returns; none of them works it out again. Periods that ended before the partnership's ``go_live``
are never reported.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from partnerflow.core import clock, wording
from partnerflow.core.clock import LONDON
from partnerflow.core.config import Feed, Partnership
from partnerflow.core.periods import Period, after_go_live, period_label, schedule, working_days_between
from partnerflow.notify.messages import REJECTION
from partnerflow.notify.outbox import message_key
from partnerflow.warehouse import ledger

ON_TIME, LATE, OVERDUE, REJECTED, RECEIVED, NOT_DUE = (
    "on time",
    "late",
    "overdue",
    "rejected",
    "received, being checked",
    "not due yet",
)
NEEDS_ATTENTION = (OVERDUE, REJECTED)


@dataclass(frozen=True)
class RuleCount:
    """A rule a rejected file broke, and on how many rows (0: a whole-file rule)."""

    code: str
    rows: int

    def __str__(self) -> str:
        return f"{self.code} × {self.rows:,}" if self.rows else self.code


@dataclass(frozen=True)
class ReturnStatus:
    """Where one feed's return for one period stands, and what was sent about it."""

    feed_id: str
    feed_title: str
    partner: str
    period_id: str
    period_label: str
    due_date: dt.date
    status: str  # ON_TIME, LATE, OVERDUE, REJECTED, RECEIVED or NOT_DUE
    state: str  # the ledger's word for the feed x period: expected, received, rejected or published
    days_late: int  # working days after the due date: when published, or as of today when not
    overdue: bool  # past its due date and not published
    published_on: dt.date | None
    rows_published: int | None
    with_warnings: bool
    rejected_file: int | None  # the newest rejected file, when the return is not published
    rejected_rules: tuple[RuleCount, ...]
    partner_told_at: dt.datetime | None  # when the rejection report for that file was sent
    versions_rejected: int
    versions_superseded: int
    ignored: tuple[ledger.IgnoredFile, ...]
    latest_file: str | None
    latest_file_id: int | None
    latest_file_state: str | None
    files_received: int
    notifications_sent: int = 0
    notifications_pending: int = 0
    files: tuple[ledger.SliceFile, ...] = field(default=(), repr=False)

    @property
    def needs_attention(self) -> bool:
        return self.status in NEEDS_ATTENTION or bool(self.ignored)

    @property
    def rules_text(self) -> str:
        """``REF-003 × 3, REF-011 × 1``."""
        return ", ".join(str(rule) for rule in self.rejected_rules)

    @property
    def summary(self) -> str:
        """The status as a person reads it, the same in the CLI, on the page and in the digest."""
        late = wording.count(self.days_late, "working day")
        if self.status == ON_TIME:
            text = "On time"
        elif self.status == LATE:
            text = f"Late by {late}"
        elif self.status == OVERDUE:
            text = f"Overdue by {late}" if self.days_late else "Overdue"
        elif self.status == REJECTED:
            text = "Rejected"
            if self.rules_text:
                text += f": {self.rules_text}"
            if self.partner_told_at:
                text += f"; partner told {wording.day_and_time(self.partner_told_at)}"
            else:
                text += "; report to the partner not sent yet"
        elif self.status == RECEIVED:
            text = "Received, being checked"
        else:
            text = f"Not due yet (due {wording.day_in_year(self.due_date)})"
        if self.overdue and self.status in (REJECTED, RECEIVED):
            text += f"; overdue by {late}" if self.days_late else "; overdue"
        if self.with_warnings:
            text += " (accepted with warnings)"
        if self.versions_superseded:
            text += f"; {wording.count(self.versions_superseded, 'version')} superseded"
        if self.ignored:
            text += f"; {wording.count(len(self.ignored), 'near-miss upload')} ignored"
        return text

    def as_dict(self) -> dict[str, Any]:
        return {
            "feed_id": self.feed_id,
            "feed_title": self.feed_title,
            "partner": self.partner,
            "period_id": self.period_id,
            "period_label": self.period_label,
            "due_date": self.due_date.isoformat(),
            "status": self.status,
            "state": self.state,
            "summary": self.summary,
            "days_late": self.days_late,
            "overdue": self.overdue,
            "published_on": self.published_on.isoformat() if self.published_on else None,
            "rows_published": self.rows_published,
            "with_warnings": self.with_warnings,
            "rejected_file": self.rejected_file,
            "rejected_rules": [{"code": r.code, "rows": r.rows} for r in self.rejected_rules],
            "partner_told_at": self.partner_told_at.isoformat() if self.partner_told_at else None,
            "versions_rejected": self.versions_rejected,
            "versions_superseded": self.versions_superseded,
            "ignored": [
                {
                    "name": i.source_name,
                    "reason": i.reason,
                    "expected": i.expected_name,
                    "seen_at": i.seen_at.isoformat(),
                }
                for i in self.ignored
            ],
            "latest_file": self.latest_file,
            "latest_file_id": self.latest_file_id,
            "latest_file_state": self.latest_file_state,
            "files_received": self.files_received,
            "notifications_sent": self.notifications_sent,
            "notifications_pending": self.notifications_pending,
        }


SliceStatus = ReturnStatus  # the name the matrix had before it said more

_SUBMISSIONS = sa.text(
    "SELECT feed_id, period_id, state, due_date, published_at, published_file_id, rows_published FROM ops.submissions"
)
_NOTIFICATIONS = sa.text(
    "SELECT feed_id, period_id, count(*) FILTER (WHERE state = 'sent') AS sent,"
    " count(*) FILTER (WHERE state = 'pending') AS pending"
    " FROM ops.notifications WHERE feed_id IS NOT NULL GROUP BY feed_id, period_id"
)
_TOLD = sa.text("SELECT key, sent_at FROM ops.notifications WHERE key = ANY(:keys) AND state = 'sent'")


def returns(
    conn: Connection,
    partnership: Partnership,
    *,
    as_of: dt.date,
    slices: Iterable[tuple[Feed, Period]] | None = None,
) -> list[ReturnStatus]:
    """Each return's status as of ``as_of``: the given feed x period slices (in that order), or every one the
    warehouse knows of, newest period first. Periods that ended before ``go_live`` are left out."""
    submissions = {(r.feed_id, r.period_id): r for r in conn.execute(_SUBMISSIONS)}
    files = ledger.slice_files(conn)
    ignored = ledger.ignored_files(conn)
    counts = {(r.feed_id, r.period_id): (r.sent, r.pending) for r in conn.execute(_NOTIFICATIONS)}
    feeds = {feed.id: feed for feed in partnership.feeds}
    if slices is None:
        known = set(submissions) | set(ignored)
        wanted: list[tuple[Feed, Period]] = []
        for feed_id, period_id in sorted(known, key=lambda k: (k[1], k[0])):
            if feed_id not in feeds:
                continue  # a feed no longer configured
            try:
                wanted.append((feeds[feed_id], schedule(partnership, feeds[feed_id]).period(period_id)))
            except ValueError:
                continue  # a period of another kind, from before the feed's calendar changed
        wanted.sort(key=lambda s: s[0].id)
        wanted.sort(key=lambda s: s[1].end, reverse=True)
    else:
        wanted = list(slices)
    wanted = [(feed, period) for feed, period in wanted if after_go_live(partnership, period)]
    statuses = [
        _assess(
            partnership,
            feed,
            period,
            as_of=as_of,
            submission=submissions.get((feed.id, period.id)),
            files=files.get((feed.id, period.id), []),
            ignored=ignored.get((feed.id, period.id), []),
            counts=counts.get((feed.id, period.id), (0, 0)),
        )
        for feed, period in wanted
    ]
    return _with_told(conn, statuses)


def matrix(eng: Engine, partnership: Partnership, *, as_of: dt.date | None = None) -> list[ReturnStatus]:
    """Every feed x period the warehouse knows of, newest period first, as of today (or ``as_of``)."""
    with eng.connect() as conn:
        return returns(conn, partnership, as_of=as_of or clock.today())


def _assess(
    partnership: Partnership,
    feed: Feed,
    period: Period,
    *,
    as_of: dt.date,
    submission: Any,
    files: Sequence[ledger.SliceFile],
    ignored: Sequence[ledger.IgnoredFile],
    counts: tuple[int, int],
) -> ReturnStatus:
    due = submission.due_date if submission else schedule(partnership, feed).due_date(period)
    decided = [f for f in files if f.state != ledger.DUPLICATE]
    latest = decided[-1] if decided else None
    rejected = [f for f in files if f.state == ledger.REJECTED]
    published_on = None
    published_file = None
    rejected_file = None
    if submission is not None and submission.state == "published":
        published_at = submission.published_at or (files[-1].state_at if files else clock.now())
        published_on = published_at.astimezone(LONDON).date()
        published_file = next((f for f in files if f.id == submission.published_file_id), None)
        days_late = max(working_days_between(due, published_on), 0)
        status = LATE if days_late else ON_TIME
    else:
        days_late = max(working_days_between(due, as_of), 0) if as_of > due else 0
        if any(f.state in (ledger.RECEIVED, ledger.FAILED) for f in files):
            status = RECEIVED
        elif rejected:
            status = REJECTED
            rejected_file = rejected[-1]
        else:
            status = OVERDUE if as_of > due else NOT_DUE
    return ReturnStatus(
        feed_id=feed.id,
        feed_title=feed.title,
        partner=partnership.partner(feed.partner).name,
        period_id=period.id,
        period_label=period.label,
        due_date=due,
        status=status,
        state=submission.state if submission else "expected",
        days_late=days_late,
        overdue=published_on is None and as_of > due,
        published_on=published_on,
        rows_published=submission.rows_published if submission else None,
        with_warnings=bool(published_file and _failures(published_file, "warning")),
        rejected_file=rejected_file.id if rejected_file else None,
        rejected_rules=tuple(_failures(rejected_file, "error")) if rejected_file else (),
        partner_told_at=None,
        versions_rejected=len(rejected),
        versions_superseded=sum(f.state == ledger.SUPERSEDED for f in files),
        ignored=tuple(ignored),
        latest_file=latest.source_name if latest else None,
        latest_file_id=latest.id if latest else None,
        latest_file_state=latest.state if latest else None,
        files_received=len(files),
        notifications_sent=counts[0],
        notifications_pending=counts[1],
        files=tuple(files),
    )


def _failures(file: ledger.SliceFile, severity: str) -> list[RuleCount]:
    failures = (file.report or {}).get("failures") or []
    return [
        RuleCount(str(f.get("code")), int(f.get("failing_rows") or 0))
        for f in failures
        if (f.get("severity") or "error") == severity
    ]


def _with_told(conn: Connection, statuses: list[ReturnStatus]) -> list[ReturnStatus]:
    """Fill in when each rejected return's partner was sent the rejection report."""
    keys = {
        message_key(REJECTION, s.feed_id, s.period_id, file=s.rejected_file): i
        for i, s in enumerate(statuses)
        if s.rejected_file is not None
    }
    if not keys:
        return statuses
    told: dict[str, dt.datetime] = dict(conn.execute(_TOLD, {"keys": list(keys)}).tuples().all())
    result = list(statuses)
    for key, index in keys.items():
        if told.get(key):
            result[index] = _replace(result[index], partner_told_at=told[key])
    return result


def _replace(status: ReturnStatus, **changes: Any) -> ReturnStatus:
    from dataclasses import replace

    return replace(status, **changes)


def render_table(rows: list[ReturnStatus]) -> str:
    """The statuses as a plain-text table for a terminal."""
    headers = ("period", "feed", "status", "due", "rows", "latest file", "files", "emails sent")
    body = [
        (
            period_label(r.period_id),
            r.feed_id,
            r.summary,
            r.due_date.isoformat(),
            "" if r.rows_published is None else f"{r.rows_published:,}",
            f"{r.latest_file} (file {r.latest_file_id}, {r.latest_file_state})" if r.latest_file else "",
            str(r.files_received),
            str(r.notifications_sent),
        )
        for r in rows
    ]
    if not body:
        return "No submissions recorded yet."
    widths = [max(len(h), *(len(row[i]) for row in body)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in body]
    meanings = [_id_meaning(p) for p in dict.fromkeys(r.period_id for r in rows)]
    lines.append("In file names: " + "; ".join(m for m in meanings if m) + ".")
    ignored = [(r, i) for r in rows for i in r.ignored]
    if ignored:
        lines += ["", "Near-miss uploads left in partners' drops (the partner was told the expected name once):"]
        lines += [
            f"  {r.feed_id} {r.period_id}: {i.source_name!a}: {i.reason}; expected {i.expected_name}"
            for r, i in ignored
        ]
    return "\n".join(lines)


# --- one file: the report the partner got, its ledger history, the e-mails it caused -----------------------


@dataclass(frozen=True)
class Email:
    key: str
    kind: str
    subject: str
    state: str
    created_at: dt.datetime
    sent_at: dt.datetime | None


@dataclass(frozen=True)
class FileReport:
    """Everything an operator may read about one received file; no values from the file, no e-mail bodies."""

    file: ledger.SliceFile
    feed_title: str
    history: tuple[ledger.FileEvent, ...]
    emails: tuple[Email, ...]

    @property
    def failures(self) -> list[dict[str, Any]]:
        return list((self.file.report or {}).get("failures") or [])

    def as_dict(self) -> dict[str, Any]:
        f = self.file
        return {
            "file_id": f.id,
            "feed_id": f.feed_id,
            "period_id": f.period_id,
            "source_name": f.source_name,
            "state": f.state,
            "state_reason": f.state_reason,
            "received_at": f.received_at.isoformat(),
            "report": f.report,
            "history": [{"state": e.state, "reason": e.reason, "at": e.at.isoformat()} for e in self.history],
            "emails": [
                {
                    "key": m.key,
                    "kind": m.kind,
                    "subject": m.subject,
                    "state": m.state,
                    "created_at": m.created_at.isoformat(),
                    "sent_at": m.sent_at.isoformat() if m.sent_at else None,
                }
                for m in self.emails
            ],
        }


_FILE_EMAILS = sa.text(
    "SELECT key, kind, subject, state, created_at, sent_at FROM ops.notifications"
    " WHERE key LIKE :suffix ORDER BY created_at, id"
)


def file_report(conn: Connection, partnership: Partnership, file_id: int) -> FileReport | None:
    """The stored report, ledger history and e-mails of one file; None when there is no such file."""
    found = ledger.file_with_report(conn, file_id)
    if found is None:
        return None
    emails = [Email(*row) for row in conn.execute(_FILE_EMAILS, {"suffix": f"%:file={file_id}"})]
    titles = {feed.id: feed.title for feed in partnership.feeds}
    return FileReport(
        file=found,
        feed_title=titles.get(found.feed_id, found.feed_id),
        history=tuple(ledger.history(conn, file_id)),
        emails=tuple(emails),
    )


def render_file_report(report: FileReport) -> str:
    """``partnerflow report FILE_ID``: the report as the partner got it, then history and e-mails."""
    f = report.file
    lines = [
        f"File {f.id}: {f.source_name} — {report.feed_title} ({f.feed_id}), {f.period_id}",
        f"State: {f.state}" + (f" ({f.state_reason})" if f.state_reason else ""),
        "",
    ]
    if f.report is None:
        lines.append("Validation report: none stored (the file was not checked: a duplicate, or still waiting).")
    else:
        verdict = "passed" if f.report.get("passed") else "failed"
        lines.append(
            f"Validation report ({verdict}): {f.report.get('rules_checked', 0)} rules checked on "
            f"{f.report.get('rows_checked', 0)} rows"
        )
        for failure in report.failures:
            rows = int(failure.get("failing_rows") or 0)
            columns = ", ".join(failure.get("columns") or [])
            numbers = failure.get("row_numbers") or []
            lines.append(
                f"  {failure.get('severity', 'error'):7} {failure.get('code')}"
                + (f" [{columns}]" if columns else "")
                + (f": {rows:,} row{'s' if rows != 1 else ''}" if rows else ": the whole file")
                + f" — {failure.get('message', '')}"
            )
            if numbers:
                shown = ", ".join(str(n) for n in numbers[:20])
                lines.append(f"          rows {shown}{' …' if len(numbers) > 20 or rows > len(numbers) else ''}")
        if not report.failures:
            lines.append("  every rule passed")
    lines += ["", "Ledger history:"]
    lines += [f"  {e.at.isoformat(timespec='seconds')}  {e.state:10} {e.reason or ''}".rstrip() for e in report.history]
    lines += ["", "E-mails it caused:"]
    if not report.emails:
        lines.append("  none")
    for m in report.emails:
        when = f"sent {m.sent_at.isoformat(timespec='seconds')}" if m.sent_at else m.state
        lines.append(f"  {m.key}  ({when})  {m.subject}")
    return "\n".join(lines)


def _id_meaning(period_id: str) -> str:
    try:
        return Period.from_id(period_id).id_meaning
    except ValueError:
        return ""
