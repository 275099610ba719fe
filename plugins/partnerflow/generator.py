"""Seeded synthetic partner returns for the demo and the tests, shaped like the real ones.

Council referrals follow the Ofsted Annex A List 3/4 shape (CIN census referral source codes); police
returns are PPN and domestic abuse aggregates. Every name, id and postcode is invented: names come from a
small built-in list, postcodes use the unused area letters ``BK`` ("Blanktown").

The same seed always gives the same rows. Children keep their ids across periods: about a fifth of each
period's referrals are re-referrals of children first referred in one of the three periods before (when
those periods are generated with the same seed and ``n``), which is what the re-referrals KPI counts.

``defects=True`` plants the defects listed in ``REFERRAL_DEFECTS`` / ``POLICE_PPN_DEFECTS`` at fixed row
numbers (1 = the first data row, as in staging), so tests can check a contract finds exactly those.
"""

from __future__ import annotations

import bisect
import csv
import datetime as dt
import io
import random
from dataclasses import dataclass
from functools import cache

from partnerflow.calendar import Period, is_working_day

REFERRAL_COLUMNS = (
    "referral_id",
    "child_id",
    "child_name",
    "date_of_birth",
    "postcode",
    "referral_date",
    "referral_source",
    "nfa",
    "assessment_start_date",
    "assessment_authorised_date",
)

# CIN census referral source codes, weighted roughly as English councils see them (police and schools most).
REFERRAL_SOURCES: dict[str, int] = {
    "1A": 4, "1B": 1, "1C": 1, "1D": 1,
    "2A": 18, "2B": 2,
    "3A": 3, "3B": 3, "3C": 1, "3D": 1, "3E": 3, "3F": 5,
    "4": 2,
    "5A": 5, "5B": 4, "5C": 2, "5D": 2,
    "6": 29, "7": 2, "8": 5, "9": 2, "10": 4,
}  # fmt: skip

PPN_CHILD_GRADES = ("H", "M", "L")
DA_CHILD_PRESENT_GRADE = "A"  # the DA measure has no grading; "A" (all) keeps grade a required column

# Row numbers (1 = first data row) of each planted defect.
REFERRAL_DEFECTS: dict[str, tuple[int, ...]] = {
    "unknown_referral_source": (3, 17, 41),
    "authorised_before_start": (8, 29),
    "referral_date_outside_period": (12,),
    "assessment_before_referral": (23,),
}
UNKNOWN_REFERRAL_SOURCES = ("11", "2C", "X9")
POLICE_PPN_DEFECTS: dict[str, tuple[int, ...]] = {
    "negative_value": (2,),
    "unknown_grade": (3,),
}

REREFERRAL_SHARE = 0.2
NFA_SHARE = 0.12
ASSESSED_SHARE = 0.92  # of referrals that are not NFA; the rest go to other services without one
LATE_ASSESSMENT_SHARE = 0.35  # of assessments; about 13% of those authorised by extract time (slow ones are often open)
EXTRACT_WORKING_DAYS = 15  # the council runs its extract on the due date
CHILDREN_PER_PERIOD = 100_000  # room for new children's ids in each period

FIRST_NAMES = (
    "Ada", "Alfie", "Amara", "Ava", "Bea", "Caleb", "Connor", "Dalia", "Eli", "Ella", "Esme", "Finn",
    "Freya", "Harlow", "Isaac", "Isla", "Jude", "Kai", "Layla", "Leo", "Lyra", "Maya", "Milo", "Nia",
    "Noah", "Olly", "Orla", "Poppy", "Reuben", "Rosa", "Sami", "Theo", "Willow", "Zain",
)  # fmt: skip
SURNAMES = (
    "Applewood", "Ashby-Lane", "Barrowmere", "Brackenridge", "Coldharbour", "Dunmoor", "Elmsworth",
    "Fernhollow", "Gallowfield", "Hartwell", "Inchbrook", "Kestrelby", "Larkspur", "Marrowby",
    "Nettlecombe", "O'Farrow", "Pendlebrook", "Quarrendon", "Rookwood", "Saltmarsh", "Thistlewood",
    "Underhill", "Wrenfield", "Yarrowby",
)  # fmt: skip
POSTCODE_AREA = "BK"
POSTCODE_UNIT_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"  # the letters Royal Mail uses in the inward code


@dataclass(frozen=True)
class _Child:
    child_id: str
    name: str
    date_of_birth: dt.date
    postcode: str


