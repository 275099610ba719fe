"""The fast intake path gives exactly what a plain one gives: same rows, values, rule codes and row numbers.

``intake`` reads CSV a block at a time, remembers each column's conversions by raw text and writes COPY
text itself. The reference here does none of that: it reads a line at a time with ``readline`` (as intake
once did), converts every value afresh with pseudonyms from ``hmac.new``, and formats COPY fields by
plain replacement. Hypothesis generates CSV files full of awkward values (the same text in every column,
bad dates and ids, words for missing, quoted newlines, non-ASCII, stray quotes, bad bytes, cut-off ends,
byte order marks and UTF-16, semicolons and tabs, trailing empty fields, totals lines)
and the block size, memory size and line limit are shrunk so that every boundary is crossed.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import decimal
import hmac
import io
import itertools
import tempfile
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import DataError

from partnerflow.core.config import Column, Dataset, Feed
from partnerflow.intake import reader
from partnerflow.intake.minimise import MinimisationError, nhs_number_digits

KEY = bytes(range(100, 140))
SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

DATASET = Dataset(
    id="every_kind",
    title="One column of every kind intake converts",
    grain="record",
    table="core.every_kind",
    key=("case_id",),
    columns=(
        Column(name="case_id", required=True, minimise="pseudonymise", length=7),
        Column(name="ref", minimise="pseudonymise", max_length=12),
        Column(name="full_name", minimise="drop"),
        Column(name="note", max_length=30),
        Column(name="urn", length=6),
        Column(name="note_code", type="code", max_length=4),
        Column(name="seen_on", type="date", required=True),
        Column(name="born", type="date", minimise="month"),
        Column(name="visits", type="integer"),
        Column(name="cost", type="decimal"),
        Column(name="flag", type="boolean"),
        Column(name="nhs_number", minimise="nhs_number"),
        Column(name="postcode", minimise="postcode_sector", max_length=8),
    ),
)
HEADINGS = [c.name for c in DATASET.columns] + ["unknown"]

# Every value may land in every column, so the same text is converted (and remembered) by each of them.
VALUES = [
    *["", " ", "NA", "n/a", "Null", "None", "-", "#N/A"],
    *["0012345", " 0012345 ", "0012346", "12345", "1.23E+05", "12345.0", "R2026001", "r2026001", "123456"],
    *["2026-07-03", " 2026-07-03", "2026-07-31", "2026-02-30", "2026-7-3", "03/07/2026", "3/7/2026"],
    *["45123", "45123.5", "12/10/2026", "2026-07-03 00:00:00", "03-Jul-2026"],
    *["7", "-3", "+4", "0", "99999999999", "1,234", "2.50", "0.1", "Y", "n", "TRUE", "no", "1"],
    *["943 476 5919", "9434765919", "943-476-5919", "943 476 5918", "BK1 2AB", "bk12ab", "SW1A 1AA", "BK1 ABC"],
    *["Zoë", "É9", "O’Farrow", "back\\slash", "tab\there", "new\nline", "cr\rreturn", "\r\n", 'say "hi"', "a,b"],
    *["x" * 31, "\u2028", "\x0b", "\x00", "\\N"],
]
FIELDS = st.one_of(st.sampled_from(VALUES), st.sampled_from(VALUES), st.text(max_size=8))


def feed(encoding: str) -> Feed:
    return Feed.model_validate(
        {
            "id": "every_kind_feed",
            "partner": "council",
            "dataset": "every_kind",
            "title": "Every kind",
            "transport": {"kind": "sftp", "connection": "c", "directory": "/d", "pattern": "e_{period}.csv"},
            "format": {"kind": "csv", "encoding": encoding},
        }
    )


def only(*names: str) -> Dataset:
    return DATASET.model_copy(update={"columns": tuple(c for c in DATASET.columns if c.name in names)})


@st.composite
def landed_csvs(draw) -> bytes:
    """A CSV of the dataset, well formed or not in many small ways."""
    headings = [h for h in draw(st.permutations(HEADINGS)) if h in ("case_id", "seen_on") or draw(st.booleans())]
    width = len(headings)
    rows = draw(st.lists(st.lists(FIELDS, min_size=max(width - 2, 0), max_size=width + 1), max_size=10))
    if draw(st.booleans()):  # a trailing empty field or two, as some exports write
        rows = [row + [""] * draw(st.integers(0, 2)) for row in rows]
    if draw(st.integers(0, 3)) == 0:  # a totals line
        rows.append(draw(st.sampled_from([["", "400"], ["Total", "", "12"], ["", "1,234", ""], ["TOTAL:"]])))
    text = io.StringIO()
    delimiter = draw(st.sampled_from([",", ",", ";", "\t"]))  # as locale settings and "Unicode Text" write
    writer = csv.writer(text, delimiter=delimiter, lineterminator=draw(st.sampled_from(["\n", "\r\n"])))
    writer.writerow(headings)
    writer.writerows(rows)
    encoding = draw(st.sampled_from(["utf-8", "cp1252", "utf-8", "cp1252", "utf-16"]))
    data = text.getvalue().encode(encoding, errors="replace")
    if draw(st.booleans()):
        data = data.rstrip(b"\n")  # no final newline, maybe a short last row
    for _ in range(draw(st.integers(0, 2))):  # a bad byte, a NUL, a stray quote or a cut somewhere
        at = draw(st.integers(0, len(data)))
        damage = draw(st.sampled_from([b"\x92", b"\xff", b"\x81", b"\x00", b'"', b"", b"\n"]))
        data = data[:at] + damage + (data[at:] if damage else b"")
    if draw(st.integers(0, 5)) == 0:
        data = draw(st.sampled_from([b"\xef\xbb\xbf", b"\xff\xfe"])) + data
    return data


# --- the reference --------------------------------------------------------------------------------


class ReferencePseudonymiser:
    """Pseudonyms straight from ``hmac.new``."""

    def __init__(self, key: bytes):
        self.key = key

    def for_namespace(self, namespace: str):
        return lambda value: hmac.new(self.key, f"{namespace}:{value.strip().upper()}".encode(), "sha256").hexdigest()

    def nhs_number(self, value: str) -> str:
        return self.for_namespace("nhs_number")(nhs_number_digits(value))


class TooLong(Exception):
    pass


def reference_mark(error: UnicodeError) -> tuple[str, int]:
    assert isinstance(error, UnicodeDecodeError)
    return "\udcff", error.end


codecs.register_error("reference-mark", reference_mark)
NOTES_DECLARED = {"utf-8": "UTF-8", "windows-1252": "Windows-1252"}


def reference_text(data: bytes, the_feed: Feed, problems: reader.Problems) -> tuple[bytes, str]:
    """The bytes to read (after any byte order mark, UTF-16 as UTF-8) and their codec, decided from the whole
    file at once: a BOM says what the file is; a Windows-1252 feed's file that is UTF-8 with non-ASCII is UTF-8."""
    declared = the_feed.format.encoding
    shown = NOTES_DECLARED[declared]
    if data.startswith(b"\xef\xbb\xbf"):
        if declared != "utf-8":
            problems.note("READ-001", found="UTF-8", declared=shown)
        return data[3:], "utf-8"
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        problems.note("READ-001", found="UTF-16", declared=shown)
        text = data[2:].decode("utf-16-le" if data[0] == 0xFF else "utf-16-be", "reference-mark")
        return text.encode("utf-8", "surrogateescape"), "utf-8"
    if declared == "windows-1252" and not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return data, "cp1252"
        problems.note("READ-002", declared=shown)
        return data, "utf-8"
    return data, "cp1252" if declared == "windows-1252" else "utf-8"


