"""The ledger of received files and the submission state of every feed x period.

Every file received ends in exactly one state: published, rejected, duplicate or superseded (or failed,
when an engineer must look). Each change is kept in ``ops.file_events`` with its time and reason.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from partnerflow import clock
from partnerflow.landing import LandedFile

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
) -> ReceivedFile:
    """Record a landed file. The same bytes seen before for this feed become a 'duplicate' row."""
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:f))"), {"f": f"received:{feed_id}"})
    original = conn.execute(
        sa.text("SELECT id FROM ops.received_files WHERE feed_id = :f AND sha256 = :h AND state <> 'duplicate'"),
        {"f": feed_id, "h": landed.sha256},
    ).scalar()
    state = DUPLICATE if original else RECEIVED
    file_id = conn.execute(
        sa.text(
            "INSERT INTO ops.received_files (feed_id, period_id, source_name, source_size, source_mtime, sha256,"
            " landed_path, state, state_reason, duplicate_of, received_at, state_at)"
            " VALUES (:f, :p, :n, :s, :m, :h, :path, :state, :reason, :dup, :at, :at) RETURNING id"
        ),
        {
            "f": feed_id,
            "p": period_id,
            "n": source_name,
            "s": landed.size,
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


def get(conn: Connection, file_id: int) -> ReceivedFile:
    row = conn.execute(
        sa.text(
            "SELECT id, feed_id, period_id, source_name, sha256, landed_path, state, duplicate_of"
            " FROM ops.received_files WHERE id = :i"
        ),
        {"i": file_id},
    ).one()
    return ReceivedFile(*row)


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


def _event(conn: Connection, file_id: int, state: str, reason: str | None) -> None:
    conn.execute(
        sa.text("INSERT INTO ops.file_events (file_id, state, reason, at) VALUES (:i, :s, :r, :at)"),
        {"i": file_id, "s": state, "r": reason, "at": clock.now()},
    )
