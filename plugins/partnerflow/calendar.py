"""Reporting periods, working days and due dates.

Periods are calendar quarters with ids like ``2026Q3`` (July to September 2026); people see them labelled
with the financial year too ("Q2 2026/27"). Working days exclude weekends and England and Wales bank holidays.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from functools import cache

import holidays

from partnerflow.config import Feed, Partnership

PERIOD_ID = re.compile(r"^(?P<year>\d{4})Q(?P<quarter>[1-4])$")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True, order=True)
class Period:
    """A calendar quarter."""

    year: int
    quarter: int

    @classmethod
    def from_id(cls, period_id: str) -> Period:
        match = PERIOD_ID.match(period_id)
        if not match:
            raise ValueError(f"{period_id!r} is not a period id like 2026Q3")
        return cls(int(match["year"]), int(match["quarter"]))

    @classmethod
    def containing(cls, day: dt.date) -> Period:
        return cls(day.year, (day.month - 1) // 3 + 1)

    @property
    def id(self) -> str:
        return f"{self.year}Q{self.quarter}"

    @property
    def start(self) -> dt.date:
        return dt.date(self.year, 3 * self.quarter - 2, 1)

    @property
    def end(self) -> dt.date:
        return self.next().start - dt.timedelta(days=1)

    @property
    def label(self) -> str:
        """``Q2 2026/27 (Jul–Sep 2026)``: the financial-year quarter people use, and the months."""
        fy_start = self.year if self.quarter >= 2 else self.year - 1
        fy_quarter = (self.quarter + 2) % 4 + 1
        months = f"{MONTHS[self.start.month - 1]}–{MONTHS[self.end.month - 1]} {self.year}"
        return f"Q{fy_quarter} {fy_start}/{(fy_start + 1) % 100:02d} ({months})"

    def next(self) -> Period:
        return Period(self.year + self.quarter // 4, self.quarter % 4 + 1)

    def previous(self) -> Period:
        return Period(self.year - (self.quarter == 1), (self.quarter - 2) % 4 + 1)

    def contains(self, day: dt.date) -> bool:
        return self.start <= day <= self.end

    def __str__(self) -> str:
        return self.id


@cache
def _bank_holidays(year: int) -> frozenset[dt.date]:
    return frozenset(holidays.country_holidays("GB", subdiv="ENG", years=year))


def is_working_day(day: dt.date) -> bool:
    return day.weekday() < 5 and day not in _bank_holidays(day.year)


def add_working_days(day: dt.date, n: int) -> dt.date:
    """The date ``n`` working days after ``day`` (before it when ``n`` is negative); 0 gives ``day``."""
    step = 1 if n >= 0 else -1
    remaining = abs(n)
    while remaining:
        day += dt.timedelta(days=step)
        if is_working_day(day):
            remaining -= 1
    return day


def working_days_between(start: dt.date, end: dt.date) -> int:
    """Working days after ``start`` up to and including ``end`` (negative when ``end`` is earlier)."""
    if end < start:
        return -working_days_between(end, start)
    return sum(is_working_day(start + dt.timedelta(days=i)) for i in range(1, (end - start).days + 1))


def due_date(partnership: Partnership, feed: Feed, period: Period) -> dt.date:
    """When ``feed``'s return for ``period`` is due: N working days after the period ends."""
    return add_working_days(period.end, partnership.due_working_days(feed))


def collecting_period(as_of: dt.date) -> Period:
    """The period whose returns are being collected on ``as_of``: the latest quarter that has ended."""
    return Period.containing(as_of).previous()
