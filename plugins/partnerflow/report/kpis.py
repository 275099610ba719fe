"""The Board's KPI table: each measure's value for a period after disclosure control, trend, RAG and gaps.

Values come from the ``marts.kpi_values`` view, except ``assessments_45wd``: working days need the England
and Wales bank holidays, and computing it here with ``partnerflow.calendar`` keeps one definition of a
working day (the one due dates use) instead of a second holiday table in the warehouse.

A KPI is shown only for periods where every one of its source feeds is published; otherwise it says which
partner's data is missing rather than showing a partial number. Everything derived for display (RAG,
direction of travel, trend) uses the disclosure-controlled value, so nothing shown reveals a hidden count.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from partnerflow.calendar import Period, add_working_days, due_date, working_days_between
from partnerflow.config import Kpi, Partnership
from partnerflow.report.disclosure import Cell, protect_kpi

Rag = Literal["green", "amber", "red", "none"]
Direction = Literal["up", "down", "same", "none"]
FeedState = Literal["published", "received", "rejected", "expected", "not_expected"]

LONDON = ZoneInfo("Europe/London")
ASSESSMENT_WORKING_DAYS = 45

# How each KPI is calculated, in words for the Board pack's method notes. A KPI in the configuration
# that is not listed here has no calculation yet and is shown as such.
METHODS: dict[str, str] = {
    "re_referrals_12m": (
        "Referrals in the quarter (by referral date) for a child who had an earlier referral in the "
        "12 months before, as a share of all referrals in the quarter. Each referral is counted once, as "
        "the council's latest return records it; a missing earlier return can make this rate look lower "
        "than it is."
    ),
    "assessments_45wd": (
        "Assessments authorised in the quarter within 45 working days of the assessment starting (weekends "
        "and England and Wales bank holidays excluded), as a share of all assessments authorised in the "
        "quarter. Assessments recorded as authorised before they started are left out."
    ),
    "referrals_nfa": (
        "Referrals in the quarter (by referral date) recorded as no further action, as a share of all "
        "referrals in the quarter."
    ),
    "ppn_high_grade": (
        "Public protection notices about children graded high (measure PPN_CHILD, grade H), as the police "
        "return for the quarter reports them."
    ),
    "da_child_present": (
        "Domestic abuse incidents with a child present (measure DA_CHILD_PRESENT, all grades), as the police "
        "return for the quarter reports them."
    ),
}


@dataclass(frozen=True)
class KpiValue:
    """A KPI's raw figures for one period, before disclosure control."""

    numerator: int
    denominator: int | None
    value: float | None


@dataclass(frozen=True, kw_only=True)
class FeedStatus:
    """Where one feed's return stands for a period, in the terms the Board pack reports."""

    feed_id: str
    feed_title: str
    partner_id: str
    partner_name: str
    period: Period
    state: FeedState
    due_date: dt.date
    received_on: dt.date | None = None
    published_on: dt.date | None = None
    files_rejected: int = 0
    working_days_late: int = 0

    @property
    def published(self) -> bool:
        return self.state == "published"

    @property
    def missing(self) -> bool:
        """No published data for the period (including a return that is not expected)."""
        return not self.published

    @property
    def late(self) -> bool:
        return self.working_days_late > 0

    @property
    def needs_attention(self) -> bool:
        """Missing, late or rejected at some point: the Board pack names the partner."""
        return self.state != "not_expected" and (self.missing or self.late or self.files_rejected > 0)

    @property
    def summary(self) -> str:
        """One plain sentence for the completeness section, such as ``Published 3 Nov 2026, on time.``"""
        rejected = (
            f"; {self.files_rejected} file{'s' if self.files_rejected != 1 else ''} rejected"
            if self.files_rejected
            else ""
        )
        lateness = f", {_working_days(self.working_days_late)} late" if self.late else ""
        if self.state == "published":
            when = f" {_day(self.published_on)}" if self.published_on else ""
            return f"Published{when}{lateness or ', on time'}{rejected}."
        if self.state == "not_expected":
            return "Not expected: no data-sharing agreement in force for this period."
        if self.state == "rejected":
            return f"Rejected, waiting for a corrected return (due {_day(self.due_date)}{lateness}){rejected}."
        if self.state == "received":
            return f"Received {_day(self.received_on)}, not yet published{lateness}{rejected}."
        overdue = f", {_working_days(self.working_days_late)} overdue" if self.late else ""
        return f"Not received (due {_day(self.due_date)}{overdue}){rejected}."


@dataclass(frozen=True)
class TrendPoint:
    """One period of a KPI's trend; ``cell`` is None when the period's data is missing."""

    period: Period
    cell: Cell | None

    @property
    def value(self) -> float | None:
        return self.cell.value if self.cell else None


