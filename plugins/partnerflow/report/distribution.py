"""A period's Board pack from draft to the Board: build a draft, approve it, send it once per version.

Each build is a row of ``ops.board_packs`` holding what it showed and its PDF. The flow for a period:

1. ``prepare`` builds a draft from the data now, unless the draft waiting (or the version last sent)
   already shows exactly that. A draft carries the number it will go out as: 1 for the period's first
   pack, N+1 for a revision of version N. At most one draft per period waits; a newer one supersedes it.
2. Pre-briefs for its red measures go to partner leads (``partnerflow.report.prebrief``); the draft may
   go no earlier than ``distribute_on``: the board's ``prebrief_working_days`` after the first draft of a
   version, or after the latest new pre-brief.
3. The officer approves it (``partnerflow.report.approval``), or, with ``auto_approve``, it is approved
   when ``distribute_on`` comes.
4. ``distribute`` queues the one Board email for that period and version, with the stored PDF, and
   archives the files under ``var/boardpack/<period>/v<N>/``.

Data that changes after a version was sent makes the next ``prepare`` build version N+1, marked on its
cover and in its email as superseding version N, with what changed. Nothing is ever re-sent silently:
the outbox key is the period and the version.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from markupsafe import Markup
from sqlalchemy.engine import Connection, Engine

from partnerflow.core import clock, paths, wording
from partnerflow.core.config import Partnership
from partnerflow.core.periods import Period, add_working_days, board_meetings, schedule
from partnerflow.notify import outbox
from partnerflow.notify.messages import html_to_text
from partnerflow.report import mail
from partnerflow.report.boardpack import (
    CSV_NAME,
    HTML_NAME,
    PDF_NAME,
    archive_files,
    changes_between,
    content_on,
    inputs_digest,
    next_meeting,
    render,
)
from partnerflow.report.content import Edition, PackContent, SentVersion
from partnerflow.report.kpis import feed_periods, submission_statuses

log = logging.getLogger(__name__)

BOARD_PACK = "board-pack"
# Any fixed number: with the period's hash it serialises every change to one period's packs.
BOARD_PACK_LOCK = 7_212_004

_COLUMNS = (
    "id, period_id, version, sha256, path, built_on, distribute_on, inputs, approved_at, approved_by,"
    " distributed_at, superseded_at"
)


@dataclass(frozen=True)
class PackRecord:
    """One build of a period's pack, as ``ops.board_packs`` records it."""

    id: int
    period_id: str
    version: int
    sha256: str
    path: str
    built_on: dt.date
    distribute_on: dt.date
    inputs: str
    approved_at: dt.datetime | None
    approved_by: str | None
    distributed_at: dt.datetime | None
    superseded_at: dt.datetime | None

    @property
    def state(self) -> str:
        """``sent``, ``superseded``, ``approved`` or ``waiting`` (for approval)."""
        if self.distributed_at is not None:
            return "sent"
        if self.superseded_at is not None:
            return "superseded"
        return "approved" if self.approved_at is not None else "waiting"

    @property
    def sent_on(self) -> dt.date | None:
        return self.distributed_at.astimezone(clock.LONDON).date() if self.distributed_at else None


@dataclass(frozen=True)
class Prepared:
    """What ``prepare`` found or built: the period's current pack and whether it is a new draft."""

    record: PackRecord
    new: bool

    @property
    def needs_sending(self) -> bool:
        return self.record.distributed_at is None


@dataclass(frozen=True)
class Distribution:
    """What ``distribute`` did: the version sent (or why nothing was), and where its files are."""

    period_id: str
    version: int | None
    enqueued: bool
    reason: str
    path: Path | None = None


def lock_period(conn: Connection, period_id: str) -> None:
    """Serialise every change to one period's packs (held to the end of the transaction)."""
    conn.execute(
        sa.text("SELECT pg_advisory_xact_lock(:lock, hashtext(:period))"),
        {"lock": BOARD_PACK_LOCK, "period": period_id},
    )


def pending_pack(conn: Connection, period_id: str) -> PackRecord | None:
    """The draft of ``period_id`` waiting to be sent, if any."""
    return _one(
        conn,
        f"SELECT {_COLUMNS} FROM ops.board_packs WHERE period_id = :p AND distributed_at IS NULL"
        " AND superseded_at IS NULL ORDER BY id DESC LIMIT 1",
        p=period_id,
    )


def last_sent(conn: Connection, period_id: str) -> PackRecord | None:
    """The latest version of ``period_id`` the Board received, if any."""
    return _one(
        conn,
        f"SELECT {_COLUMNS} FROM ops.board_packs WHERE period_id = :p AND distributed_at IS NOT NULL"
        " ORDER BY version DESC LIMIT 1",
        p=period_id,
    )


def pack_record(conn: Connection, record_id: int) -> PackRecord:
    record = _one(conn, f"SELECT {_COLUMNS} FROM ops.board_packs WHERE id = :i", i=record_id)
    if record is None:
        raise LookupError(f"no Board pack record {record_id}")
    return record


