"""What a period's Board pack is made of: the figures and return statuses it shows, and which edition it is.

The renderers (``boardpack`` for HTML and CSV, ``pdf``) read these; nothing here reads the database.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from partnerflow.core import wording
from partnerflow.core.config import Partnership
from partnerflow.core.periods import Period
from partnerflow.report.commentary import ThemeCommentary
from partnerflow.report.kpis import FeedStatus, KpiRow

WORDING_KEYS = ("title", "method", "theme", "benchmarks")  # configured words, not data: left out of the fingerprint
RAG_LABELS = {"red": "Red", "amber": "Amber", "green": "Green", "none": "No target"}


@dataclass(frozen=True)
class SentVersion:
    """A version of the pack the Board has already received."""

    version: int
    sent_on: dt.date


@dataclass(frozen=True, kw_only=True)
class Edition:
    """Which version of the period's pack this is, when it was built, and what it replaces."""

    version: int = 1
    built_on: dt.date
    supersedes: SentVersion | None = None
    changes: tuple[str, ...] = ()
    meeting: dt.date | None = None

    @property
    def revised(self) -> bool:
        return self.supersedes is not None

    @property
    def banner(self) -> str:
        """``Revised: supersedes version 1 sent on 28 Oct 2026``, or an empty string for a first version."""
        if self.supersedes is None:
            return ""
        sent_on = wording.short_date(self.supersedes.sent_on)
        return f"Revised: supersedes version {self.supersedes.version} sent on {sent_on}"


@dataclass(frozen=True, kw_only=True)
class PackContent:
    """Everything a period's pack shows, after disclosure control, as of one day."""

    partnership: Partnership
    period: Period
    as_of: dt.date
    rows: tuple[KpiRow, ...]
    statuses: tuple[FeedStatus, ...]
    commentary: Mapping[str, ThemeCommentary] = field(default_factory=dict)
    """The officer's words per theme (``report.commentary``): wording, so not part of the fingerprint."""

    def commentary_for(self, theme: str) -> ThemeCommentary:
        return self.commentary.get(theme) or ThemeCommentary()

    @property
    def attention(self) -> tuple[FeedStatus, ...]:
        """Returns that are missing, late or were rejected for the period: every one is named in the pack."""
        return tuple(s for s in self.statuses if s.needs_attention)

    @property
    def themes(self) -> dict[str, list[KpiRow]]:
        themes: dict[str, list[KpiRow]] = {}
        for row in self.rows:
            themes.setdefault(row.theme, []).append(row)
        return themes

    @property
    def rag_counts(self) -> dict[str, int]:
        return {rag: sum(1 for r in self.rows if r.rag == rag) for rag in RAG_LABELS}

    @property
    def red(self) -> tuple[KpiRow, ...]:
        return tuple(r for r in self.rows if r.rag == "red")

    @property
    def data_as_at(self) -> dt.date | None:
        published = [s.published_on for s in self.statuses if s.published_on is not None]
        return max(published) if published else None

    @property
    def suppression_rules(self) -> list[str]:
        return sorted({row.kpi.disclosure for row in self.rows} - {"none"})

    @cached_property
    def figures(self) -> dict[str, Any]:
        """What the pack shows, as JSON: disclosure-controlled figures and return statuses only."""
        return {
            "period": self.period.id,
            "as_of": self.as_of.isoformat(),
            "kpis": [row.as_json() for row in self.rows],
            "returns": [_status_json(s) for s in self.statuses],
        }

    @cached_property
    def fingerprint(self) -> str:
        """A hash of the data shown (not of wording, layout or the day it was read)."""
        data = {
            "kpis": [{k: v for k, v in kpi.items() if k not in WORDING_KEYS} for kpi in self.figures["kpis"]],
            "returns": self.figures["returns"],
        }
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode("utf-8")).hexdigest()


def _status_json(status: FeedStatus) -> dict[str, Any]:
    return {
        "feed_id": status.feed_id,
        "feed": status.feed_title,
        "partner_id": status.partner_id,
        "partner": status.partner_name,
        "period": status.period.id,
        "state": status.state,
        "due": status.due_date.isoformat(),
        "received_on": status.received_on.isoformat() if status.received_on else None,
        "published_on": status.published_on.isoformat() if status.published_on else None,
        "files_rejected": status.files_rejected,
        "first_time_pass": status.first_time_pass,
        "on_time": status.on_time,
        # Arrived returns keep their lateness; a missing one's grows daily, so only its being late counts.
        "working_days_late": status.working_days_late if status.state in ("published", "received") else None,
        "summary": status.summary if status.state in ("published", "received") else _missing_summary(status),
    }


def _missing_summary(status: FeedStatus) -> str:
    if status.state == "not_expected":
        return status.summary
    if status.state == "rejected":
        return "Rejected, waiting for a corrected return."
    return "Not received." if status.due_passed else "Not yet due."