@dataclass(frozen=True, kw_only=True)
class KpiRow:
    """One KPI for the Board: the period's published value, its trend, RAG and direction, and any gap."""

    kpi: Kpi
    period: Period
    value: Cell | None
    numerator: Cell | None
    denominator: Cell | None
    trend: tuple[TrendPoint, ...]
    rag: Rag
    direction: Direction
    improving: bool | None
    missing_feeds: tuple[str, ...]
    missing_from: tuple[str, ...]
    note: str

    @property
    def id(self) -> str:
        return self.kpi.id

    @property
    def title(self) -> str:
        return self.kpi.title

    @property
    def theme(self) -> str:
        return self.kpi.theme

    @property
    def unit(self) -> str:
        return self.kpi.unit

    @property
    def target(self) -> float | None:
        return self.kpi.target

    @property
    def method(self) -> str:
        return METHODS.get(self.kpi.id, "No calculation is defined for this measure yet.")

    @property
    def display(self) -> str:
        """The value as the Board reads it: the disclosed figure, or why there is none."""
        if self.value is not None:
            return self.value.text
        return "Data missing" if self.missing_from else "Not available"

    @property
    def target_text(self) -> str:
        """``≤ 22.0% (amber to 25.0%)``, or an empty string when the KPI has no target."""
        kpi = self.kpi
        if kpi.target is None or kpi.polarity == "none":
            return ""
        higher = kpi.polarity == "higher_is_better"
        suffix = "%" if kpi.unit == "percent" else ""
        amber_limit = kpi.target - kpi.tolerance if higher else kpi.target + kpi.tolerance
        amber = f" (amber to {amber_limit:.1f}{suffix})" if kpi.tolerance else ""
        return f"{'≥' if higher else '≤'} {kpi.target:.1f}{suffix}{amber}"


def kpi_table(
    engine: Engine,
    partnership: Partnership,
    period: Period | str,
    *,
    history: int = 8,
    as_of: dt.date | None = None,
) -> list[KpiRow]:
    """Every configured KPI for ``period``, with the last ``history`` periods (this one included) as trend."""
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn, conn.begin():
        return kpi_rows(conn, partnership, _period(period), history=history, as_of=as_of)


def kpi_rows(
    conn: Connection,
    partnership: Partnership,
    period: Period,
    *,
    history: int = 8,
    as_of: dt.date | None = None,
) -> list[KpiRow]:
    """``kpi_table`` on an open connection, so a caller can read KPIs and completeness in one snapshot."""
    if history < 1:
        raise ValueError("history must be at least 1 period")
    periods = _periods_ending(period, max(history, 2))
    values = kpi_values(conn, periods)
    statuses = {
        (s.feed_id, s.period.id): s for p in periods for s in submission_statuses(conn, partnership, p, as_of=as_of)
    }
    rows: list[KpiRow] = []
    for kpi in partnership.kpis:
        cells = {p.id: _published_cell(kpi, p, values, statuses) for p in periods}
        trend = tuple(TrendPoint(p, cells[p.id][0]) for p in periods[-history:])
        current, numerator, denominator = cells[period.id]
        previous = cells[period.previous().id][0]
        missing = [statuses[(f, period.id)] for f in kpi.source_feeds if statuses[(f, period.id)].missing]
        direction, improving = direction_of_travel(current, previous, kpi)
        rows.append(
            KpiRow(
                kpi=kpi,
                period=period,
                value=current,
                numerator=numerator,
                denominator=denominator,
                trend=trend,
                rag=rag_status(current.value if current else None, kpi),
                direction=direction,
                improving=improving,
                missing_feeds=tuple(s.feed_id for s in missing),
                missing_from=tuple(dict.fromkeys(s.partner_name for s in missing)),
                note=_note(kpi, missing),
            )
        )
    return rows


def kpi_values(conn: Connection, periods: Sequence[Period]) -> dict[tuple[str, str], KpiValue]:
    """Raw KPI figures keyed by (kpi_id, period_id): the marts view plus the Python-computed KPIs."""
    ids = [p.id for p in periods]
    rows = conn.execute(
        sa.text(
            "SELECT kpi_id, period_id, numerator, denominator, value FROM marts.kpi_values WHERE period_id = ANY(:ids)"
        ),
        {"ids": ids},
    )
    values = {
        (r.kpi_id, r.period_id): KpiValue(
            int(r.numerator),
            None if r.denominator is None else int(r.denominator),
            None if r.value is None else float(r.value),
        )
        for r in rows
    }
    for period_id, value in assessments_within_working_days(conn, ids).items():
        values[("assessments_45wd", period_id)] = value
    return values


def assessments_within_working_days(
    conn: Connection, period_ids: Iterable[str], *, limit: int = ASSESSMENT_WORKING_DAYS
) -> dict[str, KpiValue]:
    """Per period: assessments authorised within ``limit`` working days of starting, of all authorised."""
    rows = conn.execute(
        sa.text(
            "SELECT period_id, start_date, authorised_date, assessments FROM marts.assessment_durations "
            "WHERE period_id = ANY(:ids)"
        ),
        {"ids": list(period_ids)},
    )
    deadlines: dict[dt.date, dt.date] = {}
    totals: dict[str, tuple[int, int]] = {}
    for period_id, start, authorised, count in rows:
        if start not in deadlines:
            deadlines[start] = add_working_days(start, limit)
        within, total = totals.get(period_id, (0, 0))
        totals[period_id] = (within + (count if authorised <= deadlines[start] else 0), total + count)
    return {p: KpiValue(w, t, 100.0 * w / t if t else None) for p, (w, t) in totals.items()}


