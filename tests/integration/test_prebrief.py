"""The "no surprises" pre-brief against a real PostgreSQL and the SendGrid sink: each red measure reaches the
responsible partner's senior lead, privately, once, with its figures, trend and target, before the pack goes.

Data and partnership as in test_boardpack: for 2026Q3 re-referrals are red (council), and the partnership's
own "returns on time" measure is red because the council was late and the police return was rejected.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from partnerflow.core.config import Partnership
from partnerflow.core.periods import add_working_days
from partnerflow.notify.sender import SenderSettings, send_pending
from partnerflow.report import distribution
from partnerflow.report.prebrief import PREBRIEF, prebriefs_sent, send_prebriefs
from partnerflow_dev.sendgrid_sink import SendgridSink
from tests.integration.test_boardpack import Q3, as_of, load_two_quarters, two_feed_partnership

API_KEY = "SG.prebrief-test"


@pytest.fixture
def engine(warehouse_url: str) -> Iterator[Engine]:
    eng = sa.create_engine(warehouse_url)
    yield eng
    eng.dispose()


@pytest.fixture
def partnership() -> Partnership:
    return two_feed_partnership()


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[SendgridSink]:
    with SendgridSink(out_dir=tmp_path / "sink", api_key=API_KEY) as server:
        yield server


def _prebriefs(engine: Engine) -> dict[str, sa.Row]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT * FROM ops.notifications WHERE kind = :k ORDER BY id"), {"k": PREBRIEF})
        return {row.recipients[0]: row for row in rows}


def test_each_red_measure_reaches_the_responsible_partners_senior_lead_once(engine, partnership, sink):
    load_two_quarters(engine, partnership)
    built = as_of(partnership)
    draft = distribution.prepare(engine, partnership, Q3, as_of=built)
    result = send_prebriefs(engine, partnership, draft.record.id, today=built)
    assert len(result.queued) == 2
    assert result.distribute_on == draft.record.distribute_on

    council, police = (partnership.partner(p) for p in ("council", "police"))
    briefs = _prebriefs(engine)
    assert set(briefs) == {council.senior_lead.email, police.senior_lead.email}
    for brief in briefs.values():
        assert list(brief.recipients) == [brief.recipients[0]] and list(brief.cc) == []  # private

    to_council = briefs[council.senior_lead.email]
    assert to_council.subject == (
        "Blanktown SCP: private pre-brief – 2 red measures for Blanktown Council Children's Services "
        "in the Board pack for Q2 2026/27"
    )
    text = to_council.text_body
    assert "Re-referrals within 12 months" in text and "Partner returns received on time" in text
    assert "30.0% (12 of 40)" in text
    assert "Target: ≤ 22.0% (amber to 25.0%)" in text
    assert "Trend: " in text and "Q1 2026/27 (Apr–Jun 2026): 0.0%, Q2 2026/27 (Jul–Sep 2026): 30.0%" in text
    assert "Since last quarter: Up, worse" in text
    day = draft.record.distribute_on
    assert f"{day:%A} {day.day} {day:%B %Y}" in text
    assert "Council referrals and assessments: Published 23 Oct 2026, 2 working days late." in text
    assert "Assessments authorised" not in text  # amber, not red

    to_police = briefs[police.senior_lead.email]
    assert "1 red measure for Blanktown Police" in to_police.subject
    assert "Partner returns received on time" in to_police.text_body
    assert "Re-referrals" not in to_police.text_body
    for brief in briefs.values():  # no child's pseudonymised or local id reaches an email
        assert "q3c" not in brief.html_body and "q2c" not in brief.html_body and "q3r" not in brief.text_body

    # Again, and for a rebuilt draft showing the same red items: nothing new is sent.
    assert send_prebriefs(engine, partnership, draft.record.id, today=built).queued == ()
    assert len(_prebriefs(engine)) == 2

    settings = SenderSettings(api_key=API_KEY, host=sink.url, notifications=partnership.notifications)
    send_pending(engine, settings=settings)
    delivered = {
        to["email"]: message
        for message in sink.messages()
        if message["custom_args"]["partnerflow_kind"] == PREBRIEF
        for p in message["personalizations"]
        for to in p["to"]
    }
    assert set(delivered) == {council.senior_lead.email, police.senior_lead.email}
    assert all("cc" not in p for m in delivered.values() for p in m["personalizations"])


def test_a_new_red_item_sends_a_fresh_prebrief_and_moves_the_pack_back(engine, partnership):
    load_two_quarters(engine, partnership)
    built = as_of(partnership)
    first = distribution.prepare(engine, partnership, Q3, as_of=built)
    send_prebriefs(engine, partnership, first.record.id, today=built)

    # Two days on, a tighter local target makes "no further action" red for the council too.
    stricter = partnership.model_copy(
        update={
            "kpis": tuple(
                k.model_copy(update={"target": 10.0, "tolerance": 2.0}) if k.id == "referrals_nfa" else k
                for k in partnership.kpis
            )
        }
    )
    later = add_working_days(built, 2)
    second = distribution.prepare(engine, stricter, Q3, as_of=later)
    assert second.new and second.record.distribute_on == first.record.distribute_on
    result = send_prebriefs(engine, stricter, second.record.id, today=later)
    assert len(result.queued) == 1 and ":council:" in result.queued[0]
    assert result.distribute_on == add_working_days(later, partnership.board.pack.prebrief_working_days)

    with engine.connect() as conn:
        sent = prebriefs_sent(conn, Q3.id)
        waiting = distribution.pending_pack(conn, Q3.id)
    council_lead = partnership.partner("council").senior_lead.email
    assert [recipients for _, recipients in sent] == [
        (council_lead,),
        (partnership.partner("police").senior_lead.email,),
        (council_lead,),
    ]
    assert waiting.distribute_on == result.distribute_on
    with engine.connect() as conn:
        latest = conn.execute(
            sa.text("SELECT subject, text_body FROM ops.notifications WHERE key = :k"), {"k": sent[-1][0]}
        ).one()
    # The fresh pre-brief lists everything red for the council now, with the new day the pack goes.
    assert "3 red measures for Blanktown Council Children's Services" in latest.subject
    assert "Referrals ending in no further action" in latest.text_body
    day = result.distribute_on
    assert f"{day:%A} {day.day} {day:%B %Y}" in latest.text_body
