"""The Board pack's layout, read back from the PDF: where each run of text and each chart is on the page.

Eight quarters of every feed (the seeded generator, through the real intake) and a ninth, 2026Q3, with
education missing, as in the demo. Two measures get the longest titles a partnership might write, so the
tiles and chart titles are tested where they are hardest to fit.
"""

from __future__ import annotations

import datetime as dt
import io
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
from partnerflow.report.boardpack import BoardPack, read_content, render
from partnerflow.report.content import Edition
from partnerflow.report.pdf import MARGIN, _font_dir
from tests.pdf_layout import layout, overlapping, used_height

Q3 = Period.from_id("2026Q3")
BUILT = dt.date(2026, 10, 23)
MM = 72 / 25.4
LONG_TITLES = {
    "icpc_15wd": "Initial child protection conferences held within 15 working days of the section 47 enquiry starting",
    "assessments_45wd": "Children and family assessments authorised within 45 working days of the assessment starting",
}


@pytest.fixture(scope="module")
def config(demo_config: Partnership) -> Partnership:
    kpis = [k.model_copy(update={"title": LONG_TITLES.get(k.id, k.title)}) for k in demo_config.kpis]
    return demo_config.model_copy(update={"kpis": kpis})


@pytest.fixture(scope="module")
def pack(postgres, config: Partnership, tmp_path_factory) -> Iterator[BoardPack]:
    name = f"t_layout_{uuid.uuid4().hex[:10]}"
    postgres.create_database(name)
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("PARTNERFLOW_VAR", str(tmp_path_factory.mktemp("var")))
        monkeypatch.setenv("PARTNERFLOW_PSEUDONYM_KEY", secrets.token_hex(32))
        engine = sa.create_engine(postgres.url(name))
        warehouse.migrate(engine)
        history = [Q3]
        while len(history) < 9:
            history.insert(0, history[0].previous())
        load_periods(engine, config, history[:-1])
        load_periods(engine, config, [Q3], feeds=[f for f in config.feeds if f.id != "education_exclusions"])
        content = read_content(engine, config, Q3, as_of=BUILT)
        yield render(content, Edition(built_on=BUILT, meeting=dt.date(2026, 12, 10)))
        engine.dispose()


@pytest.fixture(scope="module")
def pages(pack):
    return layout(pack.pdf, [_font_dir()])


def test_no_two_pieces_of_text_overlap_and_no_text_runs_into_a_chart(pages):
    collisions = {page.number: [(a.text, b.text) for a, b in overlapping(page)] for page in pages if overlapping(page)}
    assert collisions == {}


def test_everything_lies_inside_the_page(pages):
    outside = [
        (page.number, box.text) for page in pages for box in page.boxes if not box.inside(page.width, page.height)
    ]
    assert outside == []
    assert all(page.text for page in pages)


def test_no_page_is_left_nearly_blank(pages):
    """Each page's content reaches at least a third of the way down its body (between header and footer)."""
    usage = {
        page.number: round(used_height(page, top_margin=(MARGIN + 9) * MM, bottom_margin=(MARGIN + 3) * MM), 2)
        for page in pages
    }
    assert {n: share for n, share in usage.items() if share < 1 / 3} == {}


def test_tile_and_chart_titles_are_never_cut(pack, pages, config):
    glance = " ".join(PdfReader(io.BytesIO(pack.pdf)).pages[1].extract_text().split())
    for kpi in config.kpis:
        assert kpi.title in glance
    assert "…" not in glance
    theme_text = " ".join(" ".join(b.text for b in page.text) for page in pages[2:])
    for title in LONG_TITLES.values():
        assert title.split()[-1] in theme_text
    assert not any(box.text.endswith("…") for page in pages for box in page.text)


def test_every_measure_with_history_has_a_chart_and_a_direction_of_travel(pack, pages):
    charts = sum(1 for page in pages for box in page.boxes if box.kind == "image")
    charted = [row for row in pack.content.rows if any(p.value is not None for p in row.trend)]
    assert charts == len(charted) >= len(pack.content.rows) - 1
    rated = [row for row in pack.content.rows if row.rag in ("red", "amber", "green")]
    assert len(rated) >= 12
    assert all(row.direction != "none" for row in rated)


def test_commentary_under_each_theme_and_benchmarks_in_tiles_tables_and_notes(pack):
    """config/commentary/2026Q3.yaml has words for two themes; the other themes say plainly there are none."""
    pages = [" ".join(page.extract_text().split()) for page in PdfReader(io.BytesIO(pack.pdf)).pages]
    front_door = next(text for text in pages if text.split("Version 1", 1)[-1].strip().startswith("Front door"))
    assert "What the data tells us Referrals ending in no further action have fallen" in front_door
    assert "What we are doing The front door's threshold guidance" in front_door
    whole = " ".join(pages)
    assert "No commentary on police was written for Q2 2026/27." in whole
    assert "No commentary on health" not in whole
    assert "Eng 22.0% · SN 21.0%" in pages[1]
    assert "England 22.0% (2024); Statistical neighbours 21.0% (2024)" in whole
    assert "England: 22.0% in 2024. Source: Illustrative value for the demo" in whole
    assert "<h3>What the data tells us</h3>" in pack.html and "No commentary on police" in pack.html
