"""The Board pack PDF, rendered from realistic returns of every feed and read back with pypdf.

Four quarters of the seeded generator's returns go through the real intake (parse, minimise, COPY,
publish). For 2026Q3 the education return never arrives and the police publish two working days late:
the pack must name both, show every measure it can, hide small numbers, and read like a Board pack.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import re
import secrets
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from pypdf import PdfReader

from bench.boardpack import load_periods
from partnerflow import warehouse
from partnerflow.core.config import Partnership
from partnerflow.core.periods import Period
from partnerflow.notify.sender import SenderSettings, send_pending
from partnerflow.report import approval, distribution
from partnerflow.report.boardpack import BoardPack, read_content, render
from partnerflow.report.content import Edition, SentVersion
from partnerflow_dev.sendgrid_sink import SendgridSink

Q3 = Period.from_id("2026Q3")
BUILT = dt.date(2026, 10, 23)
EDUCATION = "Blanktown Education and Inclusion Service"
POLICE = "Blanktown Police"
API_KEY = "SG.board-pdf-test"


@pytest.fixture(scope="module")
def loaded(postgres, demo_config: Partnership, tmp_path_factory) -> Iterator[sa.Engine]:
    """A warehouse of its own with 2025Q4-2026Q2 of every feed on time, and 2026Q3 as described above."""
    name = f"t_pdf_{uuid.uuid4().hex[:10]}"
    postgres.create_database(name)
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("PARTNERFLOW_VAR", str(tmp_path_factory.mktemp("var")))
        monkeypatch.setenv("PARTNERFLOW_PSEUDONYM_KEY", secrets.token_hex(32))
        engine = sa.create_engine(postgres.url(name))
        warehouse.migrate(engine)
        earlier = [Period.from_id(p) for p in ("2025Q4", "2026Q1", "2026Q2")]
        load_periods(engine, demo_config, earlier)
        on_time = [f for f in demo_config.feeds if f.id not in ("education_exclusions", "police_ppn")]
        load_periods(engine, demo_config, [Q3], feeds=on_time)
        load_periods(engine, demo_config, [Q3], feeds=[demo_config.feed("police_ppn")], working_days_after_due=2)
        yield engine
        engine.dispose()


@pytest.fixture(scope="module")
def pack(loaded, demo_config) -> BoardPack:
    content = read_content(loaded, demo_config, Q3, as_of=BUILT)
    return render(content, Edition(built_on=BUILT, meeting=dt.date(2026, 12, 10)))


def _pages(pdf: bytes) -> list[str]:
    return [" ".join(page.extract_text().split()) for page in PdfReader(io.BytesIO(pdf)).pages]


def test_the_pdf_has_a_cover_a_summary_a_page_per_theme_completeness_and_notes(pack, demo_config):
    reader = PdfReader(io.BytesIO(pack.pdf))
    pages = _pages(pack.pdf)
    assert len(reader.pages) == pack.pages >= 2 + len(pack.content.themes) + 2
    assert reader.metadata.title == "Blanktown SCP Board performance pack, Q2 2026/27 (Jul–Sep 2026), version 1"

    cover = pages[0]
    assert demo_config.board.name in cover and "Performance pack" in cover
    assert "Q2 2026/27 (Jul–Sep 2026)" in cover
    assert "Version 1, built Friday 23 October 2026" in cover
    assert "For the Board meeting on Thursday 10 December 2026" in cover
    assert f"{len(demo_config.kpis)} measures:" in cover
    assert f"{EDUCATION}, Suspensions, permanent exclusions and persistent absence: Not received" in cover
    assert (
        f"{POLICE}, Police PPNs and DA incidents with a child present: Published 23 Oct 2026, 2 working days late"
        in cover
    )

    glance = pages[1]
    assert glance.startswith("Blanktown SCP · Board performance pack · Q2 2026/27 Version 1 At a glance")
    for title in ("Referrals received", "Re-referrals within 12 months", "Partner returns received on time"):
        assert title in glance

    for theme, rows in pack.content.themes.items():
        (page_number,) = [
            i for i, text in enumerate(pages) if re.search(rf"Version 1 {re.escape(theme)} Measure", text)
        ]
        text = pages[page_number]
        for row in rows:
            assert row.display in text
        charted = [r for r in rows if any(p.value is not None for p in r.trend)]
        if charted:
            # Trend charts are embedded: on the theme's page, or the next when the theme's figures start a page.
            images = len(reader.pages[page_number].images) + len(reader.pages[page_number + 1].images)
            assert images >= min(len(charted), 2)
    assert all(f"Page {n} of {len(pages)}" in text for n, text in enumerate(pages, start=1))


def test_every_partner_with_missing_late_or_rejected_data_is_named(pack):
    pages = _pages(pack.pdf)
    (completeness,) = [t for t in pages if "Data completeness" in t and "Partner Return Due" in t]
    assert f"Returns missing, late or rejected for Q2 2026/27: {POLICE}, {EDUCATION}." in completeness
    assert "Not received (due 21 Oct 2026, 2 working days overdue)" in completeness
    (education,) = [t for t in pages if "Version 1 Education Measure" in t]
    assert f"Data missing from {EDUCATION}." in education


def test_small_numbers_are_hidden_in_the_pdf_as_in_the_figures(pack):
    pages = " ".join(_pages(pack.pdf))
    hidden = 0
    for row in pack.content.rows:
        if row.breakdown is None:
            continue
        table = row.breakdown.table
        for i, category in enumerate(row.breakdown.categories):
            cells = [c.text for c in table.cells[i]]
            assert " ".join([category, *cells]) in pages  # the PDF shows exactly the protected table
            hidden += sum(c.suppressed for c in table.cells[i])
            for cell in table.cells[i]:
                assert cell.suppressed or cell.value == 0 or cell.value > (7 if row.kpi.disclosure == "nhs" else 5)
    assert hidden > 0, "four quarters of demo data include some small counts"
    notes = _pages(pack.pdf)[-1] + _pages(pack.pdf)[-2]
    assert "counts from 1 to 5 are shown as c" in notes and "rounded to the nearest 5" in notes


def test_the_same_content_renders_the_same_bytes(pack):
    again = render(pack.content, pack.edition)
    assert again.pdf == pack.pdf and again.pdf_sha256 == pack.pdf_sha256


def test_a_revised_version_says_on_its_cover_what_it_supersedes_and_what_changed(pack):
    revised = render(
        pack.content,
        Edition(
            version=2,
            built_on=dt.date(2026, 11, 2),
            supersedes=SentVersion(1, dt.date(2026, 10, 28)),
            changes=("Suspensions and permanent exclusions: now 351 (was Data missing).",),
        ),
    )
    pages = _pages(revised.pdf)
    assert "Revised: supersedes version 1 sent on 28 Oct 2026. What changed:" in pages[0]
    assert "Suspensions and permanent exclusions: now 351 (was Data missing)." in pages[0]
    assert "Version 2 (revised)" in pages[1]


def test_the_board_gets_the_pdf_and_a_phone_friendly_summary_through_the_sink(loaded, demo_config, tmp_path):
    draft = distribution.prepare(loaded, demo_config, Q3, as_of=BUILT)
    approval.approve_pack(loaded, demo_config, Q3, approved_by="Priya Shah")
    sent = distribution.distribute(loaded, demo_config, Q3, today=draft.record.distribute_on)
    assert (sent.version, sent.enqueued) == (1, True)

    with SendgridSink(out_dir=tmp_path / "sink", api_key=API_KEY) as sink:
        settings = SenderSettings(api_key=API_KEY, host=sink.url, notifications=demo_config.notifications)
        send_pending(loaded, settings=settings)
        (message,) = [m for m in sink.messages() if m["custom_args"]["partnerflow_kind"] == "board-pack"]
    recipients = {to["email"] for p in message["personalizations"] for to in p["to"]}
    assert recipients == {p.email for p in demo_config.board.recipients}
    attachments = {a["filename"]: a for a in message["attachments"]}
    pdf = base64.b64decode(attachments["board-pack-2026Q3-v1.pdf"]["content"])
    assert attachments["board-pack-2026Q3-v1.pdf"]["type"] == "application/pdf"
    assert "Performance pack" in _pages(pdf)[0]
    body = next(c["value"] for c in message["content"] if c["type"] == "text/html")
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in body
    assert "max-width: 640px" in body and "<table" not in body.split("<main>")[1]  # lists, not wide tables
    assert EDUCATION in body and "Red (" in body
