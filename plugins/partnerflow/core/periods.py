"""Reporting periods, working days, due dates and the Board's dates.

A feed reports by quarter (the default), by month or by school term. A period id says which kind it is,
sorts as a string, and parses one way only:

    2026Q3    the quarter July to September 2026      "Q2 2026/27 (Jul–Sep 2026)"
    2026M10   October 2026 (always two digits)         "October 2026"
    2026T3    the autumn term of 2026                  "Autumn term 2026 (Sep–Dec 2026)"

Terms are numbered through the calendar year (T1 spring, T2 summer, T3 autumn); the day each starts comes
from ``calendar.terms`` and a term ends the day before the next one starts. Working days exclude weekends
and England and Wales bank holidays.

Pitfalls:
    Period ids (and days) are ASCII only, wherever they are parsed: in a regex ``\\d`` matches any
    Unicode digit (``٢٠٢٦``, ``２０２６``) and ``int()`` reads them, so ``icb_safeguarding_٢٠٢٦Q4.csv``
    once became a phantom period of its own. Patterns here say ``[0-9]``; ``Period.from_id`` and
    ``iso_day`` refuse anything else, and ``ascii_folded`` lets callers tell such a near miss apart.
"""

from __future__ import annotations

import calendar as stdlib_calendar
import datetime as dt
import fnmatch
import re
import unicodedata
from dataclasses import dataclass, field
from functools import cache, total_ordering

import holidays

from partnerflow.core.config import Feed, Ladder, Partnership, TermStarts

QUARTER, MONTH, TERM = "quarter", "month", "term"
KINDS = (QUARTER, MONTH, TERM)
_LETTERS = {QUARTER: "Q", MONTH: "M", TERM: "T"}
_KIND_OF_LETTER = {letter: kind for kind, letter in _LETTERS.items()}
_PER_YEAR = {QUARTER: 4, MONTH: 12, TERM: 3}
_TERM_NAMES = ("Spring", "Summer", "Autumn")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

PERIOD_ID_PATTERNS = {  # [0-9], never \d: see Pitfalls
    QUARTER: r"[0-9]{4}Q[1-4]",
    MONTH: r"[0-9]{4}M(?:0[1-9]|1[0-2])",
    TERM: r"[0-9]{4}T[1-3]",
}
PERIOD_ID_PATTERN = r"[0-9]{4}(?:Q[1-4]|M(?:0[1-9]|1[0-2])|T[1-3])"
"""Any period id, for a regex (no groups): what a file name's ``{period}`` may be."""
PERIOD_ID = re.compile(r"(?P<year>[0-9]{4})(?P<letter>[QMT])(?P<number>[0-9]{1,2})", re.ASCII)
ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)
NOT_ASCII_REASON = (
    "it is written with non-ASCII look-alikes (such as Arabic-Indic or full-width digits), so it names no period"
)


@dataclass(frozen=True)
class TermDates:
    """The (month, day) each school term starts."""

    spring: tuple[int, int] = (1, 1)
    summer: tuple[int, int] = (4, 1)
    autumn: tuple[int, int] = (9, 1)

    @classmethod
    def from_config(cls, terms: TermStarts) -> TermDates:
        def month_day(value: str) -> tuple[int, int]:
            month, day = value.split("-")
            return int(month), int(day)

        return cls(month_day(terms.spring), month_day(terms.summer), month_day(terms.autumn))

    def start(self, year: int, number: int) -> dt.date:
        """The first day of term ``number`` (1 spring, 2 summer, 3 autumn) of ``year``."""
        month, day = (self.spring, self.summer, self.autumn)[number - 1]
        return dt.date(year, month, day)


DEFAULT_TERMS = TermDates()