def should_build(
    engine: Engine, partnership: Partnership, period: Period, *, as_of: dt.date | None = None
) -> tuple[bool, str]:
    """Whether a run started by a publish should build ``period``'s pack now, and why (or why not).

    Yes once every expected return is published, once the build deadline has come with returns still
    missing, or whenever a pack for the period is waiting or was sent (to pick up changed data).
    """
    as_of = as_of or clock.today()
    with engine.connect() as conn:
        if pending_pack(conn, period.id) is not None or last_sent(conn, period.id) is not None:
            return True, "a pack for the period exists; checking it against the data now"
        statuses = submission_statuses(conn, partnership, period, as_of=as_of)
    outstanding = [s for s in statuses if s.state not in ("published", "not_expected")]
    if not outstanding:
        return True, "every expected return is published"
    deadline = build_deadline(partnership, period)
    if as_of >= deadline:
        return True, f"the build deadline {deadline} has passed with {len(outstanding)} return(s) missing"
    return False, f"waiting for {len(outstanding)} return(s) until the build deadline {deadline}"


def build_deadline(partnership: Partnership, period: Period) -> dt.date:
    """The day the pack is built even with returns missing: ``build_working_days`` before the next Board
    meeting's pack date, or after the returns were due when no meeting is set (never before they are due)."""
    latest_due = max(
        (schedule(partnership, f).due_date(p) for f in partnership.feeds for p in feed_periods(partnership, f, period)),
        default=period.end,
    )
    rules = partnership.board.pack
    meeting = next((m for m in board_meetings(partnership) if m.pack_due >= latest_due), None)
    if meeting is None:
        return add_working_days(latest_due, rules.build_working_days)
    return max(latest_due, add_working_days(meeting.pack_due, -rules.build_working_days))


def prepare(
    engine: Engine,
    partnership: Partnership,
    period: Period | str,
    *,
    as_of: dt.date | None = None,
    var_dir: Path | None = None,
) -> Prepared:
    """The period's pack for the data now: the draft waiting or the version sent if either shows exactly
    this, else a new draft (superseding any waiting one), rendered, archived and recorded."""
    period = period if isinstance(period, Period) else Period.from_id(period)
    as_of = as_of or clock.today()
    with engine.begin() as conn:
        lock_period(conn, period.id)
        content, inputs = _snapshot(engine, partnership, period, as_of)
        pending, sent = pending_pack(conn, period.id), last_sent(conn, period.id)
        for current in (pending, sent):
            if current is not None and current.sha256 == content.fingerprint:
                if current is sent and pending is not None:
                    _supersede(conn, pending)
                if current.inputs != inputs:
                    conn.execute(
                        sa.text("UPDATE ops.board_packs SET inputs = :d WHERE id = :i"), {"d": inputs, "i": current.id}
                    )
                return Prepared(pack_record(conn, current.id), new=False)
        edition = Edition(
            version=sent.version + 1 if sent else 1,
            built_on=as_of,
            supersedes=SentVersion(sent.version, sent.sent_on) if sent and sent.sent_on else None,
            changes=changes_between(_figures(conn, sent.id), content.figures) if sent else (),
            meeting=next_meeting(partnership, content),
        )
        pack = render(content, edition)
        if pending is not None:
            _supersede(conn, pending)
            distribute_on = max(pending.distribute_on, as_of)
        else:
            distribute_on = add_working_days(as_of, partnership.board.pack.prebrief_working_days)
        folder = pack.folder(paths.var_dir() if var_dir is None else var_dir)
        record_id = conn.execute(
            sa.text(
                "INSERT INTO ops.board_packs (period_id, version, sha256, path, created_at, built_on, distribute_on,"
                " inputs, figures, pdf, pdf_sha256, html, summary_html, csv)"
                " VALUES (:p, :v, :sha, :path, :at, :built, :send, :inputs, CAST(:figures AS jsonb), :pdf, :pdf_sha,"
                " :html, :summary, :csv) RETURNING id"
            ),
            {
                "p": period.id,
                "v": edition.version,
                "sha": content.fingerprint,
                "path": f"boardpack/{period.id}/{folder.name}/{PDF_NAME}",
                "at": clock.now(),
                "built": as_of,
                "send": distribute_on,
                "inputs": inputs,
                "figures": _json(content.figures),
                "pdf": pack.pdf,
                "pdf_sha": pack.pdf_sha256,
                "html": pack.html,
                "summary": pack.summary_html,
                "csv": pack.csv,
            },
        ).scalar_one()
        pack.write(paths.var_dir() if var_dir is None else var_dir)
        log.info(
            "built Board pack %s version %s (record %s, %d pages)", period.id, edition.version, record_id, pack.pages
        )
        return Prepared(pack_record(conn, record_id), new=True)


