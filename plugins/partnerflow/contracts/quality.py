"""The data-quality record of each submission, for the Board's partner timeliness and quality measure.

Read from ``marts.submission_quality`` (``sql/migrations/0008_data_quality.sql``), which derives it from the
reports stored with every publish or quarantine decision: rules passed, rows with warnings, whether the
return passed first time and how many files it took. Rule codes and counts only; never a value.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection


@dataclass(frozen=True, kw_only=True)
class SubmissionQuality:
    """One feed x period: how its return fared against its checks.

    ``file_id`` is the file that stands for the submission (the published one, else the latest checked);
    the counts are that file's. ``first_time_pass`` is None until a file of the submission is decided.
    """

    feed_id: str
    period_id: str
    state: str
    first_time_pass: bool | None
    files_checked: int
    files_rejected: int
    file_id: int | None
    stage: str | None
    rules_checked: int | None
    rules_passed: int | None
    error_rules_failed: int | None
    warning_rules_failed: int | None
    rows_checked: int | None
    rows_with_warnings: int | None
    warning_codes: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def submission_quality(conn: Connection, *, period_id: str | None = None) -> list[SubmissionQuality]:
    """Every submission's quality record (of one period, if given), by feed and period."""
    query = "SELECT * FROM marts.submission_quality"
    if period_id is not None:
        query += " WHERE period_id = :p"
    rows = conn.execute(sa.text(query + " ORDER BY feed_id, period_id"), {"p": period_id}).mappings()
    return [SubmissionQuality(**{**row, "warning_codes": tuple(sorted(row["warning_codes"] or ()))}) for row in rows]