def referrals_rows(period: Period, *, seed: int, n: int = 400, defects: bool = False) -> list[dict[str, str]]:
    """``n`` council referrals received in ``period``, as the partner's CSV rows (all values are strings).

    Columns are ``REFERRAL_COLUMNS``; dates are ISO (``YYYY-MM-DD``) and an empty string means "not
    recorded" (no assessment yet, say). Rows are in referral date order.
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    last_defect_row = max(max(rows) for rows in REFERRAL_DEFECTS.values())
    if defects and n < last_defect_row:
        raise ValueError(f"defects=True needs n >= {last_defect_row}")
    if _new_children(n) > CHILDREN_PER_PERIOD:
        raise ValueError(f"n is at most {int(CHILDREN_PER_PERIOD / (1 - REREFERRAL_SHARE)):,}")
    rng = random.Random(f"referrals:{seed}:{period.id}")
    key = _period_key(period)
    new_children = _new_children(n)
    children = [_child(seed, key, j) for j in range(new_children)]
    for _ in range(n - new_children):
        children.append(_child(seed, key - rng.randint(1, 3), rng.randrange(new_children)))
    dates = sorted(_referral_date(rng, period) for _ in children)
    rng.shuffle(children)

    sources = list(REFERRAL_SOURCES)
    weights = list(REFERRAL_SOURCES.values())
    extract_date = _add_working_days(period.end, EXTRACT_WORKING_DAYS)
    rows = []
    for number, (child, referral_date) in enumerate(zip(children, dates, strict=True), start=1):
        nfa = rng.random() < NFA_SHARE
        start = authorised = None
        if not nfa and rng.random() < ASSESSED_SHARE:
            start = _add_working_days(referral_date, rng.choice((0, 0, 1, 1, 2, 3, 5, 8)))
            late = rng.random() < LATE_ASSESSMENT_SHARE
            took = rng.randint(46, 75) if late else round(rng.triangular(5, 45, 18))
            authorised = _add_working_days(start, took)
            if start > extract_date:
                start = authorised = None
            elif authorised > extract_date:
                authorised = None
        rows.append(
            {
                "referral_id": f"R{period.year}{period.quarter}{number:06d}",
                "child_id": child.child_id,
                "child_name": child.name,
                "date_of_birth": child.date_of_birth.isoformat(),
                "postcode": child.postcode,
                "referral_date": referral_date.isoformat(),
                "referral_source": rng.choices(sources, weights)[0],
                "nfa": "Y" if nfa else "N",
                "assessment_start_date": _iso(start),
                "assessment_authorised_date": _iso(authorised),
            }
        )
    if defects:
        _plant_referral_defects(rows, period)
    return rows


def referrals_csv(period: Period, *, seed: int, n: int = 400, defects: bool = False) -> bytes:
    """The same rows as ``referrals_rows``, as the partner's UTF-8 CSV file with a header row."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=REFERRAL_COLUMNS)
    writer.writeheader()
    writer.writerows(referrals_rows(period, seed=seed, n=n, defects=defects))
    return buffer.getvalue().encode("utf-8")


def police_ppn_records(period: Period, *, seed: int, defects: bool = False) -> list[dict[str, str | int]]:
    """The police return for ``period``: one record per measure and grade, with an integer count.

    ``PPN_CHILD`` (public protection notices about a child) is graded H/M/L; ``DA_CHILD_PRESENT``
    (domestic abuse incidents with a child present) is not graded and carries grade ``A``.
    """
    rng = random.Random(f"police_ppn:{seed}:{period.id}")
    records: list[dict[str, str | int]] = [
        {"measure_code": "PPN_CHILD", "grade": "H", "value": rng.randint(40, 90)},
        {"measure_code": "PPN_CHILD", "grade": "M", "value": rng.randint(150, 300)},
        {"measure_code": "PPN_CHILD", "grade": "L", "value": rng.randint(300, 600)},
        {"measure_code": "DA_CHILD_PRESENT", "grade": DA_CHILD_PRESENT_GRADE, "value": rng.randint(200, 450)},
    ]
    if defects:
        (negative,) = POLICE_PPN_DEFECTS["negative_value"]
        records[negative - 1]["value"] = -int(records[negative - 1]["value"])
        (unknown,) = POLICE_PPN_DEFECTS["unknown_grade"]
        records[unknown - 1]["grade"] = "X"
    return records