def distribute(
    engine: Engine,
    partnership: Partnership,
    period: Period | str,
    *,
    today: dt.date | None = None,
    var_dir: Path | None = None,
) -> Distribution:
    """Send the period's approved draft to the Board list, once, if its day has come and its data still
    stands; otherwise say why not. The Board email is queued in the same transaction that marks it sent."""
    period = period if isinstance(period, Period) else Period.from_id(period)
    today = today or clock.today()
    with engine.begin() as conn:
        lock_period(conn, period.id)
        record = pending_pack(conn, period.id)
        if record is None:
            sent = last_sent(conn, period.id)
            reason = (
                f"version {sent.version} was sent on {wording.short_date(sent.sent_on, missing='an unknown day')}"
                if sent
                else "no pack has been built"
            )
            return Distribution(period.id, sent.version if sent else None, False, f"nothing to send: {reason}")
        if record.approved_at is None:
            return Distribution(period.id, record.version, False, "not approved yet")
        if today < record.distribute_on:
            return Distribution(period.id, record.version, False, f"not before {record.distribute_on}")
        with engine.connect() as reader:
            if inputs_digest(reader, partnership, period) != record.inputs:
                return Distribution(period.id, record.version, False, "the period's returns changed since it was built")
        files = conn.execute(
            sa.text("SELECT pdf, html, summary_html, csv FROM ops.board_packs WHERE id = :i"), {"i": record.id}
        ).one()
        message = board_pack_message(
            partnership, period, record, summary_html=files.summary_html, pdf=files.pdf, csv=files.csv
        )
        enqueued = outbox.enqueue(conn, message)
        conn.execute(
            sa.text("UPDATE ops.board_packs SET distributed_at = :at WHERE id = :i"),
            {"at": clock.now(), "i": record.id},
        )
        folder = (paths.var_dir() if var_dir is None else var_dir) / "boardpack" / period.id / f"v{record.version}"
        archive_files(folder, {PDF_NAME: files.pdf, HTML_NAME: files.html.encode("utf-8"), CSV_NAME: files.csv})
    log.info("Board pack %s version %s sent to the Board list", period.id, record.version)
    return Distribution(period.id, record.version, enqueued, "sent", folder / PDF_NAME)


def board_pack_message(
    partnership: Partnership, period: Period, record: PackRecord, *, summary_html: str, pdf: bytes, csv: bytes
) -> outbox.Message:
    """The Board's email for one version: the HTML summary as its body, the PDF and CSV attached."""
    revised = record.version > 1
    stem = f"board-pack-{period.id}-v{record.version}"
    attachments = (
        outbox.Attachment(f"{stem}.pdf", bytes(pdf), "application/pdf"),
        outbox.Attachment(f"{stem}-figures.csv", bytes(csv), "text/csv"),
    )
    subject = (
        f"{partnership.short_name}: REVISED Board performance pack for {period.short_label} (version {record.version})"
        if revised
        else f"{partnership.short_name}: Board performance pack for {period.short_label}"
    )
    key = outbox.message_key(BOARD_PACK, period.id, v=record.version)
    text, html = mail.render_email(
        "board_pack",
        {
            "partnership": partnership,
            "subject": subject,
            "key": key,
            "period": period,
            "board": partnership.board,
            "revised": revised,
            "version": record.version,
            "built_on": record.built_on,
            "summary_html": Markup(summary_html),  # noqa: S704 - rendered by report/templates with autoescape
            "summary_text": html_to_text(summary_html),
            "attachment_names": [a.filename for a in attachments],
        },
    )
    return outbox.Message(
        key=key,
        kind=BOARD_PACK,
        feed_id=None,
        period_id=period.id,
        recipients=tuple(dict.fromkeys(p.email for p in partnership.board.recipients)),
        cc=(),
        subject=subject,
        text=text,
        html=html,
        attachments=attachments,
    )


def figures_of(conn: Connection, record_id: int) -> dict[str, Any]:
    """What a recorded pack showed (its disclosure-controlled figures)."""
    return _figures(conn, record_id)


def _snapshot(engine: Engine, partnership: Partnership, period: Period, as_of: dt.date) -> tuple[PackContent, str]:
    """The pack's content and the ledger digest it was read with, in one consistent snapshot."""
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn, conn.begin():
        return content_on(conn, partnership, period, as_of=as_of), inputs_digest(conn, partnership, period)


def _supersede(conn: Connection, record: PackRecord) -> None:
    conn.execute(
        sa.text("UPDATE ops.board_packs SET superseded_at = :at WHERE id = :i"), {"at": clock.now(), "i": record.id}
    )


def _figures(conn: Connection, record_id: int) -> dict[str, Any]:
    value = conn.execute(sa.text("SELECT figures FROM ops.board_packs WHERE id = :i"), {"i": record_id}).scalar()
    return value or {}


def _one(conn: Connection, sql: str, **params: Any) -> PackRecord | None:
    row = conn.execute(sa.text(sql), params).mappings().first()
    return PackRecord(**row) if row else None


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True)
