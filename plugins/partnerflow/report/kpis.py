"""The Board's KPI table: each measure's value for a period after disclosure control, trend, RAG and gaps.

Every measure is configured (``kpis:`` in the partnership file) and its figures come from one view in
``sql/marts`` per measure, so a new measure is a mart query and a config entry. The view gives, per
period, ``numerator`` and (for a percentage or rate) ``denominator``; a ``breakdown`` measure gives them by
``category`` and the pack shows the table; a ``within_working_days`` measure gives ``start_date,
end_date, cases`` and is counted here with ``partnerflow.core.periods``, the same working days due dates use,
so the warehouse keeps no second bank-holiday list. ``ledger`` measures are the partnership's own: how
many returns came on time and passed their checks first time, from the submissions ledger.

A measure is shown only for periods where every one of its source returns is published; otherwise it
says which partner's data is missing rather than showing a partial number. Everything derived for
display (RAG, direction of travel, trend) uses the disclosure-controlled value, so nothing shown reveals a
hidden count.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from partnerflow.core import clock, wording
from partnerflow.core.config import Feed, Kpi, Partnership
from partnerflow.core.periods import Period, add_working_days, schedule, working_days_between
from partnerflow.report.disclosure import Cell, ProtectedTable, format_number, protect_kpi, protect_table

Rag = Literal["green", "amber", "red", "none"]
Direction = Literal["up", "down", "same", "none"]
FeedState = Literal["published", "received", "rejected", "expected", "not_expected"]

TREND_PERIODS = 8
NO_METHOD = "No description of this calculation is configured."


@dataclass(frozen=True)
class KpiFigures:
    """A measure's raw figures for one period, before disclosure control."""

    numerator: int
    denominator: int | None = None
    categories: dict[str, int] | None = None


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
    in_ledger: bool = False
    received_on: dt.date | None = None
    published_on: dt.date | None = None
    files_received: int = 0
    files_rejected: int = 0
    first_time_pass: bool | None = None
    working_days_late: int = 0
    due_passed: bool = False

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
    def on_time(self) -> bool | None:
        """Whether usable data arrived by the due date; None while it is not due and has not arrived."""
        if self.state == "not_expected":
            return None
        if self.state in ("published", "received"):
            return not self.late
        return False if self.due_passed else None

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

    @property
    def text(self) -> str:
        return self.cell.text if self.cell else "missing"


@dataclass(frozen=True)
class Breakdown:
    """A count measure by category over its trend periods, after primary and secondary suppression.

    ``periods`` are the columns (periods whose data is published); each column's total is the measure's
    value for that period. Row totals are not shown, so each period stands on its own across packs.
    """

    title: str
    categories: tuple[str, ...]
    periods: tuple[Period, ...]
    table: ProtectedTable


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
    breakdown: Breakdown | None = None
    responsible: tuple[str, ...] = ()
    available: bool = True

    @property
    def id(self) -> str:
        return self.kpi.id

    @property
    def title(self) -> str:
        return self.kpi.title

    @property
    def benchmarks_text(self) -> str:
        """``England 22.4% (2024); Statistical neighbours 21.0% (2024)``: empty when none are configured."""
        return "; ".join(f"{b.name} {format_number(b.value, self.kpi.unit)} ({b.year})" for b in self.kpi.benchmarks)

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
        return self.kpi.method.strip() or NO_METHOD

    @property
    def display(self) -> str:
        """The value as the Board reads it: the disclosed figure, or why there is none."""
        if self.value is not None:
            return self.value.text
        return "Data missing" if self.missing_from else "Not available"

    @property
    def rag_label(self) -> str:
        """``Red``, ``Amber``, ``Green``; ``No target`` when none is set; ``Not rated`` when there is no figure."""
        if self.rag != "none":
            return self.rag.capitalize()
        return "Not rated" if self.target_text else "No target"

    @property
    def target_text(self) -> str:
        """``≤ 22.0% (amber to 25.0%)``, or an empty string when the KPI has no target."""
        kpi = self.kpi
        if kpi.target is None or kpi.polarity == "none":
            return ""
        higher = kpi.polarity == "higher_is_better"
        amber_limit = kpi.target - kpi.tolerance if higher else kpi.target + kpi.tolerance
        amber = f" (amber to {_target_number(amber_limit, kpi)})" if kpi.tolerance else ""
        return f"{'≥' if higher else '≤'} {_target_number(kpi.target, kpi)}{amber}"

    @property
    def target_short(self) -> str:
        """``≤ 22.0%``: the target alone, for lists where the amber limit would crowd it."""
        return self.target_text.split(" (amber")[0]

    @property
    def travel_text(self) -> str:
        """``Up, worse``, ``No change`` or ``–``: the direction of travel since the previous period."""
        words = {"up": "Up", "down": "Down", "same": "No change", "none": "–"}[self.direction]
        if self.improving is True:
            return f"{words}, better"
        if self.improving is False:
            return f"{words}, worse"
        return words

    @property
    def parts_text(self) -> str:
        """``12 of 40`` for a percentage or rate, else an empty string."""
        if self.denominator is None or self.numerator is None:
            return ""
        return f"{self.numerator.text} of {self.denominator.text}"

    def as_json(self) -> dict[str, Any]:
        """What the pack shows of this measure (disclosure-controlled only), for the archive and pre-briefs."""
        return {
            "id": self.id,
            "benchmarks": self.benchmarks_text,
            "title": self.title,
            "theme": self.theme,
            "unit": self.unit,
            "display": self.display,
            "parts": self.parts_text,
            "target": self.target_text,
            "rag": self.rag,
            "rag_label": self.rag_label,
            "travel": self.travel_text,
            "note": self.note,
            "trend": [[p.period.id, p.text] for p in self.trend],
            "breakdown": _breakdown_json(self.breakdown),
            "responsible": list(self.responsible),
            "method": self.method,
        }


