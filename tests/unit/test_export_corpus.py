"""The exports partners' tools really make, generated here, each with the outcome intake gives it (issue 12).

Each export is a return of the demo configuration's own feeds, written the way the tool writes it: Excel's
"CSV" (Windows-1252), "CSV UTF-8" (with a byte order mark) and "Unicode Text" (UTF-16 LE with a byte order
mark, tab-separated), LibreOffice and Google Sheets CSV, semicolon-separated CSV from a European locale,
workbooks with title rows and near-miss sheet names, and a few accidents (a totals line, a NUL byte).

The outcome is what the partner meets: READ (every row, perhaps with notes on how it was read) or REFUSED
with the rule codes that name the real cause, and whether the contract is checked in the same round
(``row_level``: the other rows are staged and checked too). ``text`` is a phrase the report must hold.
The table in ``CORPUS`` is the one in the issue's closing note.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import openpyxl
import pytest

from partnerflow.core.config import Feed, load_config
from partnerflow.core.periods import Period
from partnerflow.intake import reader
from partnerflow_dev import synthetic

REPO = Path(__file__).resolve().parents[2]
CONFIG = load_config(REPO / "config" / "partnership.yaml")
PERIOD = Period.from_id("2026Q3")
KEY = bytes(range(32))
ROWS = 30


def exclusions() -> list[list[str]]:
    """Education's return as a table of text, a pupil name with letters outside ASCII in it."""
    rows = synthetic.exclusions_rows(PERIOD, seed=12, n=ROWS)
    rows[0]["pupil_name"] = "Zoë O’Farrow"
    return [list(synthetic.EXCLUSIONS_COLUMNS), *([row[c] for c in synthetic.EXCLUSIONS_COLUMNS] for row in rows)]


def health() -> list[list[str]]:
    rows = synthetic.health_icb_rows(PERIOD, seed=12)
    return [list(rows[0]), *(list(row.values()) for row in rows)]


def ascii_only(table: list[list[str]]) -> list[list[str]]:
    return [[cell.encode("ascii", "ignore").decode() for cell in row] for row in table]


HEALTH_ROWS = len(health()) - 1


def text_export(
    table: list[list[str]], *, encoding: str, delimiter: str = ",", line_end: str = "\r\n", bom: bytes = b""
) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, lineterminator=line_end).writerows(table)
    return bom + buffer.getvalue().encode(encoding)


def workbook(
    *, sheet: str = synthetic.CHILDREN_IN_CARE_SHEET, title_rows: int = 0, totals: bool = False, n: int = ROWS
) -> bytes:
    """The council's workbook as Excel saves it: a "Read me" sheet, then the return on ``sheet``."""
    book = openpyxl.Workbook()
    book.active.title = "Read me"
    book.active.append(["Children looked after in the quarter."])
    return_sheet = book.create_sheet(sheet)
    if title_rows:
        return_sheet.append([f"Blanktown children in care return, {PERIOD.label}"])
        for _ in range(title_rows - 1):
            return_sheet.append([])
    return_sheet.append(list(synthetic.CHILDREN_IN_CARE_HEADINGS))
    rows = synthetic.children_in_care_rows(PERIOD, seed=12, n=n)
    for row in rows:
        return_sheet.append([row[c] for c in synthetic.CHILDREN_IN_CARE_COLUMNS])
    if totals:
        missing = sum(int(row["missing_episodes"] or 0) for row in rows)
        return_sheet.append(["Total", None, None, None, None, None, None, missing, None, None, None])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def with_heading_spacing(table: list[list[str]]) -> list[list[str]]:
    header = ["UPN", "Pupil name", "Date of birth", "Postcode", "School\u00a0URN", "Category", "Reason  code"]
    return [header + ["Start Date", "Sessions", "Persistent absence"], *table[1:]]


def with_totals(table: list[list[str]], totals: list[str]) -> list[list[str]]:
    return [*table, totals]


def with_nul(data: bytes) -> bytes:
    lines = data.split(b"\r\n")
    lines[3] = lines[3].replace(b",", b",\x00", 1)
    return b"\r\n".join(lines)