def submission_statuses(
    conn: Connection, partnership: Partnership, period: Period, *, as_of: dt.date | None = None
) -> list[FeedStatus]:
    """Every configured feed's return for ``period``, in configuration order, as of ``as_of`` (today)."""
    as_of = as_of or dt.datetime.now(LONDON).date()
    rows = {
        r.feed_id: r
        for r in conn.execute(sa.text("SELECT * FROM marts.submission_status WHERE period_id = :p"), {"p": period.id})
    }
    statuses: list[FeedStatus] = []
    for feed in partnership.feeds:
        partner = partnership.partner(feed.partner)
        row = rows.get(feed.id)
        due = row.due_date if row else due_date(partnership, feed, period)
        state: FeedState = row.state if row else "expected"
        if state == "expected" and not partner.agreement.in_force(period.end):
            state = "not_expected"
        statuses.append(
            FeedStatus(
                feed_id=feed.id,
                feed_title=feed.title,
                partner_id=partner.id,
                partner_name=partner.name,
                period=period,
                state=state,
                due_date=due,
                received_on=row.first_received_on if row else None,
                published_on=row.published_on if row else None,
                files_rejected=row.files_rejected if row else 0,
                working_days_late=_working_days_late(state, due, row, as_of),
            )
        )
    return statuses


def _working_days_late(state: FeedState, due: dt.date, row: sa.Row | None, as_of: dt.date) -> int:
    """Working days after the due date that usable data arrived, or, while none has, that it is overdue."""
    if state == "not_expected":
        return 0
    if state == "published" and row is not None:
        arrived = row.published_file_received_on or row.published_on
    elif state == "received" and row is not None:
        arrived = row.first_received_on
    else:
        arrived = as_of
    return max(working_days_between(due, arrived), 0) if arrived else 0


def rag_status(value: float | None, kpi: Kpi) -> Rag:
    """Green within target, amber within tolerance of it, red beyond; none without a target or value."""
    if value is None or kpi.target is None or kpi.polarity == "none":
        return "none"
    shortfall = kpi.target - value if kpi.polarity == "higher_is_better" else value - kpi.target
    # Float noise (22.0 - 21.999999...) must not make a value shown as on target amber.
    shortfall = round(shortfall, 6)
    if shortfall <= 0:
        return "green"
    if shortfall <= kpi.tolerance:
        return "amber"
    return "red"


def direction_of_travel(current: Cell | None, previous: Cell | None, kpi: Kpi) -> tuple[Direction, bool | None]:
    """Up, down or the same as the previous period, and whether that is better (None if polarity is none)."""
    if current is None or previous is None or current.value is None or previous.value is None:
        return "none", None
    if current.value == previous.value:
        return "same", None
    direction: Direction = "up" if current.value > previous.value else "down"
    if kpi.polarity == "none":
        return direction, None
    return direction, (direction == "up") == (kpi.polarity == "higher_is_better")


def _published_cell(
    kpi: Kpi,
    period: Period,
    values: dict[tuple[str, str], KpiValue],
    statuses: dict[tuple[str, str], FeedStatus],
) -> tuple[Cell | None, Cell | None, Cell | None]:
    """(value, numerator, denominator) as disclosed for one period; all None while source data is missing."""
    if kpi.id not in METHODS or any(statuses[(f, period.id)].missing for f in kpi.source_feeds):
        return None, None, None
    # A published return with no matching rows counts zero (an empty return is a real answer).
    raw = values.get((kpi.id, period.id)) or KpiValue(0, None if kpi.unit == "count" else 0, None)
    if kpi.unit == "count" and raw.value is None:
        raw = KpiValue(raw.numerator, None, float(raw.numerator))
    protected = protect_kpi(
        unit=kpi.unit,
        numerator=raw.numerator,
        denominator=raw.denominator,
        value=raw.value,
        rule=kpi.disclosure,
    )
    return protected.value, protected.numerator, protected.denominator


def _note(kpi: Kpi, missing: list[FeedStatus]) -> str:
    if kpi.id not in METHODS:
        return "No calculation is defined for this measure yet."
    if not missing:
        return ""
    if all(s.state == "not_expected" for s in missing):
        names = ", ".join(dict.fromkeys(s.partner_name for s in missing))
        return f"No data-sharing agreement in force with {names} for this period."
    names = ", ".join(dict.fromkeys(s.partner_name for s in missing))
    return f"Data missing from {names}."


def _periods_ending(period: Period, count: int) -> list[Period]:
    periods = [period]
    while len(periods) < count:
        periods.insert(0, periods[0].previous())
    return periods


def _period(period: Period | str) -> Period:
    return period if isinstance(period, Period) else Period.from_id(period)


def _day(day: dt.date | None) -> str:
    return f"{day.day} {day:%b %Y}" if day else "date unknown"


def _working_days(n: int) -> str:
    return f"{n} working day{'s' if n != 1 else ''}"