def kpi_table(
    engine: Engine,
    partnership: Partnership,
    period: Period | str,
    *,
    history: int = TREND_PERIODS,
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
    history: int = TREND_PERIODS,
    as_of: dt.date | None = None,
) -> list[KpiRow]:
    """``kpi_table`` on an open connection, so a caller can read KPIs and completeness in one snapshot."""
    if history < 1:
        raise ValueError("history must be at least 1 period")
    as_of = as_of or clock.today()
    periods = periods_ending(period, max(history, 2))
    by_period = {p.id: submission_statuses(conn, partnership, p, as_of=as_of) for p in periods}
    return [_kpi_row(conn, partnership, kpi, period, periods, history, by_period) for kpi in partnership.kpis]


def _kpi_row(
    conn: Connection,
    partnership: Partnership,
    kpi: Kpi,
    period: Period,
    periods: list[Period],
    history: int,
    by_period: dict[str, list[FeedStatus]],
) -> KpiRow:
    sources = {
        p.id: [s for s in by_period[p.id] if not kpi.source_feeds or s.feed_id in kpi.source_feeds] for p in periods
    }
    missing_now = [s for s in sources[period.id] if s.missing] if not kpi.ledger else []
    available = {p.id: not kpi.ledger and not any(s.missing for s in sources[p.id]) for p in periods}
    figures = None if kpi.ledger else kpi_figures(conn, kpi, [p for p in periods if available[p.id]])
    breakdown = None
    if kpi.ledger:
        cells = {p.id: _ledger_cells(kpi, sources[p.id]) for p in periods}
    elif figures is None:
        cells = {p.id: (None, None, None) for p in periods}
    elif kpi.breakdown:
        breakdown = _breakdown(kpi, [p for p in periods[-history:] if available[p.id]], figures)
        cells = {p.id: _breakdown_cells(kpi, p, available[p.id], figures, breakdown) for p in periods}
    else:
        cells = {
            p.id: _protected_cells(kpi, figures.get(p.id)) if available[p.id] else (None, None, None) for p in periods
        }
    current, numerator, denominator = cells[period.id]
    direction, improving = direction_of_travel(current, cells[period.previous().id][0], kpi)
    rag = rag_status(current.value if current else None, kpi)
    return KpiRow(
        kpi=kpi,
        period=period,
        value=current,
        numerator=numerator,
        denominator=denominator,
        trend=tuple(TrendPoint(p, cells[p.id][0]) for p in periods[-history:]),
        rag=rag,
        direction=direction,
        improving=improving,
        missing_feeds=tuple(dict.fromkeys(s.feed_id for s in missing_now)),
        missing_from=tuple(dict.fromkeys(s.partner_name for s in missing_now)),
        note=_note(kpi, missing_now, figures is not None or bool(kpi.ledger)),
        breakdown=breakdown,
        responsible=_responsible(partnership, kpi, sources[period.id]),
        available=kpi.ledger is not None or figures is not None,
    )


