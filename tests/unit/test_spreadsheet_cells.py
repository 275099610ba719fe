"""Every CSV partnerflow writes is safe to open in a spreadsheet (issue 12; docs/personal-data.md).

A cell starting ``=``, ``+``, ``-`` or ``@`` is a formula to Excel, LibreOffice and Google Sheets, and so
can one starting with a tab or a carriage return: each gets a leading ``'``. Checked on the one helper, on
both CSVs partnerflow writes (the Board pack's figures, a rejection's row list), and by a guard that any
new CSV writer in the package uses the helper.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from types import SimpleNamespace

from hypothesis import given
from hypothesis import strategies as st

from partnerflow.core.periods import Period
from partnerflow.core.spreadsheet import SPREADSHEET_TRIGGERS, spreadsheet_safe
from partnerflow.notify import messages
from partnerflow.report import boardpack

PACKAGE = Path(__file__).resolve().parents[2] / "plugins" / "partnerflow"
DEV_ONLY = ("devstack", "generator.py")  # partners' synthetic files, not partnerflow's own output
CELLS = st.one_of(
    st.text(max_size=12),
    st.builds(lambda t, rest: t + rest, st.sampled_from(SPREADSHEET_TRIGGERS), st.text(max_size=8)),
)


def unsafe(cell: str) -> bool:
    return cell.startswith(SPREADSHEET_TRIGGERS)


def test_each_trigger_is_escaped_and_nothing_else_changes():
    assert [spreadsheet_safe(v) for v in ("=1+1", "+1", "-1", "@SUM(A1)", "\t=1+1", "\r=1+1", "\tx")] == [
        "'=1+1",
        "'+1",
        "'-1",
        "'@SUM(A1)",
        "'\t=1+1",
        "'\r=1+1",
        "'\tx",
    ]
    assert [spreadsheet_safe(v) for v in ("1", "", None, 12, "a=b", " =1", "\n", "'=1")] == [
        "1",
        "",
        "",
        "12",
        "a=b",
        " =1",
        "\n",
        "'=1",
    ]


@given(CELLS)
def test_no_escaped_cell_starts_a_formula_and_the_text_is_kept(cell):
    safe = spreadsheet_safe(cell)
    assert not unsafe(safe)
    assert safe in (cell, "'" + cell)


def read_back(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


@given(st.lists(st.tuples(CELLS, CELLS, CELLS, CELLS, CELLS), min_size=1, max_size=4))
def test_the_board_packs_figures_csv_has_no_formula_cell(texts):
    period = Period.from_id("2026Q3")
    rows = []
    for measure_id, title, theme, display, category in texts:
        cell = SimpleNamespace(text=display)
        breakdown = SimpleNamespace(categories=[category], periods=[period], table=SimpleNamespace(cells=[[cell]]))
        rows.append(
            SimpleNamespace(
                id=measure_id,
                title=title,
                theme=theme,
                trend=[SimpleNamespace(period=period.previous(), cell=cell), SimpleNamespace(period=period, cell=None)],
                display=display,
                target_text=category,
                rag_label=title,
                note=theme,
                breakdown=breakdown,
            )
        )
    written = read_back(boardpack.figures_csv(SimpleNamespace(rows=rows, period=period)))
    assert len(written) == 1 + 3 * len(rows)
    assert not [c for row in written for c in row if unsafe(c)]


def test_the_rejection_row_list_csv_has_no_formula_cell():
    failures = [
        messages._rule_failure({"code": code, "row_numbers": [2, 1]}) for code in ("FILE-012", "-FLD-004", "@X-1")
    ]
    written = read_back(messages._rejection_csv(failures))
    assert written[0] == ["row_number", "rule_code"]
    assert not [c for row in written for c in row if unsafe(c)]


def test_every_csv_writer_in_the_package_uses_the_helper():
    writers = re.compile(r"csv\.(writer|DictWriter)\(")
    for path in PACKAGE.rglob("*.py"):
        if any(part in path.parts or path.name == part for part in DEV_ONLY):
            continue
        source = path.read_text()
        if writers.search(source):
            assert "spreadsheet_safe(" in source, f"{path.relative_to(PACKAGE)} writes CSV without spreadsheet_safe"