def reference_is_totals(fields: list[str], required: list[int]) -> bool:
    filled = [f.strip() for f in fields if f.strip()]
    if not filled:
        return False
    if " ".join(filled[0].split()).lower().rstrip(":") in {"total", "totals", "grand total", "sub total", "subtotal"}:
        return True
    numbers = all(f.replace(",", "").replace(".", "", 1).lstrip("+-").isdigit() for f in filled)
    return numbers and not fields[0].strip() and any(not fields[p].strip() for p in required)


def reference_rows(data: bytes, the_feed: Feed, dataset: Dataset, max_line: int):
    """(rows, problems) read a line at a time, each value converted on its own: intake as it was."""
    problems = reader.Problems()
    data, codec = reference_text(data, the_feed, problems)
    handle = io.BytesIO(data)
    state = {"bad": False, "nul": False, "exhausted": False}
    raw_record: list[bytes] = []  # the lines of the record being read, as they are in the file
    too_long: list[bytes] = []

    def lines():
        line = handle.readline(max_line + 1)
        while line:
            if len(line) > max_line:
                too_long.append(line)
                raise TooLong
            raw_record.append(line)
            if b"\x00" in line:
                state["nul"], line = True, line.replace(b"\x00", b"")
            try:
                text = line.decode(codec)
            except UnicodeDecodeError:
                state["bad"] = True
                text = line.decode(codec, errors="replace")
            yield text
            line = handle.readline(max_line + 1)
        state["exhausted"] = True

    def error_code(exc: Exception) -> str:
        if isinstance(exc, TooLong) or "field larger than field limit" in str(exc):
            return "FILE-007"
        if not state["exhausted"]:
            return "FILE-011"
        return "FILE-008" if data.endswith(b"\n") else "FILE-012"  # ended inside quotes, or with no line end

    def long_column(header: list[str], delimiter: str) -> str:
        """The field in progress where the record's line grew too long: its column, if the dataset's. (The
        one rule shared with intake, ``over_long_field``: the field a byte limit is crossed in.)"""
        assert too_long, "only line lengths are exceeded by these small files"
        raw = b"".join(raw_record) + too_long[0]
        index = reader.over_long_field(raw, delimiter, field_limit=1 << 30, line_limit=max_line, codec=codec)
        if index is None or index >= len(header):
            return ""
        spellings = {reader._normalise_header(s): c.name for c in dataset.columns for s in (c.name, *c.aliases)}
        return spellings.get(reader._normalise_header(header[index]), "")

    line_iter = lines()
    try:
        first = next(line_iter, None)
    except TooLong:
        problems.add("FILE-007", "", 0)
        return [], problems
    delimiter = ","
    if first is not None:
        sensible = []
        for candidate in [",", ";", "\t"]:
            trial = reader.Problems()
            try:
                reader._header_positions(next(csv.reader([first], delimiter=candidate), []), dataset, trial)
            except csv.Error:
                continue
            if not any(code == "FILE-002" for code, _ in trial.found):
                sensible.append(candidate)
        if "," not in sensible and len(sensible) == 1:
            delimiter = sensible[0]
            names = {",": "commas", ";": "semicolons", "\t": "tabs"}
            problems.note("READ-003", found=names[delimiter], declared="commas")
    csv_rows = csv.reader(
        itertools.chain([first] if first is not None else [], line_iter), delimiter=delimiter, strict=True
    )
    try:
        header = next(csv_rows, None)
    except (csv.Error, TooLong) as exc:
        problems.add(error_code(exc), "", 0)
        return [], problems
    raw_record.clear()
    if not header or not any(h.strip() for h in header):
        problems.add("FILE-003", "", 0)
        return [], problems
    if handle.tell() == len(data) and not data.endswith(b"\n"):
        problems.add("FILE-012", "", 0)
        return [], problems
    if state["bad"]:
        problems.add("FILE-001", "", 0)
        state["bad"] = False
    if state["nul"]:
        problems.add("FILE-013", "", 0)
        state["nul"] = False
    positions = reader._header_positions(header, dataset, problems)
    if problems:
        if any(code == "FILE-002" for code, _ in problems.found):
            below = []
            try:
                for _ in range(10):
                    below.append(next(csv_rows))
            except (StopIteration, csv.Error, TooLong):
                pass
            for record in below:
                trial = reader.Problems()
                reader._header_positions(record, dataset, trial)
                if not any(code == "FILE-002" for code, _ in trial.found):
                    problems = reader.Problems(notes=problems.notes)
                    problems.add("FILE-015", "", 0)
                    break
        return [], problems
    columns = dataset.loaded_columns
    required = [p for c, p in zip(columns, positions, strict=True) if c.required and p is not None]
    converters = [reader._converter(c, dataset.date_format, ReferencePseudonymiser(KEY)) for c in columns]
    raw_rows, row_number, ended = [], 0, False
    while True:
        try:
            fields = next(csv_rows)
        except StopIteration:
            ended = True
            break
        except (csv.Error, TooLong) as exc:
            code = error_code(exc)
            problems.add(code, long_column(header, delimiter) if code == "FILE-007" else "", row_number + 1)
            break
        row_number += 1
        raw_record.clear()
        if state["bad"]:
            problems.add("FILE-001", "", row_number)
            state["bad"] = False
        if state["nul"]:
            problems.add("FILE-013", "", row_number)
            state["nul"] = False
        if len(fields) > len(header) and all(not f.strip() for f in fields[len(header) :]):
            fields = fields[: len(header)]
            problems.note("READ-004")
        if len(fields) > len(header):
            problems.add("FILE-005", "", row_number)
        elif not any(f.strip() for f in fields):
            continue
        elif len(fields) < len(header):
            if handle.tell() == len(data) and not data.endswith(b"\n"):
                problems.add("FILE-012", "", row_number)
                break
            fields += [""] * (len(header) - len(fields))
        raw_rows.append((row_number, fields))
    if ended and raw_rows and reference_is_totals(raw_rows[-1][1] + [""], required):
        problems.add("FILE-014", "", raw_rows.pop()[0])
    rows = []
    for number, fields in raw_rows:
        fields = [*fields, None]
        values = []
        for column, convert, position in zip(columns, converters, positions, strict=True):
            raw = fields[len(header) if position is None else position]
            try:
                values.append(None if raw is None else convert(raw))
            except reader._BadValue as bad:
                problems.add(bad.code, column.name, number)
                values.append(None)
        rows.append((number, values))
    if ended and not data.endswith(b"\n"):
        problems.add("FILE-012", "", row_number)  # no line end: the last value may be cut short
    return rows, problems