def kpi_figures(conn: Connection, kpi: Kpi, periods: Sequence[Period]) -> dict[str, KpiFigures] | None:
    """A mart measure's raw figures by period id (periods with no rows are absent); None if its view does
    not exist."""
    view = kpi.mart_view
    if conn.execute(sa.text("SELECT to_regclass(:view)"), {"view": view}).scalar() is None:
        return None
    ids = [p.id for p in periods]
    if not ids:
        return {}
    # view is validated by the config model (marts.<identifier>), so it is safe to interpolate.
    rows = conn.execute(sa.text(f"SELECT * FROM {view} WHERE period_id = ANY(:ids)"), {"ids": ids}).mappings().all()
    if kpi.within_working_days:
        return _within_working_days(rows, kpi.within_working_days)
    if kpi.breakdown:
        totals: dict[str, dict[str, int]] = {}
        for row in rows:
            by_category = totals.setdefault(row["period_id"], {})
            by_category[str(row["category"])] = by_category.get(str(row["category"]), 0) + int(row["numerator"] or 0)
        return {p: KpiFigures(sum(c.values()), None, c) for p, c in totals.items()}
    figures: dict[str, KpiFigures] = {}
    for row in rows:
        denominator = row.get("denominator")
        figures[row["period_id"]] = KpiFigures(
            int(row["numerator"] or 0), None if denominator is None else int(denominator)
        )
    return figures


def value_of(kpi: Kpi, numerator: int, denominator: int | None) -> float | None:
    """A measure's value from its raw parts: a percentage, a rate per ``rate_per``, an average, or a count."""
    if kpi.unit == "count":
        return float(numerator)
    if not denominator:
        return None
    if kpi.unit == "percent":
        return 100.0 * numerator / denominator
    if kpi.unit == "rate":
        return kpi.rate_per * numerator / denominator
    return numerator / denominator


def submission_statuses(
    conn: Connection, partnership: Partnership, period: Period, *, as_of: dt.date | None = None
) -> list[FeedStatus]:
    """Every configured feed's return(s) for ``period``, in configuration order, as of ``as_of`` (today).

    A feed reporting by month or term has one status for each of its periods ending within ``period``.
    """
    as_of = as_of or clock.today()
    wanted = [
        (feed, feed_period) for feed in partnership.feeds for feed_period in feed_periods(partnership, feed, period)
    ]
    rows = {
        (r.feed_id, r.period_id): r
        for r in conn.execute(
            sa.text("SELECT * FROM marts.submission_status WHERE period_id = ANY(:ids)"),
            {"ids": sorted({p.id for _, p in wanted})},
        )
    }
    statuses: list[FeedStatus] = []
    for feed, feed_period in wanted:
        partner = partnership.partner(feed.partner)
        row = rows.get((feed.id, feed_period.id))
        due = row.due_date if row else schedule(partnership, feed).due_date(feed_period)
        state: FeedState = row.state if row else "expected"
        if state == "expected" and not partner.agreement.in_force(feed_period.end):
            state = "not_expected"
        statuses.append(
            FeedStatus(
                feed_id=feed.id,
                feed_title=feed.title,
                partner_id=partner.id,
                partner_name=partner.name,
                period=feed_period,
                state=state,
                due_date=due,
                in_ledger=row is not None,
                received_on=row.first_received_on if row else None,
                published_on=row.published_on if row else None,
                files_received=row.files_received if row else 0,
                files_rejected=row.files_rejected if row else 0,
                first_time_pass=row.first_time_pass if row else None,
                working_days_late=_working_days_late(state, due, row, as_of),
                due_passed=as_of > due,
            )
        )
    return statuses


def feed_periods(partnership: Partnership, feed: Feed, period: Period) -> list[Period]:
    """The feed's own periods that make up ``period``: itself for a feed of the same kind, else those
    ending within it (three months of a quarter, say)."""
    sched = schedule(partnership, feed)
    if sched.kind == period.kind:
        return [sched.period(period.id)]
    found, current = [], Period.containing(period.start, sched.kind, terms=sched.terms)
    while current.start <= period.end:
        if period.start <= current.end <= period.end:
            found.append(current)
        current = current.next()
    return found


def periods_ending(period: Period, count: int) -> list[Period]:
    """``count`` consecutive periods, oldest first, ending with ``period``."""
    periods = [period]
    while len(periods) < count:
        periods.insert(0, periods[0].previous())
    return periods


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


# --- figures ----------------------------------------------------------------------------------------


def _within_working_days(rows: Iterable[Any], limit: int) -> dict[str, KpiFigures]:
    """Per period: cases ending within ``limit`` working days of starting, of all cases."""
    deadlines: dict[dt.date, dt.date] = {}
    totals: dict[str, tuple[int, int]] = {}
    for row in rows:
        start, end, cases = row["start_date"], row["end_date"], int(row["cases"])
        if start not in deadlines:
            deadlines[start] = add_working_days(start, limit)
        within, total = totals.get(row["period_id"], (0, 0))
        totals[row["period_id"]] = (within + (cases if end <= deadlines[start] else 0), total + cases)
    return {p: KpiFigures(w, t) for p, (w, t) in totals.items()}


