"""Disclosure control: what a Board output may show of a count or a rate, so no child can be singled out.

Each KPI names its rule in the configuration (``disclosure:``):

- ``dfe`` (Department for Education practice): counts from 1 to 5 are shown as ``c``. Zero is shown.
- ``nhs`` (NHS Digital practice): counts from 1 to 7 are shown as ``*``; every other count is rounded to
  the nearest 5. Zero is shown.
- ``none``: shown as they are; for aggregate measures with no small-number risk (police incident totals).

A rate or percentage whose numerator or denominator is suppressed is suppressed too, with the same mark.
Rates are computed from the unrounded counts and shown to one decimal place.

Not done yet: secondary suppression across a table (hiding a further cell so a suppressed one cannot be
worked out from a total), which DfE practice also asks for.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal

Rule = Literal["dfe", "nhs", "none"]
Unit = Literal["percent", "count", "rate", "days"]

MARKS: dict[str, str] = {"dfe": "c", "nhs": "*"}
# The largest count each rule hides (counts 1..limit are suppressed).
LIMITS: dict[str, int] = {"dfe": 5, "nhs": 7}
NHS_ROUNDING = 5
NOT_APPLICABLE = "–"


@dataclass(frozen=True)
class Cell:
    """A number as it may be published: ``text`` to show, ``value`` to chart and compare (None if hidden)."""

    text: str
    value: float | None
    suppressed: bool = False


@dataclass(frozen=True)
class ProtectedKpi:
    """A KPI's numerator, denominator (None for counts) and value after disclosure control."""

    numerator: Cell
    denominator: Cell | None
    value: Cell


def protect_count(count: int, rule: Rule) -> Cell:
    """A count as ``rule`` allows it to be shown."""
    if count < 0:
        raise ValueError("a count cannot be negative")
    if rule != "none" and 1 <= count <= LIMITS[rule]:
        return Cell(MARKS[rule], None, suppressed=True)
    if rule == "nhs":
        count = _round_half_up(count / NHS_ROUNDING) * NHS_ROUNDING
    return Cell(f"{count:,}", float(count))


def protect_rate(value: float | None, parts: tuple[Cell, ...], rule: Rule, *, unit: Unit = "percent") -> Cell:
    """A rate or percentage made from ``parts``: suppressed if any part is, blank when there is none."""
    if rule != "none" and any(part.suppressed for part in parts):
        return Cell(MARKS[rule], None, suppressed=True)
    if value is None:
        return Cell(NOT_APPLICABLE, None)
    rounded = float(Decimal(str(value)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))
    return Cell(format_number(rounded, unit), rounded)


def protect_kpi(
    *, unit: Unit, numerator: int, denominator: int | None, value: float | None, rule: Rule
) -> ProtectedKpi:
    """Apply ``rule`` to a KPI: counts directly; percentages, rates and days through their parts."""
    protected_numerator = protect_count(numerator, rule)
    if unit == "count":
        return ProtectedKpi(protected_numerator, None, protected_numerator)
    protected_denominator = protect_count(denominator, rule) if denominator is not None else None
    parts = tuple(c for c in (protected_numerator, protected_denominator) if c is not None)
    return ProtectedKpi(protected_numerator, protected_denominator, protect_rate(value, parts, rule, unit=unit))


def format_number(value: float, unit: Unit) -> str:
    """How a published value reads: ``23.4%``, ``1,204``, ``12.5 days``."""
    if unit == "percent":
        return f"{value:.1f}%"
    if unit == "count":
        return f"{value:,.0f}"
    if unit == "days":
        return f"{value:.1f} days"
    return f"{value:,.1f}"


def _round_half_up(x: float) -> int:
    return int(Decimal(str(x)).quantize(Decimal("1"), rounding=ROUND_HALF_UP))