@dataclass(frozen=True)
class Export:
    name: str
    feed: str
    data: Callable[[], bytes]
    outcome: str  # READ or REFUSED
    codes: frozenset[str] = frozenset()  # error codes, for REFUSED
    notes: frozenset[str] = frozenset()  # how it was read
    text: str = ""  # a phrase of the report
    row_level: bool = False  # REFUSED, with the other rows checked against the contract in the same round
    fmt: dict = field(default_factory=dict)  # the feed's format, changed
    rows: int = ROWS


CORPUS = [
    Export("Excel CSV (Windows-1252) on a Windows-1252 feed", "education_exclusions",
           lambda: text_export(exclusions(), encoding="cp1252"), "READ"),
    Export("Excel CSV UTF-8 (BOM) on a Windows-1252 feed", "education_exclusions",
           lambda: text_export(exclusions(), encoding="utf-8", bom=b"\xef\xbb\xbf"), "READ",
           notes=frozenset({"READ-001"}), text="read as UTF-8"),
    Export("Excel CSV UTF-8 (BOM), ASCII only, on a Windows-1252 feed", "education_exclusions",
           lambda: text_export(ascii_only(exclusions()), encoding="utf-8", bom=b"\xef\xbb\xbf"), "READ",
           notes=frozenset({"READ-001"}), text="although this return is agreed as Windows-1252"),
    Export("Excel CSV UTF-8 (BOM) on a UTF-8 feed", "health_icb",
           lambda: text_export(health(), encoding="utf-8", bom=b"\xef\xbb\xbf"), "READ", rows=HEALTH_ROWS),
    Export("Excel Unicode Text (UTF-16 LE BOM, tabs)", "education_exclusions",
           lambda: text_export(exclusions(), encoding="utf-16-le", delimiter="\t", bom=b"\xff\xfe"), "READ",
           notes=frozenset({"READ-001", "READ-003"}), text="separated by tabs"),
    Export("LibreOffice CSV (UTF-8, LF) on a Windows-1252 feed", "education_exclusions",
           lambda: text_export(exclusions(), encoding="utf-8", line_end="\n"), "READ",
           notes=frozenset({"READ-002"}), text="only valid as UTF-8"),
    Export("Google Sheets CSV (UTF-8, CRLF, no line end after the last row)", "health_icb",
           lambda: text_export(health(), encoding="utf-8").removesuffix(b"\r\n"), "REFUSED",
           codes=frozenset({"FILE-012"}), text="no line ending"),
    Export("Excel CSV, semicolon locale (Windows-1252, ;)", "education_exclusions",
           lambda: text_export(exclusions(), encoding="cp1252", delimiter=";"), "READ",
           notes=frozenset({"READ-003"}), text="separated by semicolons"),
    Export("CSV whose data rows end with extra empty fields", "education_exclusions",
           lambda: text_export([exclusions()[0], *([*r, "", ""] for r in exclusions()[1:])], encoding="cp1252"), "READ",
           notes=frozenset({"READ-004"}), text="extra empty fields"),
    Export("Headings typed with a non-breaking space and a double space", "education_exclusions",
           lambda: text_export(with_heading_spacing(exclusions()), encoding="cp1252"), "READ",
           notes=frozenset({"READ-005"}), text="non-breaking"),
    Export("Excel CSV (Windows-1252) on a UTF-8 feed", "education_exclusions",
           lambda: text_export(exclusions(), encoding="cp1252"), "REFUSED", codes=frozenset({"FILE-001"}),
           text="not in the agreed text encoding", row_level=True, fmt={"encoding": "utf-8"}),
    Export("Excel CSV with a totals line (,,…,86)", "education_exclusions",
           lambda: text_export(with_totals(exclusions(), ["", "", "", "", "", "", "", "", "86", ""]),
                               encoding="cp1252"), "REFUSED", codes=frozenset({"FILE-014"}),
           text="totals or footer line", row_level=True),
    Export("Health CSV with a Total row", "health_icb",
           lambda: text_export(with_totals(health(), ["Total", "", "400", "1147"]), encoding="utf-8"), "REFUSED",
           codes=frozenset({"FILE-014"}), text="totals or footer line", row_level=True, rows=HEALTH_ROWS),
    Export("A NUL byte in a row (a damaged copy)", "education_exclusions",
           lambda: with_nul(text_export(exclusions(), encoding="cp1252")), "REFUSED",
           codes=frozenset({"FILE-013"}), text="NUL character", row_level=True),
    Export("XLSX as agreed", "council_children_in_care", lambda: workbook(), "READ"),
    Export("XLSX, sheet named 'Children In Care ' (case, trailing space)", "council_children_in_care",
           lambda: workbook(sheet="Children In Care "), "READ", notes=frozenset({"READ-006"}),
           text="only in capital letters or spaces"),
    Export("XLSX, sheet named 'Children in care (2)'", "council_children_in_care",
           lambda: workbook(sheet="Children in care (2)"), "REFUSED", codes=frozenset({"FILE-010"}),
           text="no sheet with the agreed name"),
    Export("XLSX with a title row and a blank row, title rows agreed", "council_children_in_care",
           lambda: workbook(title_rows=2), "READ", notes=frozenset({"READ-007"}), text="below 2 title rows",
           fmt={"max_title_rows": 3}),
    Export("XLSX with a title row and a blank row, title rows not agreed", "council_children_in_care",
           lambda: workbook(title_rows=2), "REFUSED", codes=frozenset({"FILE-015"}), text="title rows above it"),
    Export("XLSX with a Total row", "council_children_in_care", lambda: workbook(totals=True), "REFUSED",
           codes=frozenset({"FILE-014"}), text="totals or footer line", row_level=True),
]  # fmt: skip


