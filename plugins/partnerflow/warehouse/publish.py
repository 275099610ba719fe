"""Deciding a received file: publish its feed x period slice atomically, or quarantine it.

Both happen in one transaction under a lock on the slice, together with the ledger change, the validation
report and the outbox message they cause. So readers never see part of a file, two runs of the same slice
end in the same state, and a rejected or empty resubmission never touches what is already published.

Pitfalls:
    The ledger says ``published`` in the same transaction as the rows. A run killed after the commit
    (before it could report back) finds the file published when rerun and does nothing twice.
    The partner's file is moved to its processed folder only after that commit, by the ingest step
    (``partnerflow.pipeline.ingest``), and best-effort: a move that fails is retried by the next fetch.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from partnerflow.core import clock
from partnerflow.core.config import Dataset, Feed, Partnership
from partnerflow.core.periods import Period, due_date
from partnerflow.intake.reader import staging_table
from partnerflow.notify import messages
from partnerflow.notify.outbox import enqueue
from partnerflow.warehouse import ledger, partitions

log = logging.getLogger(__name__)

MANIFEST_ROWS_RULE = "MAN-003"
MANIFEST_ROWS_MESSAGE = (
    "The number of rows in the file is not the number its .done manifest gives. "
    "Upload the complete file, then a manifest that matches it."
)
NOT_NOTIFIED = "history for a past period (partnerflow backfill): no e-mail sent to the partner"


@dataclass(frozen=True)
class Outcome:
    """What became of one received file. Ids and counts only: safe for logs and XCom."""

    file_id: int
    feed_id: str
    period_id: str
    state: str
    rows: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "file_id": self.file_id,
            "feed_id": self.feed_id,
            "period_id": self.period_id,
            "state": self.state,
            "rows": self.rows,
        }


@contextlib.contextmanager
def deciding(eng: Engine, file_id: int) -> Iterator[ledger.ReceivedFile]:
    """Hold one file for this run from staging to decision; yields its ledger row as it is once held.

    A second run deciding the same file at the same time waits here, then finds it decided (its staging
    table is the same name, so two runs must never stage it at once). The lock is a session advisory lock
    on a connection of its own: it is released when the block ends, or by PostgreSQL if the process dies.
    """
    with eng.connect().execution_options(isolation_level="AUTOCOMMIT") as holder:
        key = {"k": f"decide:{file_id}"}
        holder.execute(sa.text("SELECT pg_advisory_lock(hashtext(:k))"), key)
        try:
            yield ledger.get(holder, file_id)
        finally:
            with contextlib.suppress(sa.exc.DBAPIError):
                holder.execute(sa.text("SELECT pg_advisory_unlock(hashtext(:k))"), key)


def lock_slice(conn: Connection, feed_id: str, period_id: str) -> None:
    """Serialise every decision about one feed x period (held to the end of the transaction)."""
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"slice:{feed_id}:{period_id}"})


def publish(
    eng: Engine,
    partnership: Partnership,
    *,
    file_id: int,
    feed: Feed,
    dataset: Dataset,
    report: dict[str, Any],
    notify: bool = True,
) -> Outcome:
    """Replace the published slice with the staged rows of ``file_id``, or record why it can't.

    A file whose ``.done`` manifest promised another row count is quarantined instead. With ``notify``
    False (a past period loaded by ``partnerflow backfill``) no receipt or rejection is enqueued: the
    ledger notes why instead.
    """
    with eng.begin() as conn:
        outcome = _publish_in(
            conn, partnership, file_id=file_id, feed=feed, dataset=dataset, report=report, notify=notify
        )
    log.info("%s %s: file %s is %s (%d rows)", feed.id, outcome.period_id, file_id, outcome.state, outcome.rows)
    return outcome


def quarantine(
    eng: Engine,
    partnership: Partnership,
    *,
    file_id: int,
    feed: Feed,
    dataset: Dataset,
    report: dict[str, Any],
    notify: bool = True,
) -> Outcome:
    """Mark a file rejected with its report and tell the partner (unless ``notify`` is False, as for a
    past period's file loaded by backfill); published data stays as it was."""
    with eng.begin() as conn:
        outcome = quarantine_in(
            conn, partnership, file_id=file_id, feed=feed, dataset=dataset, report=report, notify=notify
        )
    log.info("%s %s: file %s is %s", feed.id, outcome.period_id, file_id, outcome.state)
    return outcome


def quarantine_in(
    conn: Connection,
    partnership: Partnership,
    *,
    file_id: int,
    feed: Feed,
    dataset: Dataset,
    report: dict[str, Any],
    notify: bool = True,
) -> Outcome:
    """``quarantine`` inside the caller's transaction (a file refused as it is recorded, say)."""
    codes = sorted({f["code"] for f in report["failures"] if f.get("severity", "error") == "error"})
    received = _locked(conn, feed, file_id)
    if received.state != ledger.RECEIVED:
        return Outcome(file_id, feed.id, received.period_id, received.state)
    period = Period.from_id(received.period_id)
    _store_report(conn, file_id, report)
    ledger.set_state(conn, file_id, ledger.REJECTED, "failed " + ", ".join(codes))
    conn.execute(
        sa.text(
            "UPDATE ops.submissions SET first_time_pass = coalesce(first_time_pass, false), updated_at = :at,"
            " state = CASE WHEN state = 'published' THEN state ELSE 'rejected' END"
            " WHERE feed_id = :f AND period_id = :p"
        ),
        {"at": clock.now(), "f": feed.id, "p": received.period_id},
    )
    if notify:
        enqueue(
            conn,
            messages.rejection(
                partnership,
                feed,
                period,
                file_id=file_id,
                source_name=received.source_name,
                report=report,
                due=due_date(partnership, feed, period),
            ),
        )
    else:
        ledger.note(conn, file_id, NOT_NOTIFIED)
    conn.execute(sa.text(f"DROP TABLE IF EXISTS {staging_table(dataset, file_id)}"))
    return Outcome(file_id, feed.id, received.period_id, ledger.REJECTED)


def _locked(conn: Connection, feed: Feed, file_id: int) -> ledger.ReceivedFile:
    """Lock the file's feed x period slice, then read its ledger row: another run may have decided it while
    this one waited for the lock."""
    lock_slice(conn, feed.id, ledger.get(conn, file_id).period_id)
    return ledger.get(conn, file_id)


def failure_report(code: str, message: str, *, stage: str = "transport") -> dict[str, Any]:
    """A rejection report with one file-level failure, in the shape the contract check produces."""
    return _with_failure({"passed": False, "stage": stage, "rules_checked": 1, "failures": []}, (code, message))


def _publish_in(
    conn: Connection,
    partnership: Partnership,
    *,
    file_id: int,
    feed: Feed,
    dataset: Dataset,
    report: dict[str, Any],
    notify: bool = True,
) -> Outcome:
    received = _locked(conn, feed, file_id)
    if received.state != ledger.RECEIVED:
        return Outcome(file_id, feed.id, received.period_id, received.state)
    staging = staging_table(dataset, file_id)
    rows = conn.execute(sa.text(f"SELECT count(*) FROM {staging}")).scalar_one()
    if received.declared_rows is not None and rows != received.declared_rows:
        failed = _with_failure(report, (MANIFEST_ROWS_RULE, MANIFEST_ROWS_MESSAGE))
        return quarantine_in(
            conn, partnership, file_id=file_id, feed=feed, dataset=dataset, report=failed, notify=notify
        )
    current = conn.execute(
        sa.text("SELECT published_file_id FROM ops.submissions WHERE feed_id = :f AND period_id = :p"),
        {"f": feed.id, "p": received.period_id},
    ).scalar()
    _store_report(conn, file_id, report)
    if current is not None and current > file_id:
        ledger.set_state(conn, file_id, ledger.SUPERSEDED, f"file {current} arrived later and is published")
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {staging}"))
        return Outcome(file_id, feed.id, received.period_id, ledger.SUPERSEDED)
    partitions.swap_in(
        conn,
        dataset,
        staging=staging,
        file_id=file_id,
        feed_id=feed.id,
        period_id=received.period_id,
        sha256=received.sha256,
        loaded_at=clock.now().isoformat(),
        replacing=current,
    )
    if current is not None:
        ledger.set_state(conn, current, ledger.SUPERSEDED, f"replaced by file {file_id}")
    ledger.set_state(conn, file_id, ledger.PUBLISHED, f"{rows} rows published", row_count=rows)
    earlier_rejections = ledger.rejected_before(conn, feed_id=feed.id, period_id=received.period_id, file_id=file_id)
    conn.execute(
        sa.text(
            "UPDATE ops.submissions SET state = 'published', published_at = :at, published_file_id = :i,"
            " rows_published = :n, first_time_pass = coalesce(first_time_pass, :first), updated_at = :at"
            " WHERE feed_id = :f AND period_id = :p"
        ),
        {
            "at": clock.now(),
            "i": file_id,
            "n": rows,
            "first": earlier_rejections == 0,
            "f": feed.id,
            "p": received.period_id,
        },
    )
    warnings = [f for f in report.get("failures", []) if f.get("severity") == "warning"]
    if not notify:
        ledger.note(conn, file_id, NOT_NOTIFIED)
        return Outcome(file_id, feed.id, received.period_id, ledger.PUBLISHED, rows)
    notes = [f for f in report.get("failures", []) if f.get("severity") == "info"]
    enqueue(
        conn,
        messages.receipt(
            partnership,
            feed,
            Period.from_id(received.period_id),
            file_id=file_id,
            source_name=received.source_name,
            rows=rows,
            warnings=warnings,
            notes=notes,
        ),
    )
    return Outcome(file_id, feed.id, received.period_id, ledger.PUBLISHED, rows)


def _with_failure(report: dict[str, Any], failure: tuple[str, str]) -> dict[str, Any]:
    code, message = failure
    entry = {"code": code, "message": message, "columns": [], "severity": "error", "failing_rows": 0, "row_numbers": []}
    return {**report, "passed": False, "failures": [entry, *report.get("failures", [])]}


def _store_report(conn: Connection, file_id: int, report: dict[str, Any]) -> None:
    conn.execute(
        sa.text(
            "INSERT INTO ops.validation_reports (file_id, passed, report) VALUES (:i, :p, CAST(:r AS jsonb))"
            " ON CONFLICT (file_id) DO UPDATE SET passed = excluded.passed, report = excluded.report"
        ),
        {"i": file_id, "p": bool(report.get("passed")), "r": json.dumps(report)},
    )
