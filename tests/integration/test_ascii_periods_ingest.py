"""A file name with a period in other digits never becomes a period, through the real SFTP drop (issue 12).

What happened: ``icb_safeguarding_٢٠٢٦Q4.csv`` was fetched and published under a phantom period ``٢٠٢٦Q4``,
and the same bytes re-sent under the right name were a duplicate, so the real quarter stayed empty. Now such
a name is left on the drop with a warning that says why, and the right name is an ordinary first arrival.
"""

from __future__ import annotations

import datetime as dt
import logging
import os

import sqlalchemy as sa

from partnerflow import warehouse
from partnerflow.core.periods import Period
from partnerflow.pipeline import ingest
from partnerflow.warehouse import status
from partnerflow_dev import synthetic

FEED = "health_icb"
CONTENT = synthetic.health_icb_csv(Period.from_id("2026Q3"), seed=3)
NEAR_MISSES = (
    "icb_safeguarding_٢٠٢٦Q3.csv",
    "icb_safeguarding_２０２６Q3.csv",
    "icb_safeguarding_2026Q3.CSV",
    "-icb_safeguarding_2026Q3.csv",
    "icb_safeguarding_2026-Q3.csv",
    "icb_safеguarding_2026Q3.csv",  # a Cyrillic "е"
)
EXPECTED = "icb_safeguarding_2026Q3.csv"


def _upload(stack, config, name: str) -> None:
    drop = stack.drop_dir(config.feed(FEED).transport.directory)
    (drop / "upload.part").write_bytes(CONTENT)
    os.replace(drop / "upload.part", drop / name)


def _rows(sql: str) -> list[tuple]:
    with warehouse.engine().connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(sql))]


class _Kept(logging.Handler):
    """The warnings one logger emits (Airflow's logging setup may keep them from pytest's caplog)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_other_digits_are_a_logged_near_miss_and_the_right_name_still_publishes(devstack, demo_config):
    for name in NEAR_MISSES:
        _upload(devstack, demo_config, name)
    kept, logger = _Kept(), logging.getLogger("partnerflow.pipeline.collect")
    logger.addHandler(kept)
    try:
        assert ingest.fetch(FEED, config=demo_config) == []
    finally:
        logger.removeHandler(kept)
    assert _rows("SELECT period_id FROM ops.received_files") == []
    assert _rows("SELECT period_id FROM ops.submissions WHERE feed_id = 'health_icb' AND state <> 'expected'") == []
    for name in NEAR_MISSES:
        (said,) = [w for w in kept.messages if ascii(name) in w]
        assert f"expected {EXPECTED}" in said
    assert "non-ASCII look-alikes" in next(w for w in kept.messages if ascii(NEAR_MISSES[0]) in w)

    # Each near miss is recorded once as ignored, with its reason, and the partner is told once per name.
    assert ingest.fetch(FEED, config=demo_config) == []  # a second poll sees them again: nothing new
    ignored = _rows("SELECT source_name, state, period_id, expected_name, reason FROM ops.ignored_files")
    assert sorted((n, s, p, e) for n, s, p, e, _ in ignored) == sorted(
        (n, "ignored", "2026Q3", EXPECTED) for n in NEAR_MISSES
    )
    reasons = {n: r for n, *_, r in ignored}
    assert "upper-case extension" in reasons[NEAR_MISSES[2]] and "starts with '-'" in reasons[NEAR_MISSES[3]]
    assert "period is not written the agreed way" in reasons[NEAR_MISSES[4]]
    assert "another alphabet" in reasons[NEAR_MISSES[5]]
    told = _rows("SELECT recipients, subject FROM ops.notifications WHERE kind = 'near-miss'")
    contact = demo_config.partner(demo_config.feed(FEED).partner).contact.email
    assert len(told) == len(NEAR_MISSES)
    assert all(r == [contact] and s.endswith(f"please rename it {EXPECTED}") for r, s in told)

    # The status every view renders shows them on the return they were meant for.
    with warehouse.engine().connect() as conn:
        (health,) = status.returns(
            conn, demo_config, as_of=dt.date(2026, 10, 26), slices=[(demo_config.feed(FEED), Period.from_id("2026Q3"))]
        )
    assert sorted(i.source_name for i in health.ignored) == sorted(NEAR_MISSES)
    assert health.summary.endswith("; 6 near-miss uploads ignored")

    _upload(devstack, demo_config, "icb_safeguarding_2026Q3.csv")  # the same bytes, named as agreed
    outcomes = ingest.decide(FEED, ingest.fetch(FEED, config=demo_config), config=demo_config)
    assert [(o["period_id"], o["state"]) for o in outcomes] == [("2026Q3", "published")]
    assert _rows("SELECT DISTINCT period_id FROM ops.received_files") == [("2026Q3",)]
