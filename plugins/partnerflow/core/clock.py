"""The clock partnerflow reads: real time in production, a settable date in the demo and the tests.

Outside production, ``var/clock.json`` (``{"now": "2026-10-21T09:00:00+00:00"}``) pins "now" for every
process that reads it, so a whole quarter can be played in minutes. Production ignores the file.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from zoneinfo import ZoneInfo

from partnerflow.core.paths import var_dir

LONDON = ZoneInfo("Europe/London")


def production() -> bool:
    return os.environ.get("PARTNERFLOW_ENVIRONMENT", "development") == "production"


def clock_file() -> Path:
    return var_dir() / "clock.json"


def now() -> dt.datetime:
    """The current time (UTC-aware)."""
    path = clock_file()
    if not production() and path.exists():
        return dt.datetime.fromisoformat(json.loads(path.read_text())["now"]).astimezone(dt.UTC)
    return dt.datetime.now(dt.UTC)


def today() -> dt.date:
    """Today's date in England, where the partnership's working days are."""
    return now().astimezone(LONDON).date()


def set_now(moment: dt.datetime | None) -> None:
    """Pin the clock (None removes the pin). Refused in production."""
    if production():
        raise RuntimeError("the clock cannot be set in production")
    path = clock_file()
    if moment is None:
        path.unlink(missing_ok=True)
        return
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"now": moment.astimezone(dt.UTC).isoformat()}))
    tmp.replace(path)