def _plant_referral_defects(rows: list[dict[str, str]], period: Period) -> None:
    for row_number, code in zip(REFERRAL_DEFECTS["unknown_referral_source"], UNKNOWN_REFERRAL_SOURCES, strict=True):
        rows[row_number - 1]["referral_source"] = code
    for row_number in REFERRAL_DEFECTS["authorised_before_start"]:
        row = rows[row_number - 1]
        referral_date = dt.date.fromisoformat(row["referral_date"])
        row["nfa"] = "N"
        row["assessment_start_date"] = (referral_date + dt.timedelta(days=3)).isoformat()
        row["assessment_authorised_date"] = (referral_date + dt.timedelta(days=1)).isoformat()
    for row_number in REFERRAL_DEFECTS["referral_date_outside_period"]:
        # Earlier than the period, so any assessment dates stay on or after it.
        rows[row_number - 1]["referral_date"] = (period.start - dt.timedelta(days=3)).isoformat()
    for row_number in REFERRAL_DEFECTS["assessment_before_referral"]:
        row = rows[row_number - 1]
        referral_date = dt.date.fromisoformat(row["referral_date"])
        row["nfa"] = "N"
        row["assessment_start_date"] = (referral_date - dt.timedelta(days=2)).isoformat()
        row["assessment_authorised_date"] = (referral_date + dt.timedelta(days=10)).isoformat()


def _new_children(n: int) -> int:
    """How many of ``n`` referrals are of children not referred before: fixed by n, so that a later
    period generated with the same n can pick its re-referrals among them."""
    return max(1, n - round(n * REREFERRAL_SHARE))


def _period_key(period: Period) -> int:
    return period.year * 4 + period.quarter - 1


def _child(seed: int, first_period_key: int, index: int) -> _Child:
    """The ``index``-th child first referred in the period ``first_period_key``: the same every time."""
    rng = random.Random(f"child:{seed}:{first_period_key}:{index}")
    multiplier, offset = _child_id_map(seed)
    slot = (first_period_key % 100) * CHILDREN_PER_PERIOD + index
    number = (multiplier * slot + offset) % 10**7
    first_referred = Period(first_period_key // 4, first_period_key % 4 + 1).start
    age_days = rng.randint(0, 16 * 365)  # at most 16 then, so still a child when re-referred
    outward = f"{POSTCODE_AREA}{rng.randint(1, 9)}"
    inward = f"{rng.randint(1, 9)}{rng.choice(POSTCODE_UNIT_LETTERS)}{rng.choice(POSTCODE_UNIT_LETTERS)}"
    return _Child(
        child_id=f"{number:07d}",
        name=f"{rng.choice(FIRST_NAMES)} {rng.choice(SURNAMES)}",
        date_of_birth=first_referred - dt.timedelta(days=age_days),
        postcode=f"{outward} {inward}",
    )


@cache
def _child_id_map(seed: int) -> tuple[int, int]:
    """An affine map that is a bijection on 0..10^7-1, so ids never collide within a 25-year window."""
    rng = random.Random(f"child-ids:{seed}")
    multiplier = rng.randrange(1, 10**6) * 10 + 3  # odd and not a multiple of 5: coprime to 10^7
    return multiplier, rng.randrange(10**7)


def _referral_date(rng: random.Random, period: Period) -> dt.date:
    days = (period.end - period.start).days + 1
    day = period.start + dt.timedelta(days=rng.randrange(days))
    # Most referrals arrive on working days; the out-of-hours service takes the rest.
    while not is_working_day(day) and rng.random() < 0.8:
        day = period.start + dt.timedelta(days=rng.randrange(days))
    return day


def _add_working_days(day: dt.date, n: int) -> dt.date:
    """``calendar.add_working_days`` for n >= 0, by lookup in a list of working days (100k rows need it fast)."""
    days = _working_days(day.year)
    return days[bisect.bisect_right(days, day) + n - 1] if n else day


@cache
def _working_days(year: int) -> list[dt.date]:
    start = dt.date(year, 1, 1)
    return [d for d in (start + dt.timedelta(days=i) for i in range(3 * 366)) if is_working_day(d)]


def _iso(day: dt.date | None) -> str:
    return day.isoformat() if day else ""


def sample_return(dataset_id: str, period: Period, *, seed: int, defects: bool = False) -> bytes | list[dict]:
    """A partner's return for any dataset, as the partner sends it: file bytes for file feeds (CSV/XLSX),
    a list of records for API feeds. The one entry point the demo and the tests use for every dataset."""
    builders = {
        "referrals": lambda: referrals_csv(period, seed=seed, defects=defects),
        "police_ppn": lambda: police_ppn_records(period, seed=seed, defects=defects),
    }
    if dataset_id not in builders:
        raise KeyError(f"the generator has no sample return for dataset {dataset_id!r}")
    return builders[dataset_id]()