@total_ordering
@dataclass(frozen=True)
class Period:
    """A reporting period: ``Period(2026, 3)`` is the quarter 2026Q3; ``Period(2026, 10, MONTH)`` is 2026M10.

    Periods of one kind sort in time order, as their ids do.
    """

    year: int
    number: int
    kind: str = QUARTER
    terms: TermDates = field(default=DEFAULT_TERMS, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in _PER_YEAR:
            raise ValueError(f"{self.kind!r} is not a kind of period ({', '.join(KINDS)})")
        if not 1 <= self.number <= _PER_YEAR[self.kind] or not 1 <= self.year <= 9998:
            raise ValueError(f"there is no {self.kind} {self.number} in {self.year}")

    @classmethod
    def from_id(cls, period_id: str, *, terms: TermDates | None = None) -> Period:
        """The period an id like ``2026Q3``, ``2026M10`` or ``2026T3`` names: ASCII only (see Pitfalls)."""
        if not isinstance(period_id, str):
            raise ValueError(f"{period_id!r} is not a period id like 2026Q3, 2026M10 or 2026T3")
        match = PERIOD_ID.fullmatch(period_id) if period_id.isascii() else None
        if not match or not re.fullmatch(PERIOD_ID_PATTERN, period_id, re.ASCII):
            why = f" ({NOT_ASCII_REASON})" if not period_id.isascii() else ""
            raise ValueError(f"{period_id!r} is not a period id like 2026Q3, 2026M10 or 2026T3{why}")
        kind = _KIND_OF_LETTER[match["letter"]]
        return cls(int(match["year"]), int(match["number"]), kind, terms or DEFAULT_TERMS)

    @classmethod
    def containing(cls, day: dt.date, kind: str = QUARTER, *, terms: TermDates | None = None) -> Period:
        """The period of ``kind`` that ``day`` falls in."""
        terms = terms or DEFAULT_TERMS
        if kind == QUARTER:
            return cls(day.year, (day.month - 1) // 3 + 1)
        if kind == MONTH:
            return cls(day.year, day.month, MONTH)
        for year, number in ((day.year, 3), (day.year, 2), (day.year, 1), (day.year - 1, 3)):
            if terms.start(year, number) <= day:
                return cls(year, number, TERM, terms)
        raise AssertionError("unreachable: the previous autumn term starts before any day of this year")

    @property
    def id(self) -> str:
        width = 2 if self.kind == MONTH else 1
        return f"{self.year}{_LETTERS[self.kind]}{self.number:0{width}d}"

    @property
    def quarter(self) -> int:
        """The calendar quarter (1-4) the period starts in: the quarter's own number for a quarter."""
        return self.number if self.kind == QUARTER else (self.start.month - 1) // 3 + 1

    @property
    def start(self) -> dt.date:
        if self.kind == QUARTER:
            return dt.date(self.year, 3 * self.number - 2, 1)
        if self.kind == MONTH:
            return dt.date(self.year, self.number, 1)
        return self.terms.start(self.year, self.number)

    @property
    def end(self) -> dt.date:
        return self.next().start - dt.timedelta(days=1)

    @property
    def label(self) -> str:
        """What people call the period, with its months: ``Q2 2026/27 (Jul–Sep 2026)``."""
        if self.kind == MONTH:
            return self.short_label
        return f"{self.short_label} ({self.months})"

    @property
    def months(self) -> str:
        """The months the period covers: ``Jul–Sep 2026``, ``Sep–Dec 2026``, ``October 2026``."""
        if self.kind == MONTH:
            return self.short_label
        start, end = self.start, self.end
        if start.year == end.year:
            return f"{MONTHS[start.month - 1]}–{MONTHS[end.month - 1]} {end.year}"
        return f"{MONTHS[start.month - 1]} {start.year}–{MONTHS[end.month - 1]} {end.year}"

    @property
    def id_meaning(self) -> str:
        """What the id in a file name means, for the reader beside it: ``2026Q3 means Jul–Sep 2026``.

        File names and period ids count calendar quarters (2026Q3 is July to September); the labels people
        read count the financial year (Q2 2026/27). Wherever an id appears, this sentence goes next to it.
        """
        return f"{self.id} means {self.months}"

    def explain_name(self, name: str) -> str:
        """``name`` followed by what the period id in it means, if it has this period's id:
        ``referrals_2026Q3.csv — 2026Q3 means Jul–Sep 2026``; otherwise ``name`` as it is."""
        return f"{name} — {self.id_meaning}" if self.id in name else name

    @property
    def short_label(self) -> str:
        """The label without the months, for subject lines: ``Q2 2026/27``, ``October 2026``."""
        if self.kind == QUARTER:
            fy_start = self.year if self.number >= 2 else self.year - 1
            fy_quarter = (self.number + 2) % 4 + 1
            return f"Q{fy_quarter} {fy_start}/{(fy_start + 1) % 100:02d}"
        if self.kind == MONTH:
            return f"{stdlib_calendar.month_name[self.number]} {self.year}"
        return f"{_TERM_NAMES[self.number - 1]} term {self.year}"

    def next(self) -> Period:
        per_year = _PER_YEAR[self.kind]
        return Period(self.year + self.number // per_year, self.number % per_year + 1, self.kind, self.terms)

    def previous(self) -> Period:
        per_year = _PER_YEAR[self.kind]
        year = self.year - (self.number == 1)
        return Period(year, (self.number - 2) % per_year + 1, self.kind, self.terms)

    def contains(self, day: dt.date) -> bool:
        return self.start <= day <= self.end

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Period):
            return NotImplemented
        return (self.start, self.end) < (other.start, other.end)

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


def next_working_day(day: dt.date) -> dt.date:
    """``day`` itself if it is a working day, else the first working day after it."""
    while not is_working_day(day):
        day += dt.timedelta(days=1)
    return day


def working_days_between(start: dt.date, end: dt.date) -> int:
    """Working days after ``start`` up to and including ``end`` (negative when ``end`` is earlier)."""
    if end < start:
        return -working_days_between(end, start)
    return sum(is_working_day(start + dt.timedelta(days=i)) for i in range(1, (end - start).days + 1))


@dataclass(frozen=True)
class FeedSchedule:
    """A feed's calendar: the partnership's, with whatever the feed sets for itself in its place."""

    kind: str
    terms: TermDates
    due_working_days: int
    due_day_of_month: int | None
    ladder: Ladder

    def period(self, period_id: str) -> Period:
        """The period ``period_id`` names, with this calendar's term dates."""
        return Period.from_id(period_id, terms=self.terms)

    def due_date(self, period: Period) -> dt.date:
        period = self.period(period.id)
        if self.due_day_of_month is None:
            return add_working_days(period.end, self.due_working_days)
        year, month = (period.end.year + 1, 1) if period.end.month == 12 else (period.end.year, period.end.month + 1)
        day = min(self.due_day_of_month, stdlib_calendar.monthrange(year, month)[1])
        return next_working_day(dt.date(year, month, day))

    def collecting_period(self, as_of: dt.date) -> Period:
        """The period whose returns are being collected on ``as_of``: the latest one that has ended."""
        return Period.containing(as_of, self.kind, terms=self.terms).previous()


def schedule(partnership: Partnership, feed: Feed) -> FeedSchedule:
    """``feed``'s calendar: its own period, due rule and ladder steps where it sets them."""
    calendar, own = partnership.calendar, feed.calendar
    if own.due_working_days is not None or own.due_day_of_month is not None:
        due_working_days, due_day_of_month = partnership.due_working_days(feed), own.due_day_of_month
    else:
        due_working_days, due_day_of_month = calendar.due_working_days, calendar.due_day_of_month
    return FeedSchedule(
        kind=own.period or calendar.period,
        terms=TermDates.from_config(calendar.terms),
        due_working_days=due_working_days,
        due_day_of_month=due_day_of_month,
        ladder=calendar.ladder.merged(own.ladder),
    )


def after_go_live(partnership: Partnership, period: Period) -> bool:
    """Whether partnerflow answers for ``period``: it did not end before the partnership's ``go_live``."""
    return partnership.go_live is None or period.end >= partnership.go_live


def due_date(partnership: Partnership, feed: Feed, period: Period) -> dt.date:
    """When ``feed``'s return for ``period`` is due, by the feed's due rule."""
    return schedule(partnership, feed).due_date(period)


def collecting_period(as_of: dt.date, partnership: Partnership | None = None, feed: Feed | None = None) -> Period:
    """The period being collected on ``as_of``: the latest that has ended, of the feed's kind when a feed is
    given (else the partnership's kind, else quarters)."""
    if partnership is not None and feed is not None:
        return schedule(partnership, feed).collecting_period(as_of)
    if partnership is not None:
        terms = TermDates.from_config(partnership.calendar.terms)
        return Period.containing(as_of, partnership.calendar.period, terms=terms).previous()
    return Period.containing(as_of).previous()


def ascii_folded(text: str) -> str:
    """``text`` with full-width and other compatibility forms (NFKC) and every Unicode decimal digit written
    as ASCII: ``icb_٢٠٢٦Q4.csv`` -> ``icb_2026Q4.csv``. Equal to ``text`` when it had none. For telling a
    near miss (a name that would match but for its digits) from a name that is simply something else."""
    folded = unicodedata.normalize("NFKC", text)
    return "".join(str(unicodedata.decimal(c)) if c.isdecimal() else c for c in folded)


def iso_day(value: object, what: str = "the day") -> dt.date:
    """A day written ``YYYY-MM-DD`` in ASCII digits (a DAG conf's ``as_of``, a CLI argument); ValueError
    naming ``what`` otherwise. ``date.fromisoformat`` alone also takes ``20260703`` and ``2026-W27-5``."""
    text = value.strip() if isinstance(value, str) else value
    if not isinstance(text, str) or not ISO_DAY.fullmatch(text):
        raise ValueError(f"{what} must be a date written YYYY-MM-DD in digits 0-9")
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{what} is not a real date") from None


def period_label(period_id: str) -> str:
    """The label people read for a period id (``2026Q3`` -> ``Q2 2026/27 (Jul–Sep 2026)``); the id itself if
    it names no period. A Jinja filter in the e-mail and pack templates."""
    try:
        return Period.from_id(period_id).label
    except ValueError:
        return period_id


def period_id_regex(kind: str | None = None) -> str:
    """A regex (no groups) matching period ids of ``kind``, or of any kind."""
    return PERIOD_ID_PATTERNS[kind] if kind else PERIOD_ID_PATTERN


def period_of_name(partnership: Partnership, feed: Feed, name: str) -> Period | None:
    """The period a file name (SFTP) or endpoint path (API) belongs to for ``feed``; None if it is not one
    of the feed's names."""
    sched = schedule(partnership, feed)
    transport = feed.transport
    template = transport.pattern if transport.kind == "sftp" else transport.endpoint
    before, after = template.split("{period}", 1)
    period = rf"(?P<period>{period_id_regex(sched.kind)})"
    if transport.kind == "sftp":
        regex = fnmatch.translate(before)[4:-3] + period + fnmatch.translate(after)[4:-3]
    else:
        regex = re.escape(before) + period + re.escape(after)
        name = name if name.startswith("/") or not before.startswith("/") else "/" + name
    match = re.fullmatch(regex, name)  # [0-9] in the period: a name with other digits is no period's
    return sched.period(match["period"]) if match else None


@dataclass(frozen=True)
class BoardMeeting:
    """A Board meeting and the day its pack is due."""

    meeting: dt.date
    pack_due: dt.date


def board_meetings(partnership: Partnership) -> list[BoardMeeting]:
    """The Board's meetings in date order, each with its pack date (N working days before)."""
    calendar = partnership.calendar
    return [
        BoardMeeting(meeting=day, pack_due=add_working_days(day, -calendar.board_pack_working_days))
        for day in sorted(calendar.board_meetings)
    ]