def feed_for(export: Export) -> Feed:
    feed = CONFIG.feed(export.feed)
    return feed.model_copy(update={"format": feed.format.model_copy(update=export.fmt)}) if export.fmt else feed


@pytest.mark.parametrize("export", CORPUS, ids=[e.name for e in CORPUS])
def test_each_export_is_read_or_refused_for_its_real_cause(tmp_path, export):
    feed = feed_for(export)
    dataset = CONFIG.dataset(feed.dataset)
    path = tmp_path / "landed"
    path.write_bytes(export.data())
    problems = reader.Problems()
    rows = list(reader.minimised_rows(path, feed=feed, dataset=dataset, key=KEY, problems=problems))
    report = problems.report(len(rows), date_format=dataset.date_format)
    errors = {f["code"] for f in report["failures"] if f["severity"] == "error"}
    notes = {f["code"] for f in report["failures"] if f["severity"] == "info"}
    text = " ".join(f["message"] for f in report["failures"])
    outcome = "REFUSED" if errors else "READ"
    assert (outcome, errors, notes) == (export.outcome, set(export.codes), set(export.notes))
    assert export.text in text
    if outcome == "READ":
        assert len(rows) == export.rows
    else:
        assert problems.row_level_only == export.row_level
        whole_file = [f for f in report["failures"] if f["severity"] == "error" and not f["row_numbers"]]
        assert all(f["failing_rows"] == 0 for f in whole_file)  # no "Rows affected: 1" for the whole file
    assert "Zoë" not in text and "O’Farrow" not in text


def test_the_ascii_excel_csv_utf8_case_has_no_other_bytes():
    data = CORPUS[2].data()
    assert data.startswith(b"\xef\xbb\xbf") and data[3:].isascii()  # the "even with plain ASCII"


def corpus_table() -> str:
    """The corpus as a Markdown table (export -> outcome), for the issue's closing note."""
    lines = ["| export | feed | outcome | rules / notes |", "|---|---|---|---|"]
    for e in CORPUS:
        outcome = e.outcome + (" (contract checked in the same round)" if e.row_level else "")
        lines.append(f"| {e.name} | {e.feed} | {outcome} | {', '.join(sorted(e.codes | e.notes)) or '–'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(corpus_table())


@pytest.mark.parametrize(
    ("fmt", "error"),
    [
        ({"kind": "csv", "max_title_rows": 2}, "max_title_rows applies to xlsx files only"),
        ({"kind": "xlsx", "max_title_rows": 11}, "less than or equal to 10"),
    ],
)
def test_title_rows_are_an_xlsx_option_validated_with_the_config(fmt, error):
    from partnerflow.core.config import FileFormat

    with pytest.raises(ValueError, match=error):
        FileFormat.model_validate(fmt)
    assert FileFormat.model_validate({"kind": "xlsx", "max_title_rows": 3}).max_title_rows == 3
