"""The submissions matrix: for every feed x period, where the return stands and what was sent about it."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from partnerflow.core.config import Partnership
from partnerflow.core.periods import Period, period_label
from partnerflow.warehouse import ledger


@dataclass(frozen=True)
class SliceStatus:
    feed_id: str
    partner: str
    period_id: str
    state: str
    due_date: dt.date | None
    rows_published: int | None
    latest_file: str | None
    latest_file_state: str | None
    files_received: int
    notifications_sent: int
    notifications_pending: int

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["due_date"] = self.due_date.isoformat() if self.due_date else None
        return data


NO_FILES = ledger.LatestFile(source_name=None, state=None, files_received=0)

MATRIX_SQL = sa.text(
    """
    SELECT s.feed_id, s.period_id, s.state, s.due_date, s.rows_published,
           (SELECT count(*) FROM ops.notifications n
             WHERE n.feed_id = s.feed_id AND n.period_id = s.period_id AND n.state = 'sent'),
           (SELECT count(*) FROM ops.notifications n
             WHERE n.feed_id = s.feed_id AND n.period_id = s.period_id AND n.state = 'pending')
    FROM ops.submissions s
    ORDER BY s.period_id DESC, s.feed_id
    """
)


def matrix(eng: Engine, partnership: Partnership) -> list[SliceStatus]:
    """Every feed x period the warehouse knows of, newest period first."""
    with eng.connect() as conn:
        rows = conn.execute(MATRIX_SQL).all()
        files = ledger.latest_files(conn)
    partners = {f.id: partnership.partner(f.partner).name for f in partnership.feeds}
    return [
        SliceStatus(
            feed_id=r[0],
            partner=partners.get(r[0], "(feed no longer configured)"),
            period_id=r[1],
            state=r[2],
            due_date=r[3],
            rows_published=r[4],
            latest_file=latest.source_name,
            latest_file_state=latest.state,
            files_received=latest.files_received,
            notifications_sent=r[5],
            notifications_pending=r[6],
        )
        for r in rows
        for latest in [files.get((r[0], r[1]), NO_FILES)]
    ]


def render_table(rows: list[SliceStatus]) -> str:
    """The matrix as a plain-text table for a terminal."""
    headers = ("period", "feed", "state", "due", "rows", "latest file", "files", "emails sent")
    body = [
        (
            period_label(r.period_id),
            r.feed_id,
            r.state,
            r.due_date.isoformat() if r.due_date else "",
            "" if r.rows_published is None else str(r.rows_published),
            f"{r.latest_file} ({r.latest_file_state})" if r.latest_file else "",
            str(r.files_received),
            str(r.notifications_sent),
        )
        for r in rows
    ]
    if not body:
        return "No submissions recorded yet."
    widths = [max(len(h), *(len(row[i]) for row in body)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in body]
    meanings = [_id_meaning(p) for p in dict.fromkeys(r.period_id for r in rows)]
    lines.append("In file names: " + "; ".join(m for m in meanings if m) + ".")
    return "\n".join(lines)


def _id_meaning(period_id: str) -> str:
    try:
        return Period.from_id(period_id).id_meaning
    except ValueError:
        return ""