def copy_field(value) -> str:
    """A value as psycopg's ``write_row`` writes it in COPY text."""
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    text = str(value)
    for char, escaped in [("\\", "\\\\"), ("\b", "\\b"), ("\t", "\\t"), ("\n", "\\n")]:
        text = text.replace(char, escaped)
    for char, escaped in [("\v", "\\v"), ("\f", "\\f"), ("\r", "\\r")]:
        text = text.replace(char, escaped)
    return text


def fast_rows(data: bytes, the_feed: Feed, dataset: Dataset, *, text: bool = False):
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "landed"
        path.write_bytes(data)
        problems = reader.Problems()
        output = reader._copy_text if text else None
        return list(reader._converted_rows(path, the_feed, dataset, KEY, problems, output=output)), problems


# --- the comparisons ------------------------------------------------------------------------------


def assert_reads_the_same(data: bytes, the_feed: Feed, dataset: Dataset, block: int, remembered: int, max_line: int):
    expected_rows, expected = reference_rows(data, the_feed, dataset, max_line)
    with (
        mock.patch.object(reader, "READ_BLOCK_BYTES", block),
        mock.patch.object(reader, "REMEMBERED_TEXTS", remembered),
        mock.patch.object(reader, "MAX_LINE_BYTES", max_line),
    ):
        rows, problems = fast_rows(data, the_feed, dataset)
        text_rows, text_problems = fast_rows(data, the_feed, dataset, text=True)
    assert rows == expected_rows
    assert (problems.found, problems.counts) == (expected.found, expected.counts)
    assert (text_problems.found, text_problems.counts) == (expected.found, expected.counts)
    with_problems = {n for numbers in expected.found.values() for n in numbers}
    assert [(n, fields) for n, fields in text_rows if n not in with_problems] == [
        (n, [copy_field(v) for v in values]) for n, values in expected_rows if n not in with_problems
    ]


