"""Seeded synthetic partner returns for the demo and the tests, shaped like the real ones.

Council referrals follow the Ofsted Annex A List 3/4 shape (CIN census referral source codes), child
protection List 7 and children in care List 8 (an Excel workbook); police returns are PPN and domestic
abuse aggregates; health sends ICB aggregates by age band; education sends school census style suspensions
and exclusions (a Windows-1252 CSV, as school systems export); youth justice sends YJB KPIs. Every name,
id and postcode is invented: names come from a small built-in list, postcodes use the unused area letters
``BK`` ("Blanktown").

The same seed always gives the same rows (and the same bytes). Children keep their ids across periods and
datasets: about a fifth of each period's referrals are re-referrals of children first referred in one of
the three periods before (when those periods are generated with the same seed and ``n``), which is what the
re-referrals KPI counts, and the children on child protection plans or in care are children referred before.

``defects=True`` plants the defects listed in each dataset's ``*_DEFECTS`` at fixed row numbers (1 = the
first data row, as in staging), so tests can check a contract finds exactly those. ``sample_return`` is
the one entry point for every dataset.
"""

from __future__ import annotations

import bisect
import csv
import datetime as dt
import io
import random
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from partnerflow.core.periods import Period, is_working_day

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
NFA_SHARE = 0.12  # in TREND_ANCHOR; history: see _trend
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
        nfa = rng.random() < NFA_SHARE + _trend(period, NFA_SHARE_PER_QUARTER)
        start = authorised = None
        if not nfa and rng.random() < ASSESSED_SHARE:
            start = _add_working_days(referral_date, rng.choice((0, 0, 1, 1, 2, 3, 5, 8)))
            late = rng.random() < LATE_ASSESSMENT_SHARE + _trend(period, LATE_ASSESSMENT_SHARE_PER_QUARTER)
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
    scale = 1 + _trend(period, POLICE_GROWTH_PER_QUARTER)
    records: list[dict[str, str | int]] = [
        {"measure_code": "PPN_CHILD", "grade": "H", "value": round(rng.randint(40, 90) * scale)},
        {"measure_code": "PPN_CHILD", "grade": "M", "value": round(rng.randint(150, 300) * scale)},
        {"measure_code": "PPN_CHILD", "grade": "L", "value": round(rng.randint(300, 600) * scale)},
        {
            "measure_code": "DA_CHILD_PRESENT",
            "grade": DA_CHILD_PRESENT_GRADE,
            "value": round(rng.randint(200, 450) * scale),
        },
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


# Quarter-to-quarter movement. The generator's shares are those of TREND_ANCHOR (the demo quarter, whose
# returns stay exactly as they were); each quarter before it moves them by the amount per quarter below, so
# eight quarters of history show some measures improving, some worsening, and one crossing its target.
TREND_ANCHOR = Period(2026, 3)
NFA_SHARE_PER_QUARTER = 0.014  # NFA fell from about 23% to 12%: improving, and crossing its 15% target
LATE_ASSESSMENT_SHARE_PER_QUARTER = -0.02  # assessments have been getting slower: worsening
HEALTH_ASSESSMENT_SHARE_PER_QUARTER = -0.012  # more children in care have an up-to-date health check: improving
POLICE_GROWTH_PER_QUARTER = -0.03  # notices about children have risen by about a quarter over two years
HEALTH_SHARE_PER_QUARTER = {  # of the band's highest share
    "IHA_20WD": -0.02,  # initial health assessments on time: improving
    "RHA_ON_TIME": 0.012,  # review health assessments on time: worsening
    "AE_SELF_HARM_U18": -0.03,  # self-harm attendances: rising
}


def _trend(period: Period, per_quarter: float) -> float:
    """How far a share (or scale) moves from TREND_ANCHOR's in ``period``: ``per_quarter`` for each quarter
    before the anchor, nothing from it on."""
    quarters_before = max(0, _period_key(TREND_ANCHOR) - _period_key(period))
    return per_quarter * quarters_before


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


# --- council: child protection plans (Annex A List 7) ------------------------------------------------

CHILD_PROTECTION_COLUMNS = (
    "plan_id",
    "child_id",
    "child_name",
    "date_of_birth",
    "s47_start_date",
    "icpc_date",
    "plan_start_date",
    "plan_end_date",
    "category_of_abuse",
    "previous_plans",
)
# Initial category of abuse, weighted roughly as England's plans are (neglect and emotional abuse most).
ABUSE_CATEGORIES: dict[str, int] = {"N": 48, "E": 38, "P": 7, "S": 4, "M": 3}
PREVIOUS_PLANS: dict[int, int] = {0: 75, 1: 17, 2: 6, 3: 2}
OPEN_AT_START_SHARE = 0.6  # of plans in a quarter's list, already open when it began
LONG_PLAN_SHARE = 0.05  # of those, open for two years or more
PLAN_ENDED_SHARE = 0.3
CHILD_PROTECTION_DEFECTS: dict[str, tuple[int, ...]] = {
    "unknown_category": (4, 19),
    "plan_ends_before_start": (11,),
    "negative_previous_plans": (27,),
    "repeated_plan_id": (33,),
    "icpc_before_s47": (40,),
}

# --- council: children in care (Annex A List 8, an Excel workbook) ---------------------------------------

CHILDREN_IN_CARE_COLUMNS = (
    "child_id",
    "child_name",
    "date_of_birth",
    "care_start_date",
    "care_end_date",
    "health_assessment_date",
    "dental_check_date",
    "missing_episodes",
    "absent_episodes",
    "return_interview_offered_date",
    "return_interview_accepted_date",
)
# The workbook's header row, as the council's analysts write it (intake maps these by name and alias).
CHILDREN_IN_CARE_HEADINGS = (
    "Child ID",
    "Child name",
    "Date of birth",
    "Date became looked after",
    "Date ceased looked after",
    "Latest health assessment",
    "Latest dental check",
    "Number of missing episodes",
    "Number of absences",
    "Return interview offered date",
    "Return interview accepted date",
)
CHILDREN_IN_CARE_SHEET = "Children in care"
CARE_ENTERED_SHARE = 0.3  # of children in the list, who came into care during the period
CARE_ENDED_SHARE = 0.15
HEALTH_ASSESSMENT_SHARE = 0.88  # with an assessment in the 12 months to the period end
DENTAL_CHECK_SHARE = 0.75
WENT_MISSING_SHARE = 0.12
ABSENT_SHARE = 0.15
INTERVIEW_OFFERED_SHARE = 0.85  # of children who went missing
INTERVIEW_ACCEPTED_SHARE = 0.55  # of interviews offered
CHILDREN_IN_CARE_DEFECTS: dict[str, tuple[int, ...]] = {
    "dental_check_after_period": (5,),
    "negative_missing_episodes": (14,),
    "accepted_before_offered": (22,),
    "repeated_child": (31,),
}

# --- health (ICB): aggregates by measure and age band --------------------------------------------------

HEALTH_ICB_COLUMNS = ("measure_code", "age_band", "numerator", "denominator")
AGE_BANDS = ("0-9", "10-15", "16-17")
# measure -> age band -> (denominator range, share of it counted in the numerator)
HEALTH_MEASURES: dict[str, dict[str, tuple[tuple[int, int], tuple[float, float]]]] = {
    "IHA_20WD": {"0-9": ((15, 35), (0.45, 0.8)), "10-15": ((10, 25), (0.4, 0.75)), "16-17": ((5, 15), (0.3, 0.7))},
    "RHA_ON_TIME": {
        "0-9": ((60, 110), (0.85, 0.97)),
        "10-15": ((80, 140), (0.8, 0.95)),
        "16-17": ((40, 80), (0.7, 0.9)),
    },
    "AE_SELF_HARM_U18": {
        "0-9": ((2500, 4000), (0.0, 0.001)),
        "10-15": ((1500, 2600), (0.025, 0.035)),
        "16-17": ((700, 1200), (0.04, 0.06)),
    },
}
HEALTH_ICB_DEFECTS: dict[str, tuple[int, ...]] = {
    "numerator_above_denominator": (2,),
    "unknown_measure": (5,),
    "age_band_turned_into_a_date": (8,),
}

# --- education: suspensions, permanent exclusions and persistent absence -------------------------------

EXCLUSIONS_COLUMNS = (
    "upn",
    "pupil_name",
    "date_of_birth",
    "postcode",
    "school_urn",
    "category",
    "reason_code",
    "start_date",
    "sessions",
    "persistent_absence",
)
EXCLUSION_CATEGORIES: dict[str, int] = {"FIXD": 86, "LNCH": 9, "PERM": 5}
# School census reason codes, weighted with persistent disruptive behaviour the most common by far.
EXCLUSION_REASONS: dict[str, int] = {
    "DB": 38, "VA": 12, "PA": 10, "PP": 9, "VP": 8, "DA": 4, "BU": 3, "DM": 3,
    "OW": 2, "RA": 2, "SM": 2, "MT": 2, "OT": 2, "LG": 1, "DS": 1, "TH": 1,
}  # fmt: skip
PERSISTENT_ABSENCE_SHARE = 0.25
REPEAT_SUSPENSION_SHARE = 0.3  # of suspensions, of a pupil suspended before in the same period
SCHOOLS = 40
LA_NUMBER = "999"  # not any real local authority's number
UPN_CHECK_LETTERS = "ABCDEFGHJKLMNPQRTUVWXYZ"
# Pupils' names as school systems hold them, in Windows-1252 like the files they export.
PUPIL_FIRST_NAMES = (
    "Zoë", "Siân", "Chloé", "Renée", "José", "Niamh", "Björn", "Anaïs", "Ciarán", "Noël",
    "Ava", "Leo", "Maya", "Theo", "Isla", "Kai", "Rosa", "Zain",
)  # fmt: skip
PUPIL_SURNAMES = ("O’Farrow", "Brackenridge", "Núñez", "Hartwell", "Kestrelby", "Dunmoor", "Saltmarsh", "Wrenfield")
EXCLUSION_DEFECTS: dict[str, tuple[int, ...]] = {
    "unknown_category": (6,),
    "unknown_reason": (15,),
    "start_outside_period": (24,),
    "repeated_row": (37,),
}

# --- youth justice: YJB key performance indicators ------------------------------------------------------

YJB_KPI_COLUMNS = ("kpi_code", "numerator", "denominator")
# kpi -> (denominator range, share of it counted in the numerator)
YJB_KPIS: dict[str, tuple[tuple[int, int], tuple[float, float]]] = {
    "FTE": ((20_500, 21_500), (0.0004, 0.0011)),  # first time entrants per 10-17 population
    "REOFFENDING": ((30, 60), (0.28, 0.4)),
    "CUSTODY": ((20, 45), (0.0, 0.1)),
    "ACCOMMODATION": ((25, 50), (0.85, 1.0)),
    "ETE": ((25, 50), (0.55, 0.8)),
    "SEND": ((25, 50), (0.8, 1.0)),
    "MENTAL_HEALTH": ((10, 25), (0.6, 0.9)),
    "SUBSTANCE_MISUSE": ((10, 25), (0.6, 0.9)),
    "OOCD": ((15, 35), (0.7, 0.95)),
    "SERIOUS_VIOLENCE": ((60, 120), (0.03, 0.1)),
    "VICTIMS": ((20, 45), (0.5, 0.85)),
}
YJB_KPI_DEFECTS: dict[str, tuple[int, ...]] = {
    "numerator_above_denominator": (3,),
    "unknown_kpi": (7,),
}
FIXED_ZIP_TIME = (2026, 1, 1, 0, 0, 0)


def child_protection_rows(period: Period, *, seed: int, n: int = 250, defects: bool = False) -> list[dict[str, str]]:
    """``n`` child protection plans open at some time in ``period`` (List 7 shape), as CSV rows of strings.

    Children are children referred in the three years before; each plan's conference is the day it started,
    after a section 47 enquiry. Rows are in plan start order; empty means not recorded (an open plan).
    """
    _check_defect_rows(n, defects, CHILD_PROTECTION_DEFECTS)
    rng = random.Random(f"child_protection:{seed}:{period.id}")
    rows = []
    for child in _children_known_before(rng, seed, period, n):
        if rng.random() < OPEN_AT_START_SHARE:
            longest = 1100 if rng.random() < LONG_PLAN_SHARE else 700
            start = _working_day_on_or_after(period.start - dt.timedelta(days=rng.randint(1, longest)))
        else:
            start = _working_day_in(rng, period)
        if start <= child.date_of_birth:
            start = _working_day_on_or_after(max(child.date_of_birth + dt.timedelta(days=7), period.start))
        s47 = _subtract_working_days(start, round(rng.triangular(3, 30, 12)))
        end = None
        if rng.random() < PLAN_ENDED_SHARE:
            end = _working_day_on_or_after(max(start, period.start) + dt.timedelta(days=rng.randint(1, 80)))
            if end > period.end:
                end = None
        rows.append(
            {
                "plan_id": f"CPP{child.child_id}{start:%y%m}",
                "child_id": child.child_id,
                "child_name": child.name,
                "date_of_birth": child.date_of_birth.isoformat(),
                "s47_start_date": _iso(max(s47, child.date_of_birth)),
                "icpc_date": start.isoformat(),
                "plan_start_date": start.isoformat(),
                "plan_end_date": _iso(end),
                "category_of_abuse": _weighted(rng, ABUSE_CATEGORIES),
                "previous_plans": str(_weighted(rng, PREVIOUS_PLANS)),
            }
        )
    rows.sort(key=lambda row: (row["plan_start_date"], row["plan_id"]))
    if defects:
        _plant_child_protection_defects(rows, period)
    return rows


def child_protection_csv(period: Period, *, seed: int, n: int = 250, defects: bool = False) -> bytes:
    """The council's child protection CSV (UTF-8, header row) for ``period``."""
    return _csv_bytes(CHILD_PROTECTION_COLUMNS, child_protection_rows(period, seed=seed, n=n, defects=defects))


def _plant_child_protection_defects(rows: list[dict[str, str]], period: Period) -> None:
    for row_number, code in zip(CHILD_PROTECTION_DEFECTS["unknown_category"], ("X", "U"), strict=True):
        rows[row_number - 1]["category_of_abuse"] = code
    for row_number in CHILD_PROTECTION_DEFECTS["plan_ends_before_start"]:
        start = period.start + dt.timedelta(days=20)
        rows[row_number - 1].update(
            s47_start_date=_iso(start - dt.timedelta(days=9)),
            icpc_date=_iso(start),
            plan_start_date=_iso(start),
            plan_end_date=_iso(start - dt.timedelta(days=10)),
        )
    for row_number in CHILD_PROTECTION_DEFECTS["negative_previous_plans"]:
        rows[row_number - 1]["previous_plans"] = "-1"
    for row_number in CHILD_PROTECTION_DEFECTS["repeated_plan_id"]:
        rows[row_number - 1]["plan_id"] = rows[row_number - 2]["plan_id"]
    for row_number in CHILD_PROTECTION_DEFECTS["icpc_before_s47"]:
        start = period.start + dt.timedelta(days=5)
        rows[row_number - 1].update(
            s47_start_date=_iso(start + dt.timedelta(days=2)), icpc_date=_iso(start), plan_start_date=_iso(start)
        )


def children_in_care_rows(
    period: Period, *, seed: int, n: int = 300, defects: bool = False
) -> list[dict[str, str | int | dt.date | None]]:
    """``n`` children looked after at some time in ``period`` (List 8 shape), as workbook rows: dates are
    dates, counts are integers, ids are text, and None is an empty cell. Rows are in care start order."""
    _check_defect_rows(n, defects, CHILDREN_IN_CARE_DEFECTS)
    rng = random.Random(f"children_in_care:{seed}:{period.id}")
    year_before = period.end - dt.timedelta(days=365)
    rows: list[dict[str, str | int | dt.date | None]] = []
    for child in _children_known_before(rng, seed, period, n):
        entered = rng.random() < CARE_ENTERED_SHARE
        if entered:
            start = period.start + dt.timedelta(days=rng.randrange((period.end - period.start).days + 1))
        else:
            start = period.start - dt.timedelta(days=rng.randint(1, 6 * 365))
        start = max(start, child.date_of_birth + dt.timedelta(days=1))
        end = None
        if rng.random() < CARE_ENDED_SHARE:
            end = max(start, period.start) + dt.timedelta(days=rng.randint(1, 60))
            end = end if end <= period.end else None
        health = dental = None
        if entered:
            assessed = _add_working_days(start, round(rng.triangular(5, 45, 18)))
            health = assessed if assessed <= period.end else None
        elif rng.random() < HEALTH_ASSESSMENT_SHARE + _trend(period, HEALTH_ASSESSMENT_SHARE_PER_QUARTER):
            health = _day_between(rng, max(start, year_before), period.end)
        else:
            health = _day_between(rng, start, year_before) if start < year_before else None
        if rng.random() < DENTAL_CHECK_SHARE:
            dental = _day_between(rng, max(start, year_before), period.end)
        missing = rng.choice((1, 1, 1, 2, 2, 3, 4, 6, 9, 12)) if rng.random() < WENT_MISSING_SHARE else 0
        absent = rng.choice((1, 1, 2, 3, 5, 8, 15)) if rng.random() < ABSENT_SHARE else 0
        offered = accepted = None
        if missing and rng.random() < INTERVIEW_OFFERED_SHARE:
            offered = _day_between(rng, max(start, period.start), period.end)
            if rng.random() < INTERVIEW_ACCEPTED_SHARE:
                accepted = offered + dt.timedelta(days=rng.choice((0, 0, 1, 2)))
        rows.append(
            {
                "child_id": child.child_id,
                "child_name": child.name,
                "date_of_birth": child.date_of_birth,
                "care_start_date": start,
                "care_end_date": end,
                "health_assessment_date": health,
                "dental_check_date": dental,
                "missing_episodes": missing,
                "absent_episodes": absent,
                "return_interview_offered_date": offered,
                "return_interview_accepted_date": accepted,
            }
        )
    rows.sort(key=lambda row: (row["care_start_date"], row["child_id"]))
    if defects:
        _plant_children_in_care_defects(rows, period)
    return rows


def children_in_care_xlsx(period: Period, *, seed: int, n: int = 300, defects: bool = False) -> bytes:
    """The council's children in care workbook: a "Read me" sheet, then the return on the sheet named
    ``CHILDREN_IN_CARE_SHEET`` with a header row written the way people write it. The same bytes every time."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell

    workbook = Workbook(write_only=True)
    notes = workbook.create_sheet("Read me")
    notes.append([f"Children looked after at any time in {period.label}. Fictional data for the partnerflow demo."])
    sheet = workbook.create_sheet(CHILDREN_IN_CARE_SHEET)
    sheet.append(list(CHILDREN_IN_CARE_HEADINGS))
    for row in children_in_care_rows(period, seed=seed, n=n, defects=defects):
        cells = []
        for column in CHILDREN_IN_CARE_COLUMNS:
            cell = WriteOnlyCell(sheet, value=row[column])
            if isinstance(row[column], dt.date):
                cell.number_format = "yyyy-mm-dd"
            cells.append(cell)
        sheet.append(cells)
    fixed = dt.datetime(*FIXED_ZIP_TIME)
    workbook.properties.created = fixed
    buffer = io.BytesIO()
    workbook.save(buffer)
    return _reproducible_zip(buffer.getvalue())


def _plant_children_in_care_defects(rows: list[dict], period: Period) -> None:
    for row_number in CHILDREN_IN_CARE_DEFECTS["dental_check_after_period"]:
        rows[row_number - 1]["dental_check_date"] = period.end + dt.timedelta(days=10)
    for row_number in CHILDREN_IN_CARE_DEFECTS["negative_missing_episodes"]:
        rows[row_number - 1]["missing_episodes"] = -2
    for row_number in CHILDREN_IN_CARE_DEFECTS["accepted_before_offered"]:
        offered = period.start + dt.timedelta(days=20)
        rows[row_number - 1].update(
            return_interview_offered_date=offered, return_interview_accepted_date=offered - dt.timedelta(days=2)
        )
    for row_number in CHILDREN_IN_CARE_DEFECTS["repeated_child"]:
        rows[row_number - 1]["child_id"] = rows[row_number - 2]["child_id"]


def health_icb_rows(period: Period, *, seed: int, defects: bool = False) -> list[dict[str, str]]:
    """The ICB's return for ``period``: one row per measure and age band, numerator and denominator."""
    rng = random.Random(f"health_icb:{seed}:{period.id}")
    rows = []
    for measure, bands in HEALTH_MEASURES.items():
        for band in AGE_BANDS:
            (low, high), (least, most) = bands[band]
            denominator = rng.randint(low, high)
            share = rng.uniform(least, most) + _trend(period, HEALTH_SHARE_PER_QUARTER.get(measure, 0.0)) * most
            numerator = round(denominator * min(1.0, max(0.0, share)))
            rows.append(
                {
                    "measure_code": measure,
                    "age_band": band,
                    "numerator": str(numerator),
                    "denominator": str(denominator),
                }
            )
    if defects:
        for row_number in HEALTH_ICB_DEFECTS["numerator_above_denominator"]:
            row = rows[row_number - 1]
            row["numerator"] = str(int(row["denominator"]) + 3)
        for row_number in HEALTH_ICB_DEFECTS["unknown_measure"]:
            rows[row_number - 1]["measure_code"] = "IHA_30WD"
        for row_number in HEALTH_ICB_DEFECTS["age_band_turned_into_a_date"]:
            rows[row_number - 1]["age_band"] = "Oct-15"  # what Excel makes of 10-15
    return rows


def health_icb_csv(period: Period, *, seed: int, defects: bool = False) -> bytes:
    """The ICB's CSV (UTF-8, header row) for ``period``."""
    return _csv_bytes(HEALTH_ICB_COLUMNS, health_icb_rows(period, seed=seed, defects=defects))


def exclusions_rows(period: Period, *, seed: int, n: int = 350, defects: bool = False) -> list[dict[str, str]]:
    """``n`` suspensions and permanent exclusions starting in ``period`` at Blanktown's schools, with each
    pupil's persistent absence flag, as CSV rows of strings. Rows are in start date order."""
    _check_defect_rows(n, defects, EXCLUSION_DEFECTS)
    rng = random.Random(f"exclusions:{seed}:{period.id}")
    school_days = [d for d in _days_of(period) if is_working_day(d) and not _school_holiday(d)]
    schools = [f"1{rng.randrange(10**5):05d}" for _ in range(SCHOOLS)]
    pupils: list[dict[str, str]] = []
    seen: set[tuple[str, str, str]] = set()
    rows = []
    while len(rows) < n:
        if pupils and rng.random() < REPEAT_SUSPENSION_SHARE:
            pupil = rng.choice(pupils)
        else:
            pupil = _pupil(rng, period, schools)
            pupils.append(pupil)
        category = _weighted(rng, EXCLUSION_CATEGORIES)
        start = rng.choice(school_days)
        if (pupil["upn"], category, start.isoformat()) in seen:
            continue
        seen.add((pupil["upn"], category, start.isoformat()))
        sessions = {"FIXD": str(rng.choice((1, 2, 2, 2, 4, 4, 6, 10))), "LNCH": "1", "PERM": ""}[category]
        rows.append(
            {
                **pupil,
                "category": category,
                "reason_code": _weighted(rng, EXCLUSION_REASONS),
                "start_date": start.isoformat(),
                "sessions": sessions,
            }
        )
    rows.sort(key=lambda row: (row["start_date"], row["upn"]))
    rows = [{column: row[column] for column in EXCLUSIONS_COLUMNS} for row in rows]
    if defects:
        _plant_exclusion_defects(rows, period)
    return rows


def exclusions_csv(period: Period, *, seed: int, n: int = 350, defects: bool = False) -> bytes:
    """Education's CSV for ``period`` as school systems export it: Windows-1252, CRLF line ends."""
    return _csv_bytes(EXCLUSIONS_COLUMNS, exclusions_rows(period, seed=seed, n=n, defects=defects), "cp1252")


def _plant_exclusion_defects(rows: list[dict[str, str]], period: Period) -> None:
    for row_number in EXCLUSION_DEFECTS["unknown_category"]:
        rows[row_number - 1]["category"] = "EXCL"
    for row_number in EXCLUSION_DEFECTS["unknown_reason"]:
        rows[row_number - 1]["reason_code"] = "ZZ"
    for row_number in EXCLUSION_DEFECTS["start_outside_period"]:
        rows[row_number - 1]["start_date"] = (period.start - dt.timedelta(days=10)).isoformat()
    for row_number in EXCLUSION_DEFECTS["repeated_row"]:
        rows[row_number - 1] = dict(rows[row_number - 2])


def _pupil(rng: random.Random, period: Period, schools: list[str]) -> dict[str, str]:
    age_days = rng.randint(5 * 365, 16 * 365)
    outward = f"{POSTCODE_AREA}{rng.randint(1, 9)}"
    inward = f"{rng.randint(1, 9)}{rng.choice(POSTCODE_UNIT_LETTERS)}{rng.choice(POSTCODE_UNIT_LETTERS)}"
    return {
        "upn": upn(f"{LA_NUMBER}{rng.randrange(10**4):04d}{rng.randrange(10**2):02d}{rng.randrange(10**3):03d}"),
        "pupil_name": f"{rng.choice(PUPIL_FIRST_NAMES)} {rng.choice(PUPIL_SURNAMES)}",
        "date_of_birth": (period.start - dt.timedelta(days=age_days)).isoformat(),
        "postcode": f"{outward} {inward}",
        "school_urn": rng.choice(schools),
        "persistent_absence": "Y" if rng.random() < PERSISTENT_ABSENCE_SHARE else "N",
    }


def upn(digits: str) -> str:
    """A unique pupil number: the DfE check letter, then the 12 digits (LA, school, year, serial)."""
    if len(digits) != 12 or not digits.isdigit():
        raise ValueError("a UPN has 12 digits after its check letter")
    total = sum(int(d) * weight for d, weight in zip(digits, range(2, 14), strict=True))
    return UPN_CHECK_LETTERS[total % 23] + digits


def yjb_kpi_records(period: Period, *, seed: int, defects: bool = False) -> list[dict[str, str | int]]:
    """The youth justice service's YJB KPIs for ``period``: one record per KPI, numerator and denominator."""
    rng = random.Random(f"yjb_kpis:{seed}:{period.id}")
    records: list[dict[str, str | int]] = []
    for code, ((low, high), (least, most)) in YJB_KPIS.items():
        denominator = rng.randint(low, high)
        records.append(
            {"kpi_code": code, "numerator": round(denominator * rng.uniform(least, most)), "denominator": denominator}
        )
    if defects:
        for row_number in YJB_KPI_DEFECTS["numerator_above_denominator"]:
            records[row_number - 1]["numerator"] = int(records[row_number - 1]["denominator"]) + 5
        for row_number in YJB_KPI_DEFECTS["unknown_kpi"]:
            records[row_number - 1]["kpi_code"] = "SEND_PLAN"
    return records


def _children_known_before(rng: random.Random, seed: int, period: Period, n: int) -> list[_Child]:
    """``n`` different children first referred in the three years before ``period`` and under 18 at its end."""
    key = _period_key(period)
    pool = _new_children(400)  # the children each period's default-sized referrals file introduces
    born_after = period.end.replace(year=period.end.year - 18)  # quarters end on the 30th or 31st
    chosen: set[tuple[int, int]] = set()
    children: list[_Child] = []
    for _ in range(n * 50):
        if len(children) == n:
            return children
        slot = (key - rng.randint(1, 12), rng.randrange(pool))
        if slot in chosen:
            continue
        chosen.add(slot)
        child = _child(seed, *slot)
        if child.date_of_birth > born_after:
            children.append(child)
    if len(children) < n:
        raise ValueError(f"n is at most about {len(children)} children for one period")
    return children


def _check_defect_rows(n: int, defects: bool, planted: dict[str, tuple[int, ...]]) -> None:
    if n < 1:
        raise ValueError("n must be at least 1")
    last = max(max(rows) for rows in planted.values())
    if defects and n < last:
        raise ValueError(f"defects=True needs n >= {last}")


def _csv_bytes(columns: Sequence[str], rows: list[dict[str, str]], encoding: str = "utf-8") -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode(encoding)


def _reproducible_zip(data: bytes) -> bytes:
    """The same zip with fixed entry times and workbook timestamps, so the same rows give the same bytes."""
    stamp = re.compile(rb"(<dcterms:(?:created|modified)[^>]*>)[^<]*(</dcterms:)")
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            content = source.read(info)
            if info.filename == "docProps/core.xml":
                content = stamp.sub(rb"\g<1>2026-01-01T00:00:00Z\g<2>", content)
            target.writestr(zipfile.ZipInfo(info.filename, date_time=FIXED_ZIP_TIME), content, zipfile.ZIP_DEFLATED)
    return out.getvalue()


def _weighted(rng: random.Random, weights: dict):
    return rng.choices(list(weights), list(weights.values()))[0]


def _days_of(period: Period) -> list[dt.date]:
    return [period.start + dt.timedelta(days=i) for i in range((period.end - period.start).days + 1)]


def _working_day_in(rng: random.Random, period: Period) -> dt.date:
    return rng.choice([d for d in _days_of(period) if is_working_day(d)])


def _working_day_on_or_after(day: dt.date) -> dt.date:
    while not is_working_day(day):
        day += dt.timedelta(days=1)
    return day


def _day_between(rng: random.Random, first: dt.date, last: dt.date) -> dt.date:
    return first + dt.timedelta(days=rng.randint(0, max(0, (last - first).days)))


def _school_holiday(day: dt.date) -> bool:
    """England's long school holidays, roughly: late July to early September, Christmas, two weeks at Easter."""
    summer = (day.month == 7 and day.day >= 23) or day.month == 8 or (day.month == 9 and day.day <= 2)
    christmas = (day.month == 12 and day.day >= 21) or (day.month == 1 and day.day <= 3)
    return summer or christmas or (day.month == 4 and day.day <= 14)


def _subtract_working_days(day: dt.date, n: int) -> dt.date:
    """``calendar.add_working_days(day, -n)`` for n >= 0, by lookup."""
    days = _working_days(day.year - 2)
    return days[bisect.bisect_left(days, day) - n] if n else day


def sample_return(dataset_id: str, period: Period, *, seed: int, defects: bool = False) -> bytes | list[dict]:
    """A partner's return for any dataset, as the partner sends it: file bytes for file feeds (CSV/XLSX),
    a list of records for API feeds. The one entry point the demo and the tests use for every dataset."""
    builders = {
        "referrals": lambda: referrals_csv(period, seed=seed, defects=defects),
        "police_ppn": lambda: police_ppn_records(period, seed=seed, defects=defects),
        "child_protection": lambda: child_protection_csv(period, seed=seed, defects=defects),
        "children_in_care": lambda: children_in_care_xlsx(period, seed=seed, defects=defects),
        "health_icb": lambda: health_icb_csv(period, seed=seed, defects=defects),
        "exclusions": lambda: exclusions_csv(period, seed=seed, defects=defects),
        "yjb_kpis": lambda: yjb_kpi_records(period, seed=seed, defects=defects),
    }
    if dataset_id not in builders:
        raise KeyError(f"the generator has no sample return for dataset {dataset_id!r}")
    return builders[dataset_id]()