CellTriple = tuple[Cell | None, Cell | None, Cell | None]


def _protected_cells(kpi: Kpi, figures: KpiFigures | None) -> CellTriple:
    """(value, numerator, denominator) as disclosed for one period whose source data is published."""
    # A published return with no matching rows counts zero (an empty return is a real answer).
    figures = figures or KpiFigures(0, None if kpi.unit == "count" else 0)
    protected = protect_kpi(
        unit=kpi.unit,
        numerator=figures.numerator,
        denominator=figures.denominator,
        value=value_of(kpi, figures.numerator, figures.denominator),
        rule=kpi.disclosure,
    )
    return protected.value, protected.numerator, protected.denominator


def _breakdown(kpi: Kpi, periods: list[Period], figures: dict[str, KpiFigures]) -> Breakdown | None:
    by_period = {p.id: (figures[p.id].categories or {}) if p.id in figures else {} for p in periods}
    seen = {c for counts in by_period.values() for c in counts}
    # Configured categories in their order (a category with none this time shows 0), then any others.
    categories = [*kpi.categories, *sorted(seen - set(kpi.categories))]
    if not periods or not categories:
        return None
    counts = [[by_period[p.id].get(c, 0) for p in periods] for c in categories]
    table = protect_table(counts, kpi.disclosure, row_totals=False, column_totals=True)
    return Breakdown(title=kpi.breakdown or "", categories=tuple(categories), periods=tuple(periods), table=table)


def _breakdown_cells(
    kpi: Kpi, period: Period, available: bool, figures: dict[str, KpiFigures], breakdown: Breakdown | None
) -> CellTriple:
    if not available:
        return None, None, None
    if breakdown is not None and period in breakdown.periods:
        assert breakdown.table.column_totals is not None
        total = breakdown.table.column_totals[breakdown.periods.index(period)]
        return total, total, None
    # Outside the table (the previous period, for direction of travel): its own total, protected alone.
    return _protected_cells(kpi, figures.get(period.id))


def _ledger_cells(kpi: Kpi, statuses: list[FeedStatus]) -> CellTriple:
    """The partnership's own measure for one period; nothing when the ledger has no record of it."""
    counted = [s for s in statuses if s.state != "not_expected"]
    if not any(s.in_ledger for s in counted):
        return None, None, None
    if kpi.ledger == "on_time":
        judged = [s.on_time for s in counted if s.on_time is not None]
    else:
        judged = [s.first_time_pass for s in counted if s.first_time_pass is not None]
    if not judged:
        return None, None, None
    return _protected_cells(kpi, KpiFigures(sum(judged), len(judged)))


def _responsible(partnership: Partnership, kpi: Kpi, statuses: list[FeedStatus]) -> tuple[str, ...]:
    """The partners whose senior leads hear first when this measure is red."""
    if kpi.lead_partner:
        return (kpi.lead_partner,)
    if kpi.ledger == "on_time":
        return tuple(dict.fromkeys(s.partner_id for s in statuses if s.on_time is False))
    if kpi.ledger == "first_time_pass":
        return tuple(dict.fromkeys(s.partner_id for s in statuses if s.first_time_pass is False))
    return tuple(dict.fromkeys(partnership.feed(f).partner for f in kpi.source_feeds))


def _working_days_late(state: FeedState, due: dt.date, row: Any, as_of: dt.date) -> int:
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


def _note(kpi: Kpi, missing: list[FeedStatus], calculated: bool) -> str:
    if not calculated:
        return f"No calculation is defined for this measure yet (no view {kpi.mart_view})."
    if not missing:
        return ""
    names = ", ".join(dict.fromkeys(s.partner_name for s in missing))
    if all(s.state == "not_expected" for s in missing):
        return f"No data-sharing agreement in force with {names} for this period."
    return f"Data missing from {names}."


def _breakdown_json(breakdown: Breakdown | None) -> dict[str, Any] | None:
    if breakdown is None:
        return None
    table = breakdown.table
    return {
        "title": breakdown.title,
        "periods": [p.id for p in breakdown.periods],
        "rows": [[c, *(cell.text for cell in table.cells[i])] for i, c in enumerate(breakdown.categories)],
        "totals": [cell.text for cell in table.column_totals or ()],
    }


def _target_number(value: float, kpi: Kpi) -> str:
    return format_number(value, kpi.unit) if kpi.unit in ("percent", "days") else f"{value:,.1f}"


def _period(period: Period | str) -> Period:
    return period if isinstance(period, Period) else Period.from_id(period)


def _working_days(n: int) -> str:
    return f"{n} working day{'s' if n != 1 else ''}"


def _day(day: dt.date | None) -> str:
    return wording.short_date(day, missing="date unknown")
