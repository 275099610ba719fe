"""How partnerflow writes dates and counts for people: one spelling in every e-mail, page and pack.

``FILTERS`` are the same functions as Jinja filters; every template environment registers them.
"""

from __future__ import annotations

import datetime as dt
from typing import Any


def long_date(day: dt.date | None) -> str:
    """``Wednesday 21 October 2026``."""
    return f"{day:%A} {day.day} {day:%B %Y}" if day else ""


def full_date(day: dt.date | None) -> str:
    """``21 October 2026``."""
    return f"{day.day} {day:%B %Y}" if day else ""


def short_date(day: dt.date | None, missing: str = "") -> str:
    """``21 Oct 2026``; ``missing`` when there is no date."""
    return f"{day.day} {day:%b %Y}" if day else missing


def weekday_date(day: dt.date | None) -> str:
    """``Wed 21 Oct 2026``."""
    return f"{day:%a} {day.day} {day:%b %Y}" if day else ""


def day_in_year(day: dt.date) -> str:
    """``Wed 21 Oct``: for dates in the coming weeks."""
    return f"{day:%a} {day.day} {day:%b}"


def count(n: int, singular: str, plural: str | None = None) -> str:
    """``1 row``, ``1,250 rows``."""
    return f"{n:,} {singular if n == 1 else plural or singular + 's'}"


FILTERS: dict[str, Any] = {
    "long_date": long_date,
    "full_date": full_date,
    "short_date": short_date,
    "weekday_date": weekday_date,
    "day_in_year": day_in_year,
    "count": count,
    "thousands": lambda n: f"{n:,}",
}


def day_and_time(moment: dt.datetime | None) -> str:
    """``Mon 5 Oct 10:02``, in London time: when something happened this season."""
    if moment is None:
        return ""
    from partnerflow.core.clock import LONDON

    local = moment.astimezone(LONDON)
    return f"{local:%a} {local.day} {local:%b} {local:%H:%M}"


FILTERS["day_and_time"] = day_and_time