@SETTINGS
@given(
    data=landed_csvs(),
    encoding=st.sampled_from(["utf-8", "windows-1252"]),
    date_format=st.sampled_from(["%Y-%m-%d", "%d/%m/%Y"]),
    block=st.integers(1, 120),
    remembered=st.integers(1, 4),
    max_line=st.sampled_from([reader.MAX_LINE_BYTES, 40, 150]),
)
def test_the_fast_path_reads_what_the_plain_one_reads(data, encoding, date_format, block, remembered, max_line):
    dataset = DATASET.model_copy(update={"date_format": date_format})
    assert_reads_the_same(data, feed(encoding), dataset, block, remembered, max_line)


@pytest.mark.parametrize("block", [1, 7, 23, 24, 25, 64])
@pytest.mark.parametrize("extra", [-1, 0, 1, 2])
@pytest.mark.parametrize("where", ["header", "first", "middle", "last", "last without newline"])
def test_lines_at_the_length_limit(block, extra, where):
    limit = 24
    long = "0012345,2026-07-03," + "x" * (limit - 20 + extra) + "\n"  # limit + extra bytes with its newline
    lines = ["case_id,seen_on,note\n"] + ["0012345,2026-07-03,ok\n"] * 3
    if where == "header":
        lines[0] = "case_id,seen_on,n" + "o" * (limit - 17 + extra) + "\n"
    else:
        lines[{"first": 1, "middle": 2}.get(where, 3)] = long
    data = "".join(lines).encode()
    if where == "last without newline":
        data = data[:-1] + b"y"  # the same length, without its newline
    assert_reads_the_same(data, feed("utf-8"), only("case_id", "seen_on", "note"), block, 2, limit)


