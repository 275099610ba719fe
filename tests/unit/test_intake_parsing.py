"""Parsing partners' files: what intake reads, and the rule it names (file, row, column) when it can't.

No database here: ``reader.minimised_rows`` is the whole parse-type-minimise path that ``reader.stage``
COPYs from. Every bad-input case invariant 6 (docs/invariants.md) lists ends in a rule code with row
numbers, never a value.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import tracemalloc
import zipfile
from pathlib import Path

import openpyxl
import pytest

from partnerflow.core.config import Column, Dataset, Feed, load_config
from partnerflow.core.periods import Period
from partnerflow.intake import reader
from partnerflow.intake.minimise import (
    MinimisationError,
    Pseudonymiser,
    PseudonymKeyMissing,
    nhs_number_digits,
    nhs_number_valid,
    pseudonymise,
)
from partnerflow_dev import synthetic

KEY = bytes(range(32))
PERIOD = Period.from_id("2026Q3")
HEADER = "case_id,full_name,note_code,seen_on,visits,nhs_number,postcode\n"
GOOD_ROW = "0012345,Ada Applewood,NA,2026-07-03,2,943 476 5919,BK1 2AB\n"

DATASET = Dataset(
    id="sample",
    title="A small return with one column of each kind",
    grain="record",
    table="core.sample",
    key=("case_id",),
    columns=(
        Column(name="case_id", required=True, minimise="pseudonymise", length=7, aliases=("case_ref",)),
        Column(name="full_name", minimise="drop"),
        Column(name="note_code", type="code", max_length=4),
        Column(name="seen_on", type="date", required=True),
        Column(name="visits", type="integer"),
        Column(name="nhs_number", minimise="nhs_number"),
        Column(name="postcode", minimise="postcode_sector", max_length=8),
    ),
)


def feed(kind: str = "csv", **format_options) -> Feed:
    pattern = {"csv": "s_{period}.csv", "xlsx": "s_{period}.xlsx", "json": "s_{period}.json"}[kind]
    return Feed.model_validate(
        {
            "id": "sample_feed",
            "partner": "council",
            "dataset": "sample",
            "title": "Sample",
            "transport": {"kind": "sftp", "connection": "c", "directory": "/d", "pattern": pattern},
            "format": {"kind": kind, **format_options},
        }
    )


def parse(tmp_path: Path, data: bytes, *, on: Feed | None = None, dataset: Dataset = DATASET):
    """(rows, {(code, column): row numbers}) for ``data`` landed as a file of ``on`` (a CSV feed by default)."""
    path = tmp_path / "landed"
    path.write_bytes(data)
    problems = reader.Problems()
    rows = list(reader.minimised_rows(path, feed=on or feed(), dataset=dataset, key=KEY, problems=problems))
    return rows, {key: tuple(rows) for key, rows in problems.found.items()}


def parse_noting(tmp_path: Path, data: bytes, *, on: Feed | None = None, dataset: Dataset = DATASET):
    """``parse``, and the notes on how the file was read (code -> message)."""
    path = tmp_path / "landed"
    path.write_bytes(data)
    problems = reader.Problems()
    rows = list(reader.minimised_rows(path, feed=on or feed(), dataset=dataset, key=KEY, problems=problems))
    return rows, {key: tuple(rows) for key, rows in problems.found.items()}, problems.notes


def csv_of(*rows: str, header: str = HEADER) -> bytes:
    return (header + "".join(rows)).encode()


def test_a_good_row_is_typed_and_minimised(tmp_path):
    rows, problems = parse(tmp_path, csv_of(GOOD_ROW))
    assert problems == {}
    (row_number, values), *_ = rows
    assert row_number == 1
    case_id, note_code, seen_on, visits, nhs_number, postcode = values
    assert case_id == pseudonymise(KEY, "case_id", "0012345")  # the leading zeros kept, then pseudonymised
    assert note_code == "NA"  # "NA" is a code like any other, not missing
    assert (seen_on, visits, postcode) == (dt.date(2026, 7, 3), 2, "BK1 2")
    assert nhs_number == pseudonymise(KEY, "nhs_number", "9434765919")
    assert "Ada" not in repr(values)  # dropped columns are never read past the header


def test_utf8_with_and_without_bom_read_the_same(tmp_path):
    plain, _ = parse(tmp_path, csv_of(GOOD_ROW))
    with_bom, problems = parse(tmp_path, b"\xef\xbb\xbf" + csv_of(GOOD_ROW))
    assert problems == {} and with_bom == plain


def test_windows_1252_bytes_in_a_utf8_feed_name_their_rows(tmp_path):
    cp1252_row = "0012346,Zoë O’Farrow,NA,2026-07-04,1,,BK1 2AB\n".encode("cp1252")
    data = csv_of(GOOD_ROW) + cp1252_row + csv_of(GOOD_ROW, header="") + cp1252_row
    _, problems = parse(tmp_path, data)
    assert problems == {("FILE-001", ""): (2, 4)}


def test_a_windows_1252_feed_reads_its_own_encoding(tmp_path):
    data = (HEADER + "0012346,Zoë O’Farrow,Né,2026-07-04,1,,BK1 2AB\n").encode("cp1252")
    rows, problems = parse(tmp_path, data, on=feed(encoding="windows-1252"))
    assert problems == {} and rows[0][1][1] == "Né"


def test_a_byte_order_mark_decides_the_encoding_whatever_the_feed_declares(tmp_path):
    utf8 = "0012346,Zoë O’Farrow,Né,2026-07-04,1,,BK1 2AB\n"
    plain, _ = parse(tmp_path, csv_of(utf8))
    for data, on in [
        (b"\xef\xbb\xbf" + csv_of(utf8), feed(encoding="windows-1252")),
        (csv_of(utf8).decode().encode("utf-16"), feed()),  # Python writes the BOM of the machine's order
        (b"\xfe\xff" + csv_of(utf8).decode().encode("utf-16-be"), feed(encoding="windows-1252")),
    ]:
        rows, problems, notes = parse_noting(tmp_path, data, on=on)
        assert (rows, problems, list(notes)) == (plain, {}, ["READ-001"])


def test_a_utf8_file_without_bom_on_a_windows_1252_feed_is_read_as_utf8_when_it_can_only_be(tmp_path):
    data = csv_of("0012346,Zoë O’Farrow,Né,2026-07-04,1,,BK1 2AB\n")
    rows, problems, notes = parse_noting(tmp_path, data, on=feed(encoding="windows-1252"))
    assert problems == {} and rows[0][1][1] == "Né" and "UTF-8 although" in notes["READ-002"]
    ascii_only = parse_noting(tmp_path, csv_of(GOOD_ROW), on=feed(encoding="windows-1252"))
    assert ascii_only[1:] == ({}, {})  # nothing to tell: ASCII is the same in both


def test_a_nul_byte_is_called_a_nul_byte(tmp_path):
    _, problems = parse(tmp_path, csv_of(GOOD_ROW, "0012346,A\x00B,X,2026-07-04,1,,\n"))
    assert problems == {("FILE-013", ""): (2,)}


def test_quoted_newlines_stay_in_their_field_and_rows_count_records(tmp_path):
    data = csv_of('0012345,"Ada\nApplewood","A\r\nB",2026-07-03,2,,\n', "0012346,Bea,X,2026-13-01,1,,\n")
    rows, problems = parse(tmp_path, data, dataset=_with(note_code=Column(name="note_code", type="code")))
    assert rows[0][1][1] == "A\r\nB"
    assert problems == {("FLD-001", "seen_on"): (2,)}  # the second record, though the fourth line


def test_columns_are_found_by_name_in_any_order_and_by_alias(tmp_path):
    reordered = "postcode,nhs_number,visits,Seen On,note_code,full_name,Case Ref\n"
    data = (reordered + "BK1 2AB,943 476 5919,2,2026-07-03,NA,Ada Applewood,0012345\n").encode()
    rows, problems = parse(tmp_path, data)
    assert problems == {}
    assert rows == parse(tmp_path, csv_of(GOOD_ROW))[0]


def test_missing_columns_required_and_optional(tmp_path):
    rows, problems = parse(tmp_path, b"case_id,full_name\n0012345,Ada\n")
    assert problems == {("FILE-002", "seen_on"): ()}
    assert rows == []
    rows, problems = parse(tmp_path, b"case_id,seen_on\n0012345,2026-07-03\n")  # optional columns absent
    assert problems == {}
    assert rows[0][1][1:] == [None, dt.date(2026, 7, 3), None, None, None]


def test_a_column_given_twice_is_refused(tmp_path):
    _, problems = parse(tmp_path, b"case_id,seen_on,case_ref\n0012345,2026-07-03,0012346\n")
    assert problems == {("FILE-006", "case_id"): ()}


def test_words_for_missing_are_text_in_text_columns_and_refused_elsewhere(tmp_path):
    data = csv_of(
        "0012345,,Null,2026-07-03,None,,\n",
        "0012346,,None,NA,,,\n",
        "0012347,,N/A,2026-07-03,,,\n",
    )
    rows, problems = parse(tmp_path, data)
    assert [values[1] for _, values in rows] == ["Null", "None", "N/A"]
    assert problems == {("FLD-013", "visits"): (1,), ("FLD-013", "seen_on"): (2,)}


@pytest.mark.parametrize(
    ("case_id", "code"),
    [
        ("1.23E+05", "FLD-010"),  # Excel's scientific notation
        ("12345.0", "FLD-010"),  # an id read as a number and written back
        ("12345", "FLD-011"),  # 0012345 with its leading zeros lost
        ("123456789", "FLD-012"),  # not the agreed length
        ("A12345", "FLD-012"),
    ],
)
def test_spreadsheet_mangled_identifiers_are_named_not_loaded(tmp_path, case_id, code):
    _, problems = parse(tmp_path, csv_of(GOOD_ROW, f"{case_id},,X,2026-07-03,1,,\n"))
    assert problems == {(code, "case_id"): (2,)}


@pytest.mark.parametrize(
    ("seen_on", "code"),
    [
        ("45123", "FLD-008"),  # an Excel date serial number
        ("45123.5", "FLD-008"),
        ("12/10/2026", "FLD-009"),  # day/month/year where ISO was agreed
        ("3.7.2026", "FLD-009"),
        ("2026-07-03 00:00:00", "FLD-009"),  # a time added on the way through a spreadsheet
        ("2026-7-3", "FLD-001"),  # not zero padded: not the agreed format
        ("03-Jul-2026", "FLD-001"),
        ("2026-02-30", "FLD-001"),
    ],
)
def test_spreadsheet_mangled_dates_are_named_not_loaded(tmp_path, seen_on, code):
    _, problems = parse(tmp_path, csv_of(f"0012345,,X,{seen_on},1,,\n"))
    assert problems == {(code, "seen_on"): (1,)}


def test_other_date_formats_are_strict_too(tmp_path):
    dataset = DATASET.model_copy(update={"date_format": "%d/%m/%Y"})
    rows, problems = parse(
        tmp_path, csv_of("0012345,,X,03/07/2026,1,,\n", "0012346,,X,3/7/2026,1,,\n"), dataset=dataset
    )
    assert rows[0][1][2] == dt.date(2026, 7, 3)
    assert problems == {("FLD-001", "seen_on"): (2,)}


@pytest.mark.parametrize("visits", ["1,234", "2.0", "two", "+", "99999999999"])
def test_counts_must_be_whole_numbers_in_range(tmp_path, visits):
    _, problems = parse(tmp_path, csv_of(f'0012345,,X,2026-07-03,"{visits}",,\n'))
    assert problems == {("FLD-002", "visits"): (1,)}


def test_nhs_numbers_and_postcodes_that_cannot_be_minimised(tmp_path):
    data = csv_of("0012345,,X,2026-07-03,1,943 476 5918,BK1 2AB\n", "0012346,,X,2026-07-03,1,,BK1 ABC\n")
    _, problems = parse(tmp_path, data)
    assert problems == {("FLD-004", "nhs_number"): (1,), ("FLD-005", "postcode"): (2,)}


def test_field_length_caps(tmp_path):
    _, problems = parse(tmp_path, csv_of("0012345,,TOOLONG,2026-07-03,1,,\n"))
    assert problems == {("FLD-003", "note_code"): (1,)}


def test_an_unclosed_quote_in_a_large_file_is_an_oversize_field(tmp_path):
    rest = "".join(f"00{n:05d},Name,X,2026-07-03,1,,\n" for n in range(8000))  # far beyond one field's limit
    _, problems = parse(tmp_path, csv_of(GOOD_ROW, '0012346,"Bea,X,2026-07-03,1,,\n', rest))
    assert problems == {("FILE-007", "full_name"): (2,)}  # the column whose quote is not closed


def test_a_line_without_end_is_an_oversize_field_and_memory_is_bounded(tmp_path):
    _, problems = parse(tmp_path, csv_of(GOOD_ROW, "0012346," + "x" * (reader.MAX_LINE_BYTES + 10)))
    assert problems == {("FILE-007", "full_name"): (2,)}


def test_a_stray_quote_inside_a_quoted_field(tmp_path):
    _, problems = parse(tmp_path, csv_of(GOOD_ROW, '0012346,"Bea "B" Brown",X,2026-07-03,1,,\n', GOOD_ROW))
    assert problems == {("FILE-011", ""): (2,)}


def test_a_file_cut_off_mid_row_is_truncated(tmp_path):
    cut = csv_of(GOOD_ROW, GOOD_ROW)[:-20]  # the last row stops part way through, with no line ending
    _, problems = parse(tmp_path, cut)
    assert problems == {("FILE-012", ""): (2,)}  # more in tests/unit/test_truncated_files.py


def test_a_file_cut_off_inside_a_quoted_field_is_truncated(tmp_path):
    _, problems = parse(tmp_path, csv_of(GOOD_ROW, '0012346,"Bea Br\n'))
    assert problems == {("FILE-008", ""): (2,)}


def test_a_last_row_without_a_newline_may_be_cut_off(tmp_path):
    _, problems = parse(tmp_path, csv_of(GOOD_ROW, GOOD_ROW.rstrip("\n")))
    assert problems == {("FILE-012", ""): (2,)}


def test_extra_fields_blank_lines_and_crlf(tmp_path):
    data = csv_of(GOOD_ROW, "\r\n", ",,,,,,\n", "0012346,,X,2026-07-03,1,,,surplus\n").replace(b"\n", b"\r\n")
    rows, problems = parse(tmp_path, data.replace(b"\r\r\n", b"\r\n"))
    assert [n for n, _ in rows] == [1, 4]  # blank rows count, as a spreadsheet shows them
    assert problems == {("FILE-005", ""): (4,)}


def test_empty_and_header_only_files(tmp_path):
    assert parse(tmp_path, b"")[1] == {("FILE-003", ""): ()}
    assert parse(tmp_path, b"\n\n")[1] == {("FILE-003", ""): ()}
    assert parse(tmp_path, HEADER.encode()) == ([], {})  # no rows: reader.stage reports FILE-003


def test_reports_name_rule_column_and_rows_and_never_a_value(tmp_path):
    bad_values = ["1.23E+05", "45123", "TOOLONG", "943 476 5918"]
    data = csv_of(f"{bad_values[0]},Ada Applewood,{bad_values[2]},{bad_values[1]},1,{bad_values[3]},BK1 2AB\n")
    path = tmp_path / "landed"
    path.write_bytes(data)
    problems = reader.Problems()
    list(reader.minimised_rows(path, feed=feed(), dataset=DATASET, key=KEY, problems=problems))
    report = problems.report(1, file_id=42)
    rejected = reader.FileRejected(report, problems.summary())
    assert report["file_id"] == 42 and str(rejected).startswith("file 42 rejected at intake: ")
    assert {(f["code"], tuple(f["columns"]), tuple(f["row_numbers"])) for f in report["failures"]} == {
        ("FLD-010", ("case_id",), (1,)),
        ("FLD-008", ("seen_on",), (1,)),
        ("FLD-003", ("note_code",), (1,)),
        ("FLD-004", ("nhs_number",), (1,)),
    }
    text = json.dumps(report) + str(rejected)
    assert not [value for value in [*bad_values, "Ada", "BK1"] if value in text]
    assert "YYYY-MM-DD" in next(f["message"] for f in report["failures"] if f["code"] == "FLD-008")


# --- minimisation -----------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [KEY, bytes(range(64)), bytes(range(65)), bytes(range(200))])  # around SHA-256's block
def test_the_fast_pseudonymiser_gives_the_same_keyed_pseudonyms(key):
    fast = Pseudonymiser(key)
    for value in ("0012345", " r2026300001 ", "É9", ""):
        assert fast("child_id", value) == pseudonymise(key, "child_id", value)
        assert fast.for_namespace("child_id")(value) == pseudonymise(key, "child_id", value)
    assert fast("child_id", "0012345") != fast("upn", "0012345")  # namespaces keep datasets' ids apart
    assert fast("child_id", "0012345") != Pseudonymiser(bytes(32))("child_id", "0012345")
    with pytest.raises(PseudonymKeyMissing):
        Pseudonymiser(b"too short")


def test_nhs_numbers_are_check_digit_validated_before_pseudonymising():
    assert nhs_number_valid("9434765919") and nhs_number_valid("943 476 5919") and nhs_number_valid("943-476-5919")
    for bad in ("9434765918", "943476591", "94347659190", "١٢٣٤٥٦٧٨٩٠", "abcdefghij"):
        assert not nhs_number_valid(bad)
        with pytest.raises(MinimisationError):
            Pseudonymiser(KEY).nhs_number(bad)
    assert nhs_number_digits("943 476 5919") == "9434765919"
    assert Pseudonymiser(KEY).nhs_number("943 476 5919") == pseudonymise(KEY, "nhs_number", "9434765919")


# --- XLSX -----------------------------------------------------------------------------------------


def workbook(*rows: list, sheets: tuple[str, ...] = ("Return",)) -> bytes:
    book = openpyxl.Workbook()
    book.remove(book.active)
    for name in sheets:
        sheet = book.create_sheet(name)
        for row in rows:
            sheet.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


XLSX_HEADER = ["Case ID", "Full name", "Note code", "Seen on", "Visits", "NHS number", "Postcode"]


def test_xlsx_cells_are_read_as_real_dates_numbers_and_text(tmp_path):
    data = workbook(XLSX_HEADER, ["0012345", "Ada", "NA", dt.datetime(2026, 7, 3), 2, "9434765919", "BK1 2AB"])
    rows, problems = parse(tmp_path, data, on=feed("xlsx"))
    assert problems == {}
    assert rows == parse(tmp_path, csv_of(GOOD_ROW))[0]


def test_xlsx_spreadsheet_changed_cells_are_named(tmp_path):
    data = workbook(
        XLSX_HEADER,
        [12345, None, "X", dt.date(2026, 7, 3), 1, None, None],  # an id stored as a number, zeros lost
        ["0012346", None, dt.datetime(2026, 10, 15), 45123, 1.5, None, None],  # a code became a date; a serial
        [None],
        ["1.23E+05", None, "X", "2026-07-03", "2", None, None],  # text Excel wrote in scientific notation
    )
    rows, problems = parse(tmp_path, data, on=feed("xlsx"))
    assert problems == {
        ("FLD-011", "case_id"): (1,),
        ("FLD-010", "note_code"): (2,),
        ("FLD-008", "seen_on"): (2,),
        ("FLD-002", "visits"): (2,),
        ("FLD-010", "case_id"): (4,),
    }
    assert [n for n, _ in rows] == [1, 2, 4]


def test_xlsx_reads_the_named_sheet_or_else_the_first(tmp_path):
    data = workbook(XLSX_HEADER, ["0012345", None, "X", dt.date(2026, 7, 3)], sheets=("Read me", "Return"))
    assert parse(tmp_path, data, on=feed("xlsx", sheet="Return"))[1] == {}
    assert parse(tmp_path, data, on=feed("xlsx"))[1] == {}  # the first sheet has the same rows here
    assert parse(tmp_path, data, on=feed("xlsx", sheet="Missing"))[1] == {("FILE-010", ""): ()}


def test_not_a_workbook(tmp_path):
    assert parse(tmp_path, csv_of(GOOD_ROW), on=feed("xlsx"))[1] == {("FILE-009", ""): ()}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("hello.txt", "not a workbook")
    assert parse(tmp_path, buffer.getvalue(), on=feed("xlsx"))[1] == {("FILE-009", ""): ()}


def test_a_workbook_that_expands_without_bound_is_not_opened(tmp_path):
    good = workbook(XLSX_HEADER, ["0012345", None, "X", dt.date(2026, 7, 3)])
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(good)) as source, zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bomb:
        for info in source.infolist():
            bomb.writestr(info, source.read(info))
        bomb.writestr("xl/media/padding.bin", b"\0" * (64 << 20))  # 64 MiB of zeros compress to about 64 KiB
    assert parse(tmp_path, buffer.getvalue(), on=feed("xlsx"))[1] == {("FILE-009", ""): ()}


# --- JSON (API feeds) -----------------------------------------------------------------------------


def landed_pages(*pages: list) -> bytes:
    return json.dumps(
        {"endpoint": "/v1/x", "pages": [{"page": i, "records": p} for i, p in enumerate(pages, 1)]}
    ).encode()


def test_json_records_across_pages_with_typed_values(tmp_path):
    record = {"case_id": "0012345", "note_code": "NA", "seen_on": "2026-07-03", "visits": 2, "postcode": None}
    rows, problems = parse(tmp_path, landed_pages([record], [{**record, "case_id": "0012346"}]), on=feed("json"))
    assert problems == {} and [n for n, _ in rows] == [1, 2]
    assert rows[0][1][3] == 2 and rows[0][1][5] is None


def test_json_that_is_not_pages_of_records(tmp_path):
    assert parse(tmp_path, b'{"pages": [{"records": [1', on=feed("json"))[1] == {("FILE-004", ""): ()}
    nested = {"case_id": "0012345", "seen_on": "2026-07-03", "visits": {"n": 1}}
    assert parse(tmp_path, landed_pages([nested]), on=feed("json"))[1] == {("FILE-004", ""): (1,)}
    assert parse(tmp_path, landed_pages([{"case_id": "0012345"}]), on=feed("json"))[1] == {("FILE-002", "seen_on"): ()}


# --- the demo partnership's own returns -------------------------------------------------------------


@pytest.mark.parametrize("feed_id", [f.id for f in load_config().feeds])
def test_every_feeds_generated_return_reads_cleanly(tmp_path, feed_id):
    config = load_config()
    the_feed = config.feed(feed_id)
    dataset = config.dataset(the_feed.dataset)
    sample = synthetic.sample_return(dataset.id, PERIOD, seed=5)
    data = landed_pages(sample) if isinstance(sample, list) else sample
    rows, problems = parse(tmp_path, data, on=the_feed, dataset=dataset)
    assert problems == {} and rows
    if isinstance(sample, list):
        assert len(rows) == len(sample)
    identifiers = [i for i, c in enumerate(dataset.loaded_columns) if c.minimise == "pseudonymise"]
    assert all(len(values[i]) == 64 for _, values in rows for i in identifiers)


def test_memory_stays_flat_as_files_grow(tmp_path):
    def peak(rows: int) -> int:
        path = tmp_path / f"big-{rows}.csv"
        with path.open("w") as out:
            out.write(HEADER)
            for n in range(rows):
                out.write(f"{n:07d},Name {n},X,2026-07-03,{n % 9},,BK{n % 9 + 1} 2AB\n")
        problems = reader.Problems()
        tracemalloc.start()
        try:
            for _ in reader.minimised_rows(path, feed=feed(), dataset=DATASET, key=KEY, problems=problems):
                pass
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, large = peak(2_000), peak(20_000)
    assert large < small * 2 + (256 << 10)  # ten times the rows, about the same memory


def _with(**columns: Column) -> Dataset:
    return DATASET.model_copy(update={"columns": tuple(columns.get(c.name, c) for c in DATASET.columns)})
