"""A cut-off return never reaches core, through the real SFTP drop, ingest and publish (issue 12, FILE-012).

The complete health return for 2026Q3 is published first; then a complete *different* return, cut at any
byte that is not a line end, is uploaded as the resubmission. It must be rejected, never superseding the
published slice (what happened: ``…,51,114`` for ``…,51,1147`` passed the contract and replaced the return).
"""

from __future__ import annotations

import hashlib
import json
import os

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from partnerflow import warehouse
from partnerflow.core.periods import Period
from partnerflow.pipeline import ingest
from partnerflow_dev import synthetic

PERIOD = Period.from_id("2026Q3")
FEED = "health_icb"
NAME = "icb_safeguarding_2026Q3.csv"
PUBLISHED = synthetic.health_icb_csv(PERIOD, seed=1)
RESENT = synthetic.health_icb_csv(PERIOD, seed=2)
CUTS = [n for n in range(1, len(RESENT)) if RESENT[n - 1 : n] != b"\n"]


def _upload(stack, config, content: bytes, *, manifest: dict | None = None) -> None:
    drop = stack.drop_dir(config.feed(FEED).transport.directory)
    (drop / f"{NAME}.part").write_bytes(content)
    os.replace(drop / f"{NAME}.part", drop / NAME)
    if manifest is not None:
        (drop / f"{NAME}.done").write_text(json.dumps(manifest))


def _run(config) -> list[dict]:
    return ingest.decide(FEED, ingest.fetch(FEED, config=config), config=config)


def _published_slice(config) -> tuple[int, int]:
    table = config.dataset(config.feed(FEED).dataset).table
    with warehouse.engine().connect() as conn:
        return tuple(conn.execute(sa.text(f"SELECT count(*), sum(denominator) FROM {table}")).one())


def _last_report_codes() -> set[str]:
    with warehouse.engine().connect() as conn:
        report = conn.execute(
            sa.text("SELECT report FROM ops.validation_reports ORDER BY file_id DESC LIMIT 1")
        ).scalar_one()
    return {f["code"] for f in report["failures"]}


def test_a_cut_off_resubmission_never_supersedes_the_complete_return(devstack, demo_config):
    _upload(devstack, demo_config, PUBLISHED)
    assert [o["state"] for o in _run(demo_config)] == ["published"]
    complete = _published_slice(demo_config)
    assert complete[0] == PUBLISHED.count(b"\n") - 1

    @settings(
        max_examples=15,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(length=st.sampled_from(CUTS))
    def cut_and_resend(length):
        _upload(devstack, demo_config, RESENT[:length])
        outcomes = _run(demo_config)
        assert outcomes, "the resubmission is fetched and decided"
        assert {o["state"] for o in outcomes} == {"rejected"}
        assert "FILE-012" in _last_report_codes()
        assert _published_slice(demo_config) == complete

    cut_and_resend()
    # The issue's own case: the last value 1147 cut to 114, the file otherwise well formed.
    _upload(devstack, demo_config, PUBLISHED[: -len(b"7\r\n")])
    assert [o["state"] for o in _run(demo_config)] == ["rejected"]
    assert _last_report_codes() == {"FILE-012"} and _published_slice(demo_config) == complete
    with warehouse.engine().connect() as conn:
        body = conn.execute(
            sa.text("SELECT text_body FROM ops.notifications WHERE kind = 'rejection' ORDER BY id DESC LIMIT 1")
        ).scalar_one()
    assert "FILE-012" in body and "no line ending" in body


def test_a_feed_with_a_manifest_may_allow_a_last_line_without_its_line_end(devstack, demo_config):
    feeds = [
        f.model_copy(
            update={
                "transport": f.transport.model_copy(update={"completeness": "done_marker"}),
                "format": f.format.model_copy(update={"allow_unterminated_last_line": True}),
            }
        )
        if f.id == FEED
        else f
        for f in demo_config.feeds
    ]
    config = demo_config.model_copy(update={"feeds": tuple(feeds)})
    unterminated = PUBLISHED.rstrip(b"\r\n")
    rows = unterminated.count(b"\n")
    _upload(devstack, config, unterminated, manifest={"sha256": hashlib.sha256(unterminated).hexdigest(), "rows": rows})
    assert [(o["state"], o["rows"]) for o in _run(config)] == [("published", rows)]
