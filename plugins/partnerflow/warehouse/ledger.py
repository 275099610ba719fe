"""The ledger of received files and the submission state of every feed x period.

Every file received ends in exactly one state: published, rejected, duplicate or superseded (or failed,
when an engineer must look). Each change is kept in ``ops.file_events`` with its time and reason, and so is
anything else done to the file (moved to the partner's processed folder).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from partnerflow.core import clock
from partnerflow.transport.landing import LandedFile

RECEIVED = "received"
REJECTED = "rejected"
PUBLISHED = "published"
DUPLICATE = "duplicate"
SUPERSEDED = "superseded"
FAILED = "failed"


@dataclass(frozen=True)
class ReceivedFile:
    id: int
    feed_id: str
    period_id: str
    source_name: str
    sha256: str
    landed_path: str
    state: str
    duplicate_of: int | None
    declared_rows: int | None = None
    """The row count a ``.done`` manifest promised; publish refuses the file if the staged rows differ."""
    source_size: int | None = None
    source_mtime: dt.datetime | None = None


def already_received(conn: Connection, *, feed_id: str, source_name: str, size: int, mtime: dt.datetime) -> bool:
    """Whether this exact listing entry (name, size, mtime) was downloaded before: no need to fetch again."""
    return bool(
        conn.execute(
            sa.text(
                "SELECT 1 FROM ops.received_files WHERE feed_id = :f AND source_name = :n "
                "AND source_size = :s AND source_mtime = :m LIMIT 1"
            ),
            {"f": feed_id, "n": source_name, "s": size, "m": mtime},
        ).first()
    )


def record_received(
    conn: Connection,
    *,
    feed_id: str,
    period_id: str,
    source_name: str,
    landed: LandedFile,
    source_mtime: dt.datetime | None,
    due_date: dt.date,
    source_size: int | None = None,
    archive: LandedFile | None = None,
    declared_rows: int | None = None,
) -> ReceivedFile:
    """Record a landed file. The same bytes as a file of this feed that is waiting, published or superseded
    become a 'duplicate' row; the same bytes as a rejected file are recorded to be decided again.

    ``landed`` is what will be parsed; ``archive`` the zip or gz it came in, if any (both are kept), and
    ``source_size`` the size the partner's server listed (the archive's, for an archive).
    """
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:f))"), {"f": f"received:{feed_id}"})
    original = conn.execute(
        sa.text(
            "SELECT id FROM ops.received_files WHERE feed_id = :f AND sha256 = :h"
            " AND state IN ('received', 'published', 'superseded')"
        ),
        {"f": feed_id, "h": landed.sha256},
    ).scalar()
    state = DUPLICATE if original else RECEIVED
    file_id = conn.execute(
        sa.text(
            "INSERT INTO ops.received_files (feed_id, period_id, source_name, source_size, source_mtime, sha256,"
            " landed_path, state, state_reason, duplicate_of, received_at, state_at, archive_sha256, archive_path,"
            " declared_rows)"
            " VALUES (:f, :p, :n, :s, :m, :h, :path, :state, :reason, :dup, :at, :at, :ah, :apath, :rows)"
            " RETURNING id"
        ),
        {
            "f": feed_id,
            "p": period_id,
            "n": source_name,
            "s": source_size if source_size is not None else (archive or landed).size,
            "ah": archive.sha256 if archive else None,
            "apath": archive.relative_path if archive else None,
            "rows": declared_rows,
            "m": source_mtime,
            "h": landed.sha256,
            "path": landed.relative_path,
            "state": state,
            "reason": f"same bytes as file {original}" if original else None,
            "dup": original,
            "at": clock.now(),
        },
    ).scalar_one()
    _event(conn, file_id, state, f"same bytes as file {original}" if original else f"from {source_name}")
    conn.execute(
        sa.text(
            "INSERT INTO ops.submissions (feed_id, period_id, due_date, state, first_received_at)"
            " VALUES (:f, :p, :d, 'received', :at)"
            " ON CONFLICT (feed_id, period_id) DO UPDATE SET"
            " first_received_at = coalesce(ops.submissions.first_received_at, :at),"
            " state = CASE WHEN ops.submissions.state = 'expected' THEN 'received' ELSE ops.submissions.state END,"
            " updated_at = :at"
        ),
        {"f": feed_id, "p": period_id, "d": due_date, "at": clock.now()},
    )
    return get(conn, file_id)


_COLUMNS = (
    "id, feed_id, period_id, source_name, sha256, landed_path, state, duplicate_of, declared_rows,"
    " source_size, source_mtime"
)


def get(conn: Connection, file_id: int) -> ReceivedFile:
    row = conn.execute(sa.text(f"SELECT {_COLUMNS} FROM ops.received_files WHERE id = :i"), {"i": file_id}).one()
    return ReceivedFile(*row)


def latest_sha256(conn: Connection, *, feed_id: str, period_id: str, source_name: str) -> str | None:
    """The sha256 of the newest file recorded from this source for a feed x period (an API's last answer)."""
    return conn.execute(
        sa.text(
            "SELECT sha256 FROM ops.received_files WHERE feed_id = :f AND period_id = :p AND source_name = :n"
            " ORDER BY id DESC LIMIT 1"
        ),
        {"f": feed_id, "p": period_id, "n": source_name},
    ).scalar()


def latest_for_listing(
    conn: Connection, *, feed_id: str, source_name: str, size: int, mtime: dt.datetime
) -> ReceivedFile | None:
    """The newest ledger row for this exact listing entry (name, size, mtime), if it was downloaded."""
    row = conn.execute(
        sa.text(
            f"SELECT {_COLUMNS} FROM ops.received_files WHERE feed_id = :f AND source_name = :n"
            " AND source_size = :s AND source_mtime = :m ORDER BY id DESC LIMIT 1"
        ),
        {"f": feed_id, "n": source_name, "s": size, "m": mtime},
    ).first()
    return ReceivedFile(*row) if row else None


def note(conn: Connection, file_id: int, reason: str) -> None:
    """Record something done to a file that does not change its state (moved to the processed folder)."""
    state = conn.execute(sa.text("SELECT state FROM ops.received_files WHERE id = :i"), {"i": file_id}).scalar_one()
    _event(conn, file_id, state, reason)


def set_state(conn: Connection, file_id: int, state: str, reason: str, *, row_count: int | None = None) -> None:
    conn.execute(
        sa.text(
            "UPDATE ops.received_files SET state = :s, state_reason = :r, state_at = :at,"
            " row_count = coalesce(:n, row_count) WHERE id = :i"
        ),
        {"s": state, "r": reason, "n": row_count, "i": file_id, "at": clock.now()},
    )
    _event(conn, file_id, state, reason)


def pending(conn: Connection, feed_id: str) -> list[int]:
    """Files of a feed received but not yet decided, oldest first (a run picks up what an earlier one left)."""
    return list(
        conn.execute(
            sa.text("SELECT id FROM ops.received_files WHERE feed_id = :f AND state = 'received' ORDER BY id"),
            {"f": feed_id},
        ).scalars()
    )


@dataclass(frozen=True)
class PublishedFile:
    """The file whose rows are a feed's latest published return."""

    id: int
    row_count: int | None


@dataclass(frozen=True)
class FileCounts:
    """How many files a feed x period has had, by what became of them."""

    received: int  # every file, duplicates included
    rejected: int
    waiting: int  # received or failed: waiting for a decision


@dataclass(frozen=True)
class LatestFile:
    """The newest file of a feed x period that is not a duplicate, with the count of all its files."""

    source_name: str | None
    state: str | None
    files_received: int


def exists(conn: Connection) -> bool:
    """Whether this database has a ledger at all (a warehouse never migrated has none)."""
    return conn.execute(sa.text("SELECT to_regclass('ops.received_files')")).scalar() is not None


def last_published(conn: Connection, feed_id: str) -> PublishedFile | None:
    """The feed's latest published file, or None when nothing of it is published."""
    row = conn.execute(
        sa.text(
            "SELECT id, row_count FROM ops.received_files WHERE feed_id = :f AND state = 'published'"
            " ORDER BY id DESC LIMIT 1"
        ),
        {"f": feed_id},
    ).first()
    return None if row is None else PublishedFile(row.id, row.row_count)


def file_counts(conn: Connection, *, feed_id: str, period_id: str) -> FileCounts:
    row = conn.execute(
        sa.text(
            "SELECT count(*) AS received, count(*) FILTER (WHERE state = 'rejected') AS rejected,"
            " count(*) FILTER (WHERE state IN ('received', 'failed')) AS waiting"
            " FROM ops.received_files WHERE feed_id = :f AND period_id = :p"
        ),
        {"f": feed_id, "p": period_id},
    ).one()
    return FileCounts(received=row.received, rejected=row.rejected, waiting=row.waiting)


def rejected_before(conn: Connection, *, feed_id: str, period_id: str, file_id: int) -> int:
    """How many files of the feed x period were rejected before ``file_id``."""
    count: int = conn.execute(
        sa.text(
            "SELECT count(*) FROM ops.received_files WHERE feed_id = :f AND period_id = :p"
            " AND state = 'rejected' AND id < :i"
        ),
        {"f": feed_id, "p": period_id, "i": file_id},
    ).scalar_one()
    return count


def latest_rejection(conn: Connection, *, feed_id: str, period_id: str) -> dict[str, Any]:
    """The newest rejected file of a feed x period: ``source_name``, ``received_at``, ``versions`` (rejected
    files in all) and ``checks_failed`` (errors in its report). Only call it when one was rejected."""
    return dict(
        conn.execute(
            sa.text(
                """
                SELECT r.source_name, r.received_at,
                       (SELECT count(*) FROM ops.received_files x
                         WHERE x.feed_id = r.feed_id AND x.period_id = r.period_id AND x.state = 'rejected')
                         AS versions,
                       coalesce((SELECT count(*) FROM jsonb_array_elements(v.report -> 'failures') f
                                  WHERE coalesce(f ->> 'severity', 'error') = 'error'), 0) AS checks_failed
                FROM ops.received_files r
                LEFT JOIN ops.validation_reports v ON v.file_id = r.id
                WHERE r.feed_id = :feed_id AND r.period_id = :period_id AND r.state = 'rejected'
                ORDER BY r.id DESC
                LIMIT 1
                """
            ),
            {"feed_id": feed_id, "period_id": period_id},
        )
        .mappings()
        .one()
    )


def latest_files(conn: Connection) -> dict[tuple[str, str], LatestFile]:
    """Per feed x period: its newest file that is not a duplicate, and how many files it had."""
    rows = conn.execute(
        sa.text(
            """
            SELECT feed_id, period_id, count(*) AS files,
                   (array_agg(source_name ORDER BY id DESC) FILTER (WHERE state <> 'duplicate'))[1] AS source_name,
                   (array_agg(state ORDER BY id DESC) FILTER (WHERE state <> 'duplicate'))[1] AS state
            FROM ops.received_files
            GROUP BY feed_id, period_id
            """
        )
    )
    return {(r.feed_id, r.period_id): LatestFile(r.source_name, r.state, r.files) for r in rows}


def _event(conn: Connection, file_id: int, state: str, reason: str | None) -> None:
    conn.execute(
        sa.text("INSERT INTO ops.file_events (file_id, state, reason, at) VALUES (:i, :s, :r, :at)"),
        {"i": file_id, "s": state, "r": reason, "at": clock.now()},
    )


# --- what the cockpit reads: a slice's files, a file's history, near-miss uploads ----------------------


IGNORED = "ignored"


@dataclass(frozen=True)
class SliceFile:
    """One file of a feed x period with its stored, value-free validation report (None if not checked)."""

    id: int
    feed_id: str
    period_id: str
    source_name: str
    state: str
    state_reason: str | None
    received_at: dt.datetime
    state_at: dt.datetime
    row_count: int | None
    report: dict[str, Any] | None


_SLICE_FILES = """
    SELECT r.id, r.feed_id, r.period_id, r.source_name, r.state, r.state_reason, r.received_at, r.state_at,
           r.row_count, v.report
    FROM ops.received_files r LEFT JOIN ops.validation_reports v ON v.file_id = r.id
"""


def slice_files(conn: Connection) -> dict[tuple[str, str], list[SliceFile]]:
    """Every file, by feed x period, oldest first, each with its validation report."""
    found: dict[tuple[str, str], list[SliceFile]] = {}
    for row in conn.execute(sa.text(_SLICE_FILES + " ORDER BY r.id")):
        found.setdefault((row.feed_id, row.period_id), []).append(SliceFile(*row))
    return found


def file_with_report(conn: Connection, file_id: int) -> SliceFile | None:
    """One file and its validation report; None when there is no such file."""
    row = conn.execute(sa.text(_SLICE_FILES + " WHERE r.id = :i"), {"i": file_id}).first()
    return SliceFile(*row) if row else None


@dataclass(frozen=True)
class FileEvent:
    state: str
    reason: str | None
    at: dt.datetime


def history(conn: Connection, file_id: int) -> list[FileEvent]:
    """A file's ledger history (``ops.file_events``), oldest first."""
    rows = conn.execute(
        sa.text("SELECT state, reason, at FROM ops.file_events WHERE file_id = :i ORDER BY at, id"), {"i": file_id}
    )
    return [FileEvent(*row) for row in rows]


@dataclass(frozen=True)
class IgnoredFile:
    """A near-miss upload: left alone in the partner's drop, recorded once with the reason."""

    feed_id: str
    period_id: str
    source_name: str
    reason: str
    expected_name: str
    seen_at: dt.datetime


def record_ignored(
    conn: Connection,
    *,
    feed_id: str,
    period_id: str,
    source_name: str,
    reason: str,
    expected_name: str,
    notification_key: str,
) -> bool:
    """Record a near-miss upload once per feed and name; True when it is new (tell the partner then)."""
    inserted = conn.execute(
        sa.text(
            "INSERT INTO ops.ignored_files (feed_id, period_id, source_name, reason, expected_name, seen_at,"
            " notification_key) VALUES (:f, :p, :n, :r, :e, :at, :k) ON CONFLICT (feed_id, source_name) DO NOTHING"
            " RETURNING id"
        ),
        {
            "f": feed_id,
            "p": period_id,
            "n": source_name,
            "r": reason,
            "e": expected_name,
            "at": clock.now(),
            "k": notification_key,
        },
    ).first()
    return inserted is not None


def ignored_files(conn: Connection) -> dict[tuple[str, str], list[IgnoredFile]]:
    """Every near-miss upload recorded, by feed x period, oldest first."""
    found: dict[tuple[str, str], list[IgnoredFile]] = {}
    rows = conn.execute(
        sa.text(
            "SELECT feed_id, period_id, source_name, reason, expected_name, seen_at FROM ops.ignored_files"
            " ORDER BY seen_at, id"
        )
    )
    for row in rows:
        found.setdefault((row.feed_id, row.period_id), []).append(IgnoredFile(*row))
    return found