def test_a_remembered_bad_value_is_reported_on_every_row_and_only_in_its_column():
    rows = ["0012345,NA,NA,BK1 2AB\n", "0012346,NA,X,BK1 ABC\n"] * 3
    data = ("case_id,seen_on,note_code,postcode\n" + "".join(rows) + "0012347,2026-07-03,NA,BK1 ABC\n").encode()
    got, problems = fast_rows(data, feed("utf-8"), only("case_id", "note_code", "seen_on", "postcode"))
    assert problems.found == {("FLD-013", "seen_on"): [1, 2, 3, 4, 5, 6], ("FLD-005", "postcode"): [2, 4, 6, 7]}
    assert [values[1:] for _, values in got] == [
        *[["NA", None, "BK1 2"], ["X", None, None]] * 3,  # "NA" is missing as a date, good text as a code
        ["NA", dt.date(2026, 7, 3), None],
    ]


@pytest.mark.parametrize("block", [1, 2, 3, 5, 8, 13, 64])
def test_a_bad_byte_is_pinned_to_its_row_wherever_a_block_ends(block):
    lines = [b"case_id,seen_on,note\n"] + [b"00123%02d,2026-07-03,ok\n" % n for n in range(1, 9)]
    lines[4] = b'0012304,2026-07-03,"O\x92Farrow\nsecond line"\n'
    lines[7] = b"0012307,2026-07-03,\x00\n"
    with mock.patch.object(reader, "READ_BLOCK_BYTES", block):
        got, problems = fast_rows(b"".join(lines), feed("utf-8"), only("case_id", "seen_on"))
    assert problems.found == {("FILE-001", ""): [4], ("FILE-013", ""): [7]}
    assert [n for n, _ in got] == list(range(1, 9))


def test_copy_text_escapes_as_psycopg_does():
    values = [None, True, False, 0, -12, decimal.Decimal("2.50"), decimal.Decimal("1E-7"), dt.date(2026, 7, 1)]
    values += ["plain", "back\\slash", "tab\tnew\nline\rcr", "\b\v\f", "\\N", "Zoë\u2028"]
    assert [reader._copy_text(v) for v in values] == [copy_field(v) for v in values]


def test_a_nul_in_a_value_is_refused_before_the_server_sees_it():
    written = []
    copy = mock.Mock(write=written.append)
    reader._write_copy(copy, ["1\tplain\n", "2\tpl\\tain\n"])
    assert written == ["1\tplain\n2\tpl\\tain\n"]
    with pytest.raises(DataError) as raised:
        reader._write_copy(copy, ["3\tsecret\x00value\n"])
    assert "secret" not in str(raised.value) and len(written) == 1


def test_the_reference_pseudonyms_are_the_fast_ones():
    fast, plain = reader.Pseudonymiser(KEY), ReferencePseudonymiser(KEY)
    for value in ("0012345", " r2026001 ", "É9"):
        assert fast.for_namespace("ref")(value) == plain.for_namespace("ref")(value)
    assert fast.nhs_number("943 476 5919") == plain.nhs_number("943 476 5919")
    with pytest.raises(MinimisationError):
        plain.nhs_number("943 476 5918")
