"""Parsing a landed file into minimised, typed rows, streaming, and staging them with COPY.

Columns are found by header name (with the dataset's aliases), never by position. Values keep their text
exactly: "NA" and "Null" are text, identifiers keep their leading zeros. A problem is recorded against the
row number (1 = the first data row, counted the way a spreadsheet shows them) and column with a rule code;
values are never repeated in any message.

CSV is read a block of whole lines at a time, each block decoded strictly; a block that fails is decoded again
a physical line at a time, so a byte in the wrong encoding is pinned to its row. Memory stays flat however
large the file. XLSX is read with openpyxl's streaming reader (only the workbook's table of distinct strings
is held in memory). JSON (an API feed's landed pages) is read whole: those returns are small aggregates.

Pitfalls:
    A spreadsheet quietly rewrites what partners type: ids become ``1.23E+05`` or lose their leading
    zeros, dates become serial numbers (``45123``) or day/month/year. These get rule codes of their own
    (FLD-008 to FLD-011) rather than loading a wrong value.
    A text file whose last line has no line ending may have been cut off inside its last value (``…,114``
    for ``…,1147``), which no other check can see: it is refused (FILE-012), unless the feed allows it
    (``allow_unterminated_last_line``, only with a ``.done`` manifest, whose sha256 and row count prove the
    file whole). A last row that is also short, or a file ending inside a quoted field, is FILE-008.
    What is not as agreed but can be read only one way is read, with a note (``READ_NOTES``, severity
    "info"): a byte order mark decides the encoding (UTF-16 is transcoded to UTF-8 as it is read); a
    Windows-1252 feed's file that is strictly UTF-8 with non-ASCII bytes is UTF-8 (this costs one extra
    pass over the file); the delimiter is sniffed from the header line among comma, semicolon and tab.
    A totals line can only be told at the end of a file, so each reader holds its last row back.
    Problems in some rows only (``ROW_LEVEL_CODES``) let the other rows be staged and the contract run,
    so the partner hears of everything in one round.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import decimal
import io
import itertools
import json
import logging
import math
import re
import unicodedata
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from operator import call, itemgetter
from pathlib import Path
from typing import Any, BinaryIO

import sqlalchemy as sa
from psycopg import DataError
from sqlalchemy.engine import Engine

from partnerflow.core.config import Column, Dataset, Feed
from partnerflow.intake.minimise import MinimisationError, Pseudonymiser, postcode_sector

log = logging.getLogger(__name__)

MAX_ROW_NUMBERS = 1000
MAX_LINE_BYTES = 1 << 20  # one physical CSV line; a longer one is an unclosed quote or not a CSV at all
READ_BLOCK_BYTES = 1 << 16  # CSV is read and decoded this much at a time
REMEMBERED_TEXTS = 1 << 16  # distinct raw texts a column's converter remembers before starting afresh
COPY_BLOCK_ROWS = 10_000  # rows sent to COPY at a time
MAX_XLSX_EXPANDED_BYTES = 2 << 30  # all parts of a workbook, uncompressed
MAX_XLSX_RATIO = 200  # uncompressed / compressed size of any one part of a workbook
INT_RANGE = (-(2**31), 2**31 - 1)  # core tables hold counts as integer
SQL_TYPES = {
    "text": "text",
    "code": "text",
    "date": "date",
    "integer": "integer",  # as in the core tables: a staged table becomes a partition of one
    "decimal": "numeric",
    "boolean": "boolean",
}
TRUE_WORDS = {"y", "yes", "true", "1"}
FALSE_WORDS = {"n", "no", "false", "0"}
MISSING_WORDS = {"NA", "N/A", "NULL", "NONE", "NIL", "#N/A", "-"}
UTF8_BOM = b"\xef\xbb\xbf"
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
COPY_ESCAPES = str.maketrans(
    {"\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\v": "\\v", "\f": "\\f", "\r": "\\r"}
)  # COPY's text format, escaped as psycopg's write_row escapes it

INTEGER = re.compile(r"^[+-]?[0-9]+$")
DECIMAL = re.compile(r"^[+-]?[0-9]+(\.[0-9]+)?$")
SPREADSHEET_NUMBER = re.compile(r"^[+-]?[0-9]+(\.[0-9]+)?[eE][+-]?[0-9]+$|^[0-9]+\.0+$")
SERIAL_DATE = re.compile(r"^[0-9]{5}(\.[0-9]+)?$")
SPREADSHEET_DATE = re.compile(
    r"^[0-9]{1,2}[/.-][0-9]{1,2}[/.-][0-9]{2,4}( [0-9]{1,2}:[0-9]{2}(:[0-9]{2})?)?$"
    r"|^[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}(:[0-9]{2})?$"
)

# The rules intake itself applies before the contract: code -> plain-English message for the partner.
# ``{date_format}`` is filled in with the dataset's agreed date format, written as people read it.
FILE_RULES = {
    "FILE-001": "The file is not in the agreed text encoding: characters such as £, é or curly quotes on the "
    "rows listed were saved in another one. Save it in the agreed encoding (for most returns UTF-8, which "
    "Excel calls CSV UTF-8) and resend.",
    "FILE-002": "Required columns are missing from the header row. Add them with the agreed names.",
    "FILE-003": "The file is empty or has no header row.",
    "FILE-004": "The file is not in the agreed structure (JSON pages of records).",
    "FILE-005": "Some rows have more fields than the header row (check for unquoted commas).",
    "FILE-006": "A column appears more than once in the header row (under its name or another name for it). "
    "Keep one of them and resend.",
    "FILE-007": "Part of the file is far longer than any row of this return should be, usually because a quote "
    "mark is not closed. Check the quotes from the row listed onwards and resend.",
    "FILE-008": "The file ends part way through a row: it looks cut off (still uploading, or the export "
    "stopped). Send the complete file.",
    "FILE-009": "The file can't be opened as an Excel workbook (.xlsx). Save it from Excel as an .xlsx "
    "workbook, not renamed from another format, and resend.",
    "FILE-010": "The workbook has no sheet with the agreed name. Put the return on the agreed sheet and resend.",
    "FILE-011": "The rows or quotes of the file are not well formed from the row listed (a quote mark inside a "
    "quoted field that is not doubled, or unusual line endings). Save it again as CSV and resend.",
    "FILE-012": "The file's last line has no line ending, so the file may have been cut off part way through "
    "its last value (still uploading, or the export stopped). Send the complete file: a complete export ends "
    "with a line break.",
    "FILE-013": "The rows listed contain a NUL character (a zero byte), which a text export never holds: the "
    "file was probably damaged when it was copied, or written by a tool that is not exporting text. Export the "
    "return again as CSV and resend.",
    "FILE-014": "The last row is a totals or footer line (a label such as Total, or figures with no identifier), "
    "not a record of the return. Leave totals out of the export and resend.",
    "FILE-015": "The header row is not the first row: there are title rows above it. Delete the rows above the "
    "header row (or ask us to allow title rows on this return's workbook) and resend.",
    "FLD-001": "Dates must be written in the agreed format ({date_format}).",
    "FLD-002": "This column must hold whole numbers only.",
    "FLD-003": "Values in this column are longer than allowed.",
    "FLD-004": "NHS numbers must be 10 digits with a valid check digit, and not one digit repeated (such as "
    "0000000000, which is a placeholder, not a number).",
    "FLD-005": "Postcodes must be full UK postcodes.",
    "FLD-006": "This column must hold a number.",
    "FLD-007": "This column must hold Y or N.",
    "FLD-008": "Dates in this column have been turned into numbers by a spreadsheet (Excel date serial "
    "numbers). Format the column as dates or as text in {date_format} before saving, and resend.",
    "FLD-009": "Dates in this column look re-formatted by a spreadsheet (day/month/year, or with a time added); "
    "the agreed format is {date_format}. Format the column as text in {date_format} before saving, and resend.",
    "FLD-010": "Identifiers or codes in this column have been changed by a spreadsheet (into a number in "
    "scientific notation, a number ending .0, or a date), so the original is lost. Format the column as text "
    "in your system's export, not in Excel, and resend.",
    "FLD-011": "Identifiers in this column have lost their leading zeros (a spreadsheet treated them as "
    "numbers). Export the column as text so each id keeps its agreed length, and resend.",
    "FLD-012": "Identifiers in this column are not the agreed fixed length.",
    "FLD-013": "Leave a value empty when it is not known: words such as NA, Null or None are not allowed in a "
    "date or number column.",
}

# How intake read a file that differs from what its feed declares but is unambiguous: informational notes
# (severity "info") for the partner and the officer. They never block a file and carry no rows or values.
READ_NOTES = {
    "READ-001": "The file was read as {found}, as the mark at its start (a byte order mark) says, although this "
    "return is agreed as {declared}. Nothing needs to change for this file; to match the agreement next time, "
    "save it as {declared}, or ask us to change the agreed encoding.",
    "READ-002": "The file was read as UTF-8 although this return is agreed as Windows-1252: its accented letters "
    "and symbols are only valid as UTF-8. Nothing needs to change for this file; to match the agreement next "
    "time, save it as {declared}, or ask us to change the agreed encoding.",
    "READ-003": "The columns are separated by {found}, although this return is agreed with {declared}; the file "
    "was read with {found}. Nothing needs to change for this file; your spreadsheet's regional settings decide "
    "the separator.",
    "READ-004": "Some rows end with extra empty fields after the last column; they were ignored.",
    "READ-005": "Some column names differ from the agreed ones only in spacing (such as a non-breaking or double "
    "space) or in the width of their characters; they were matched to the agreed names.",
    "READ-006": "The sheet's name differs from the agreed name ({declared}) only in capital letters or spaces; it "
    "was read as the agreed sheet.",
    "READ-007": "The header row was found below {found} at the top of the sheet, which were skipped.",
}
# Problems with some rows only: the other rows can still be staged and checked against the contract, so
# the partner hears of every problem in one report. Any other problem stops the file before the contract.
ROW_LEVEL_CODES = frozenset({"FILE-001", "FILE-005", "FILE-013", "FILE-014"})
ENCODING_NAMES = {"utf-8": "UTF-8", "windows-1252": "Windows-1252", "utf-16-le": "UTF-16", "utf-16-be": "UTF-16"}
DELIMITER_NAMES = {",": "commas", ";": "semicolons", "\t": "tabs"}
SNIFFED_DELIMITERS = (",", ";", "\t")
FOOTER_LABEL = re.compile(r"^(grand\s+)?(sub\s*)?totals?\b", re.IGNORECASE)
FOOTER_NUMBER = re.compile(r"^[+-]?[0-9][0-9,]*(\.[0-9]+)?$")
HEADER_SEARCH_ROWS = 10  # rows searched for a header below title rows, to name FILE-015 when they are not allowed


@dataclass
class Problems:
    """Rule failures found while reading a file: rule code and columns -> row numbers. Never values.

    A problem of the whole file (row number 0) has no rows: its count stays 0. ``notes`` are the
    accommodations made while reading (``READ_NOTES`` code -> message), reported with severity "info".
    """

    found: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)

    def add(self, code: str, column: str, row_number: int) -> None:
        key = (code, column)
        rows = self.found.setdefault(key, [])
        self.counts[key] = self.counts.get(key, 0) + (1 if row_number else 0)
        if row_number and len(rows) < MAX_ROW_NUMBERS:
            rows.append(row_number)

    def note(self, code: str, **details: str) -> None:
        """Record how the file was read where it differs from the feed's declaration (once per code)."""
        self.notes.setdefault(code, READ_NOTES[code].format(**details))

    def __bool__(self) -> bool:
        return bool(self.found)

    @property
    def row_level_only(self) -> bool:
        """Whether every problem is a problem of some rows only, so the other rows can still be checked."""
        return all(code in ROW_LEVEL_CODES or code.startswith("FLD-") for code, _ in self.found) and all(
            self.counts.values()
        )

    def failures(self, *, date_format: str = "%Y-%m-%d") -> list[dict[str, Any]]:
        """The problems as report failures (severity "error"), then the notes (severity "info")."""
        shown_format = human_date_format(date_format)
        return [
            {
                "code": code,
                "message": FILE_RULES[code].format(date_format=shown_format),
                "columns": [column] if column else [],
                "severity": "error",
                "failing_rows": self.counts[(code, column)],
                "row_numbers": rows,
            }
            for (code, column), rows in sorted(self.found.items())
        ] + self.note_failures()

    def note_failures(self) -> list[dict[str, Any]]:
        return [
            {"code": code, "message": message, "columns": [], "severity": "info", "failing_rows": 0, "row_numbers": []}
            for code, message in sorted(self.notes.items())
        ]

    def report(self, rows_checked: int, *, file_id: int | None = None, date_format: str = "%Y-%m-%d") -> dict:
        """The report in the same shape the contract check produces (plus the file id it is about)."""
        return {
            "passed": False,
            "stage": "intake",
            "file_id": file_id,
            "rules_checked": len(FILE_RULES),
            "rows_checked": rows_checked,
            "failures": self.failures(date_format=date_format),
        }

    def summary(self) -> str:
        """``FILE-001 (2 rows), FLD-002 on sessions (3 rows)``: codes, columns and counts, for logs."""
        return ", ".join(
            f"{code}{f' on {column}' if column else ''} "
            + (f"({count} row{'s' if count != 1 else ''})" if count else "(whole file)")
            for (code, column), count in sorted(self.counts.items())
        )


class FileRejected(Exception):
    """The file can't be read as its feed declares; ``report`` says why, with no values."""

    def __init__(self, report: dict[str, Any], summary: str = ""):
        codes = summary or ", ".join(f["code"] for f in report["failures"])
        which = f"file {report['file_id']}" if report.get("file_id") is not None else "file"
        super().__init__(f"{which} rejected at intake: {codes}")
        self.report = report


@dataclass(frozen=True)
class StagedFile:
    """A staged file. ``failures`` are what intake found: problems of some rows only (severity "error"; the
    file must then be rejected, but its other rows were staged so the contract can be checked too) and notes
    on how it was read (severity "info")."""

    table: str
    rows: int
    failures: tuple[dict[str, Any], ...] = ()

    @property
    def passed(self) -> bool:
        return not any(f["severity"] == "error" for f in self.failures)

    def with_contract(self, contract_report: dict[str, Any]) -> dict[str, Any]:
        """The contract's report with intake's problems first and its notes last: one report, one round.

        A value intake refused is staged empty, so a contract rule on that column alone (a required value,
        say) would name the same row again for a cause that is not the real one: such rows are left out of
        that rule's failure (and a failure left with no rows is dropped).
        """
        errors = [f for f in self.failures if f["severity"] == "error"]
        notes = [f for f in self.failures if f["severity"] != "error"]
        refused: dict[str, set[int]] = {}
        for failure in errors:
            if failure["columns"] and failure["failing_rows"] == len(failure["row_numbers"]):  # all rows known
                refused.setdefault(failure["columns"][0], set()).update(failure["row_numbers"])
        failures = []
        for failure in contract_report.get("failures", []):
            columns, rows = failure.get("columns", []), failure.get("row_numbers", [])
            already = refused.get(columns[0], set()) if len(columns) == 1 else set()
            if already and failure.get("failing_rows", 0) == len(rows) and set(rows) & already:
                kept = [n for n in rows if n not in already]
                if not kept:
                    continue
                failure = {**failure, "row_numbers": kept, "failing_rows": len(kept)}
            failures.append(failure)
        report = {**contract_report, "failures": [*errors, *failures, *notes]}
        report["passed"] = not any(f.get("severity", "error") == "error" for f in report["failures"])
        if errors:
            report["rules_checked"] = int(contract_report.get("rules_checked", 0)) + len(FILE_RULES)
        return report


def staging_table(dataset: Dataset, file_id: int) -> str:
    return f"staging.{dataset.id}_f{file_id}"


def human_date_format(date_format: str) -> str:
    """``%Y-%m-%d`` -> ``YYYY-MM-DD``: the agreed date format as a partner reads it."""
    for directive, shown in (("%Y", "YYYY"), ("%y", "YY"), ("%m", "MM"), ("%d", "DD"), ("%b", "Mon")):
        date_format = date_format.replace(directive, shown)
    return date_format


def stage(
    eng: Engine,
    *,
    path: Path,
    file_id: int,
    feed: Feed,
    dataset: Dataset,
    key: bytes,
    table: str | None = None,
    declared_rows: int | None = None,
) -> StagedFile:
    """Parse, minimise and COPY a landed file into its own staging table; raise FileRejected on problems.

    ``table`` (``schema.name``) overrides ``staging_table(dataset, file_id)``, for a dry run's scratch schema.
    ``declared_rows`` is the row count of the file's ``.done`` manifest, if it had one (see FILE-012).
    A problem of the whole file raises FileRejected and leaves no staging table. Problems in some rows only
    (``ROW_LEVEL_CODES``) are returned in ``StagedFile.failures`` with the rows staged, each refused value
    as empty (never the value), so the contract can check them in the same round; the file is then
    quarantined, which drops the table.
    """
    table = table or staging_table(dataset, file_id)
    columns = dataset.loaded_columns
    problems = Problems()
    with eng.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        column_sql = ", ".join(f"{c.name} {SQL_TYPES[c.type]}" for c in columns)
        conn.execute(sa.text(f"CREATE TABLE {table} (row_number integer NOT NULL, {column_sql})"))
        driver = conn.connection.driver_connection
        assert driver is not None, "an open connection has a driver connection"
        cursor = driver.cursor()
        names = ", ".join(["row_number", *(c.name for c in columns)])
        rows = 0
        join = "\t".join
        with cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
            block: list[str] = []
            allow = unterminated_allowed(feed, declared_rows)
            converted = _converted_rows(path, feed, dataset, key, problems, output=_copy_text, allow_unterminated=allow)
            for row_number, fields in converted:
                rows += 1
                # A value with a problem is staged empty; rows go on being staged while the problems found
                # are of some rows only, so the contract can check the others (see ROW_LEVEL_CODES).
                block.append(f"{row_number}\t{join(fields)}\n" if fields else f"{row_number}\n")
                if len(block) == COPY_BLOCK_ROWS:
                    if problems and not problems.row_level_only:
                        block.clear()
                    _write_copy(copy, block)
            _write_copy(copy, block if not problems or problems.row_level_only else [])
        if rows == 0 and not problems:
            problems.add("FILE-003", "", 0)
        if problems and not problems.row_level_only:
            report = problems.report(rows, file_id=file_id, date_format=dataset.date_format)
            raise FileRejected(report, problems.summary())  # leaving the block rolls the staging table back
    if problems:
        log.info("staged file %s: %d rows into %s, with problems %s", file_id, rows, table, problems.summary())
    else:
        log.info("staged file %s: %d rows into %s", file_id, rows, table)
    return StagedFile(table=table, rows=rows, failures=tuple(problems.failures(date_format=dataset.date_format)))


def drop_staging(eng: Engine, dataset: Dataset, file_id: int) -> None:
    with eng.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {staging_table(dataset, file_id)}"))


def minimised_rows(
    path: Path, *, feed: Feed, dataset: Dataset, key: bytes, problems: Problems, declared_rows: int | None = None
) -> Iterator[tuple[int, list[Any]]]:
    """Each data row of a landed file as ``(row number, values of dataset.loaded_columns)``, typed and
    minimised, streaming. Problems are added to ``problems``; a value with a problem comes out as None.

    Nothing but minimised values leaves: dropped columns are never read past the header.
    """
    allow = unterminated_allowed(feed, declared_rows)
    return _converted_rows(path, feed, dataset, key, problems, allow_unterminated=allow)


def unterminated_allowed(feed: Feed, declared_rows: int | None) -> bool:
    """Whether a text file's last line may lack its line ending: only if the feed says so and this file came
    with a ``.done`` manifest (its sha256 was checked on arrival; its row count is checked before publish)."""
    return feed.format.allow_unterminated_last_line and declared_rows is not None


def _converted_rows(
    path: Path,
    feed: Feed,
    dataset: Dataset,
    key: bytes,
    problems: Problems,
    output: Callable[[Any], Any] | None = None,
    *,
    allow_unterminated: bool = False,
) -> Iterator[tuple[int, list[Any]]]:
    """``minimised_rows``, with each value passed through ``output`` (if given) before it is yielded."""
    pseudonymiser = Pseudonymiser(key)
    columns = dataset.loaded_columns
    if feed.format.kind == "csv":
        getters = [_text_getter(c, dataset.date_format, pseudonymiser, output) for c in columns]
    else:
        getters = [_cell_getter(_converter(c, dataset.date_format, pseudonymiser), output) for c in columns]
    refused = None if output is None else output(None)  # a value with a problem, as the caller writes it
    for row_number, raw_values in _records(path, feed, dataset, problems, allow_unterminated=allow_unterminated):
        try:  # raw_values may carry one trailing item more than there are columns (see _csv_records)
            values = list(map(call, getters, raw_values))
        except _BadValue:
            values = []
            for column, get, raw in zip(columns, getters, raw_values, strict=False):
                try:
                    values.append(get(raw))
                except _BadValue as bad:
                    problems.add(bad.code, column.name, row_number)
                    values.append(refused)
        yield row_number, values


def _text_getter(
    column: Column, date_format: str, pseudonymiser: Pseudonymiser, output: Callable[[Any], Any] | None
) -> Callable:
    """The converter (then ``output``) for a CSV column, whose raw values are all text ("" where absent); the
    results are remembered by raw text for a column whose values repeat: all but free text and identifiers.
    """
    identifier = column.minimise in ("pseudonymise", "nhs_number")
    if identifier and output is not None:
        return _text_converter(column, pseudonymiser, empty=output(None))  # a pseudonym is hex, as COPY has it
    convert = _converter(column, date_format, pseudonymiser)
    if output is not None:
        convert = _then(convert, output)
    if not identifier and (column.type != "text" or column.minimise == "postcode_sector"):
        return _Remembered(convert).__getitem__
    return convert


def _cell_getter(convert: Callable[[Any], Any], output: Callable[[Any], Any] | None) -> Callable:
    """``convert`` (then ``output``) for an XLSX or JSON column, whose raw values are typed cells or None."""

    def get(raw: Any) -> Any:
        value = None if raw is None else convert(raw)
        return value if output is None else output(value)

    return get


def _then(convert: Callable[[Any], Any], output: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def converted(raw: Any) -> Any:
        return output(convert(raw))

    return converted


class _Remembered(dict):
    """A converter's results by raw text: ``remembered[raw]`` converts each distinct text once. Texts it refuses
    are remembered with their rule code, so every row holding one is still reported. Emptied when full.
    """

    def __init__(self, convert: Callable[[str], Any]):
        super().__init__()
        self.convert = convert
        self.refused: dict[str, str] = {}

    def __missing__(self, raw: str) -> Any:
        code = self.refused.get(raw)
        if code is None:
            try:
                value = self.convert(raw)
            except _BadValue as bad:
                code = bad.code
                if len(self.refused) >= REMEMBERED_TEXTS:
                    self.refused.clear()
                self.refused[raw] = code
            else:
                if len(self) >= REMEMBERED_TEXTS:
                    self.clear()
                self[raw] = value
                return value
        raise _BadValue(code)


def _copy_text(value: Any) -> str:
    """A typed value as a field of COPY's text format, written as psycopg's ``write_row`` writes it."""
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return value if value.isprintable() and "\\" not in value else value.translate(COPY_ESCAPES)
    if isinstance(value, bool):
        return "t" if value else "f"
    return str(value)  # int, Decimal, date (ISO)


def _write_copy(copy: Any, lines: list[str]) -> None:
    """Send ``lines`` of COPY text, and empty the list."""
    if not lines:
        return
    text = "".join(lines)
    lines.clear()
    if "\x00" in text:  # what psycopg's write_row raised; the server's own error would quote the row
        raise DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")
    copy.write(text)


# --- reading records ------------------------------------------------------------------------------
# Each reader yields (row number, raw values in the order of dataset.loaded_columns, None where absent;
# "" for CSV, whose values are all text).


def _records(
    path: Path, feed: Feed, dataset: Dataset, problems: Problems, *, allow_unterminated: bool = False
) -> Iterator[tuple[int, Sequence[Any]]]:
    kind = feed.format.kind
    if kind == "csv":
        return _csv_records(path, feed, dataset, problems, allow_unterminated=allow_unterminated)
    if kind == "xlsx":
        return _xlsx_records(path, feed, dataset, problems)
    return _json_records(path, dataset, problems)


class _LineTooLong(Exception):
    pass


@dataclass(frozen=True)
class _Reading:
    """How a CSV's bytes are read: ``codec`` decodes them after ``skip`` bytes of byte order mark, once
    transcoded from ``utf16`` (``utf-16-le`` or ``utf-16-be``) to UTF-8 if that is given."""

    codec: str
    skip: int = 0
    utf16: str | None = None


def _how_to_read(handle: BinaryIO, declared: str, problems: Problems) -> _Reading:
    """The file's encoding: its byte order mark's if it has one, else the feed's, except that a file on a
    Windows-1252 feed that is valid UTF-8 with non-ASCII bytes is UTF-8. Each exception is a note."""
    start = handle.read(len(UTF8_BOM))
    handle.seek(0)
    shown = ENCODING_NAMES[declared]
    if start.startswith(UTF8_BOM):
        if declared != "utf-8":
            problems.note("READ-001", found="UTF-8", declared=shown)
        return _Reading("utf-8", len(UTF8_BOM))
    for bom, utf16 in zip(UTF16_BOMS, ("utf-16-le", "utf-16-be"), strict=True):
        if start.startswith(bom):
            problems.note("READ-001", found="UTF-16", declared=shown)
            return _Reading("utf-8", len(bom), utf16)
    if declared == "windows-1252" and _non_ascii_utf8(handle):
        problems.note("READ-002", declared=shown)
        return _Reading("utf-8")
    return _Reading("cp1252" if declared == "windows-1252" else "utf-8")


def _non_ascii_utf8(handle: BinaryIO) -> bool:
    """Whether the whole stream decodes strictly as UTF-8 and holds a byte that is not ASCII; rewinds it."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    non_ascii = False
    try:
        while chunk := handle.read(READ_BLOCK_BYTES):
            non_ascii = non_ascii or not chunk.isascii()
            decoder.decode(chunk)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    finally:
        handle.seek(0)
    return non_ascii


def _mark_undecodable(error: UnicodeError) -> tuple[str, int]:
    """UTF-16 that can't be decoded becomes a byte that is not UTF-8, so the line holding it is reported."""
    assert isinstance(error, UnicodeDecodeError)
    return "\udcff", error.end


codecs.register_error("partnerflow-mark-undecodable", _mark_undecodable)


class _TranscodedUtf16(io.RawIOBase):
    """A UTF-16 byte stream read as UTF-8 bytes (undecodable units as the byte 0xFF), a block at a time."""

    def __init__(self, handle: BinaryIO, encoding: str):
        self.handle = handle
        self.decoder = codecs.getincrementaldecoder(encoding)(errors="partnerflow-mark-undecodable")
        self.pending = memoryview(b"")
        self.done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self.pending and not self.done:
            chunk = self.handle.read(READ_BLOCK_BYTES)
            self.done = not chunk
            text = self.decoder.decode(chunk, final=self.done)
            self.pending = memoryview(text.encode("utf-8", "surrogateescape"))
        size = min(len(buffer), len(self.pending))
        buffer[:size] = self.pending[:size]
        self.pending = self.pending[size:]
        return size


def _byte_stream(handle: BinaryIO, reading: _Reading) -> BinaryIO:
    """The file's bytes after its byte order mark, as ``reading.codec`` decodes them."""
    handle.seek(reading.skip)
    if reading.utf16 is None:
        return handle
    return io.BufferedReader(_TranscodedUtf16(handle, reading.utf16), READ_BLOCK_BYTES)  # type: ignore[return-value]


@dataclass
class _LineState:
    """What decoding the lines of a CSV has found so far (read by the CSV reader between records)."""

    bad_bytes: bool = False
    nul_bytes: bool = False
    unterminated: bool = False  # the last line, without a line ending, has been passed on
    exhausted: bool = False

    def take_bad_bytes(self) -> bool:
        """Whether a byte that can't be decoded was seen since the last call."""
        bad, self.bad_bytes = self.bad_bytes, False
        return bad

    def take_nul_bytes(self) -> bool:
        """Whether a NUL byte was seen since the last call."""
        nul, self.nul_bytes = self.nul_bytes, False
        return nul


def _decoded_lines(handle: BinaryIO, codec: str, state: _LineState) -> Iterator[str]:
    """The physical lines of a byte stream (ended by \\n only, as ``readline`` ends them), decoded strictly,
    for ``csv.reader``.

    A line that can't be decoded (or holds a NUL byte) is passed on with replacement characters (NULs
    removed) and ``state.bad_bytes`` (``state.nul_bytes``) set as the reader reaches it, so the caller can
    pin it to its row and carry on finding other problems.
    """
    return itertools.chain.from_iterable(_decoded_blocks(handle, codec, state))


def _decoded_blocks(handle: BinaryIO, codec: str, state: _LineState) -> Iterator[Iterable[str]]:
    """The lines of ``_decoded_lines`` in blocks: the first line on its own, then whole lines a block at a time."""
    line = handle.readline(MAX_LINE_BYTES + 1)
    if len(line) > MAX_LINE_BYTES:
        raise _LineTooLong
    if line:
        state.unterminated = not line.endswith(b"\n")  # then, within the limit, it is the whole file
        yield _lines_one_by_one(line, codec, state)
    # A block's lines after its first lie within one read, so only its first line can be too long.
    read_bytes = min(READ_BLOCK_BYTES, MAX_LINE_BYTES)
    carry = b""  # the start of a line whose newline has not been read yet
    while chunk := handle.read(read_bytes):
        data = carry + chunk if carry else chunk
        if (data.find(b"\n") + 1 or len(data)) > MAX_LINE_BYTES:
            raise _LineTooLong
        end = data.rfind(b"\n") + 1
        carry = data[end:]
        if end:
            yield _block_lines(data[:end] if carry else data, codec, state)
    if carry:
        state.unterminated = True
        yield _lines_one_by_one(carry, codec, state)
    state.exhausted = True


def _block_lines(data: bytes, codec: str, state: _LineState) -> Iterable[str]:
    """The whole lines in ``data``, decoded at once if they all decode cleanly, else one by one."""
    if b"\x00" not in data:
        try:
            return io.StringIO(data.decode(codec), newline="\n")
        except UnicodeDecodeError:
            pass
    return _lines_one_by_one(data, codec, state)


def _lines_one_by_one(data: bytes, codec: str, state: _LineState) -> Iterator[str]:
    """The lines in ``data`` each decoded on its own, with ``state.bad_bytes`` set as a bad one is passed on."""
    for line in io.BytesIO(data):
        if b"\x00" in line:
            state.nul_bytes = True
            line = line.replace(b"\x00", b"")
        try:
            text = line.decode(codec)
        except UnicodeDecodeError:
            state.bad_bytes = True
            text = line.decode(codec, errors="replace")
        yield text


def _sniffed_delimiter(first_line: str, dataset: Dataset, declared: str, problems: Problems) -> str:
    """The declared delimiter, unless the header row only makes sense (every required column found) with
    another of comma, semicolon and tab: then that one, with a note."""
    makes_sense = []
    for delimiter in (declared, *(d for d in SNIFFED_DELIMITERS if d != declared)):
        try:
            header = next(csv.reader([first_line], delimiter=delimiter), [])
        except csv.Error:
            continue
        if _has_required(header, dataset):
            if delimiter == declared:
                return declared
            makes_sense.append(delimiter)
    if len(makes_sense) != 1:
        return declared
    (found,) = makes_sense
    problems.note("READ-003", found=DELIMITER_NAMES[found], declared=DELIMITER_NAMES.get(declared, repr(declared)))
    return found


def _csv_records(
    path: Path, feed: Feed, dataset: Dataset, problems: Problems, *, allow_unterminated: bool = False
) -> Iterator[tuple[int, list]]:
    """The rows of a CSV. A last line without its line ending is FILE-012 unless ``allow_unterminated``
    (the file then still ends in a whole row, or it is FILE-008); see the module's Pitfalls. A last row that
    is a totals line is FILE-014, and not passed on."""
    with path.open("rb") as handle:
        reading = _how_to_read(handle, feed.format.encoding, problems)
        state = _LineState()
        lines = _decoded_lines(_byte_stream(handle, reading), reading.codec, state)
        try:
            first = next(lines, None)
        except _LineTooLong:
            problems.add("FILE-007", "", 0)
            return
        delimiter = feed.format.delimiter
        if first is not None:
            delimiter = _sniffed_delimiter(first, dataset, delimiter, problems)
        reader = csv.reader(itertools.chain([] if first is None else [first], lines), delimiter=delimiter, strict=True)
        try:
            header = next(reader, None)
        except (csv.Error, _LineTooLong) as exc:
            problems.add(_csv_error_code(exc, state, allow_unterminated), "", 0)
            return
        if not header or not any(h.strip() for h in header):
            problems.add("FILE-003", "", 0)
            return
        if state.unterminated and not allow_unterminated:
            problems.add("FILE-012", "", 0)  # the file is one line, perhaps part of a header
            return
        if state.take_bad_bytes():
            problems.add("FILE-001", "", 0)
        if state.take_nul_bytes():
            problems.add("FILE-013", "", 0)
        positions = _header_positions(header, dataset, problems)
        if problems:
            if any(code == "FILE-002" for code, _ in problems.found) and _header_below(reader, dataset):
                problems.found = {("FILE-015", ""): []}  # the real cause: title rows above the header row
                problems.counts = {("FILE-015", ""): 0}
            return
        width = len(header)
        required = [p for p, c in zip(positions, dataset.loaded_columns, strict=True) if c.required and p is not None]
        # Absent columns read the "" appended at position ``width`` (an empty field, which every converter
        # reads as missing); a trailing extra index keeps itemgetter returning a tuple for one column.
        pick = itemgetter(*(width if p is None else p for p in positions), width)
        padding = [""] * width
        row_number = 0
        record_start = reader.line_num  # lines read before the record being read (for FILE-007's column)
        held: tuple[int, list[str]] | None = None  # the last row, until another shows it is not a totals line
        try:
            for fields in reader:
                row_number += 1
                if state.bad_bytes and state.take_bad_bytes():
                    problems.add("FILE-001", "", row_number)
                if state.nul_bytes and state.take_nul_bytes():
                    problems.add("FILE-013", "", row_number)
                count = len(fields)
                if count > width and not any(f.strip() for f in fields[width:]):
                    del fields[width:]  # trailing empty fields, as some exports write
                    problems.note("READ-004")
                    count = width
                if count != width:
                    if count > width:
                        problems.add("FILE-005", "", row_number)
                    elif not any(f.strip() for f in fields):
                        record_start = reader.line_num
                        continue
                    elif state.unterminated:  # the last line, cut short
                        if held is not None:
                            yield held[0], pick(held[1])
                        problems.add("FILE-008" if allow_unterminated else "FILE-012", "", row_number)
                        return
                    else:
                        fields += padding[count:]  # trailing empty fields left out, as some exports do
                elif not fields[0].strip() and not any(f.strip() for f in fields):
                    record_start = reader.line_num
                    continue
                fields.append("")
                if held is not None:
                    yield held[0], pick(held[1])
                held = (row_number, fields)
                record_start = reader.line_num
        except (csv.Error, _LineTooLong) as exc:
            if held is not None:
                yield held[0], pick(held[1])
            code = _csv_error_code(exc, state, allow_unterminated)
            column = ""
            if code == "FILE-007":
                column = _long_field_column(path, reading, delimiter, record_start, header, dataset)
            problems.add(code, column, row_number + 1)
            return
        if held is not None:
            if _is_totals_line(held[1], required):
                problems.add("FILE-014", "", held[0])
            else:
                yield held[0], pick(held[1])
        if state.unterminated and not allow_unterminated:
            problems.add("FILE-012", "", row_number)  # the last line, which may be cut inside its last value


def _header_below(records: Iterator[list[str]], dataset: Dataset) -> bool:
    """Whether one of the next few records would make sense as the header row (so rows above it are titles)."""
    try:
        return any(_has_required(record, dataset) for record in itertools.islice(records, HEADER_SEARCH_ROWS))
    except (csv.Error, _LineTooLong):
        return False


def _is_totals_line(fields: Sequence[Any], required: Sequence[int]) -> bool:
    """Whether a file's last row is a totals or footer line: it starts with a label such as Total, or it has
    only figures, with its first field and a required column empty (``,400``)."""
    texts = ["" if f is None else str(f).strip() for f in fields]
    filled = [t for t in texts if t]
    if not filled:
        return False
    if FOOTER_LABEL.match(" ".join(filled[0].split())):
        return True
    return not texts[0] and any(not texts[p] for p in required) and all(FOOTER_NUMBER.match(t) for t in filled)


def _csv_error_code(exc: Exception, state: _LineState, allow_unterminated: bool) -> str:
    if isinstance(exc, _LineTooLong) or "field larger than field limit" in str(exc):
        return "FILE-007"
    if state.exhausted:  # the file ended inside a quoted field
        return "FILE-012" if state.unterminated and not allow_unterminated else "FILE-008"
    return "FILE-011"


def _long_field_column(
    path: Path, reading: _Reading, delimiter: str, start_line: int, header: list[str], dataset: Dataset
) -> str:
    """The column of the over-long field (FILE-007) of the record starting after ``start_line`` lines, found
    by reading that record again; "" if it is not a column of the dataset."""
    window = 4 * (csv.field_size_limit() + 1) + MAX_LINE_BYTES + 2
    with path.open("rb") as handle:
        stream = _byte_stream(handle, reading)
        for _ in range(start_line):
            while (line := stream.readline(READ_BLOCK_BYTES)) and not line.endswith(b"\n"):
                pass
        data = stream.read(window)
    index = over_long_field(
        data, delimiter, field_limit=csv.field_size_limit(), line_limit=MAX_LINE_BYTES, codec=reading.codec
    )
    if index is None or index >= len(header):
        return ""
    return _spellings(dataset).get(_normalise_header(header[index]), "")


def over_long_field(data: bytes, delimiter: str, *, field_limit: int, line_limit: int, codec: str) -> int | None:
    """The position of the field in ``data`` (a record and what follows) that grows past ``field_limit``
    characters (as the csv module counts them), or runs on a physical line longer than ``line_limit`` bytes
    (its newline included); None if the record ends first. Delimiters and quotes are ASCII, which no byte of
    another character is in UTF-8 or Windows-1252, so bytes are walked, not characters."""
    separator, quote = ord(delimiter), ord('"')
    index = length = 0
    quoted = False
    position = 0
    while position < len(data):
        end = data.find(b"\n", position)
        end = len(data) if end < 0 else end + 1
        too_long = end - position > line_limit
        at = position
        while at < end:
            if too_long and at - position >= line_limit:
                return index
            byte = data[at]
            if byte == quote:
                if quoted and data[at + 1 : at + 2] == b'"':
                    at += 1
                    length += 1
                else:
                    quoted = not quoted
            elif not quoted and byte == separator:
                index, length = index + 1, 0
            elif not quoted and byte in (10, 13):
                return None
            elif byte and (codec == "cp1252" or byte & 0xC0 != 0x80):  # NULs are removed; one count a character
                length += 1
            if not too_long and length > field_limit:
                return index
            at += 1
        position = end
    return index if quoted else None


def _xlsx_records(path: Path, feed: Feed, dataset: Dataset, problems: Problems) -> Iterator[tuple[int, list]]:
    import openpyxl

    if not _workbook_within_limits(path):
        problems.add("FILE-009", "", 0)
        return
    handle = path.open("rb")  # a file object: landed files have no extension for openpyxl to check
    try:
        workbook = openpyxl.load_workbook(handle, read_only=True, data_only=True)
    except Exception as exc:  # a zip that is not a workbook fails in many ways inside openpyxl
        handle.close()
        log.info("workbook %s could not be opened: %s", path.name, type(exc).__name__)
        problems.add("FILE-009", "", 0)
        return
    row_number = 0
    try:
        sheet = _agreed_sheet(workbook, feed.format.sheet, problems)
        if sheet is None or not hasattr(sheet, "reset_dimensions"):  # no such sheet, or a chartsheet
            problems.add("FILE-010", "", 0)
            return
        sheet.reset_dimensions()  # the stored size is often wrong; read every row and cell there is
        rows = sheet.iter_rows(values_only=True)
        header = _xlsx_header(rows, feed.format.max_title_rows, dataset, problems)
        if header is None:
            return
        positions = _header_positions(header, dataset, problems)
        if problems:
            return
        required = [p for p, c in zip(positions, dataset.loaded_columns, strict=True) if c.required and p is not None]
        held: tuple[int, Sequence[Any]] | None = None  # the last row, until another shows it is not a totals line
        for cells in rows:
            row_number += 1
            if all(c is None or (isinstance(c, str) and not c.strip()) for c in cells):
                continue
            if held is not None:
                yield held[0], _picked(held[1], positions)
            held = (row_number, cells)
        if held is not None:
            padded = [*held[1], *[None] * (len(header) - len(held[1]))]
            if _is_totals_line(padded, required):
                problems.add("FILE-014", "", held[0])
            else:
                yield held[0], _picked(held[1], positions)
    except Exception as exc:  # a damaged sheet part, found part way through
        log.info("workbook %s could not be read: %s", path.name, type(exc).__name__)
        problems.add("FILE-009", "", row_number + 1)
    finally:
        workbook.close()
        handle.close()


def _picked(cells: Sequence[Any], positions: list[int | None]) -> list[Any]:
    return [None if p is None or p >= len(cells) else cells[p] for p in positions]


def _agreed_sheet(workbook: Any, name: str | None, problems: Problems) -> Any:
    """The feed's sheet (else the first), by its exact name, else by the one name that differs from it only
    in case or spaces (a note); None if there is none."""
    if name is None:
        return workbook.worksheets[0]
    if name in workbook.sheetnames:
        return workbook[name]

    def loose(text: str) -> str:
        return " ".join(unicodedata.normalize("NFKC", text).casefold().split())

    near = [sheet for sheet in workbook.sheetnames if loose(sheet) == loose(name)]
    if len(near) != 1:
        return None
    problems.note("READ-006", declared=name)
    return workbook[near[0]]


def _xlsx_header(rows: Iterator[tuple], title_rows: int, dataset: Dataset, problems: Problems) -> list[str] | None:
    """The header row: the first row, or the first of the next ``title_rows`` that names every required
    column (the rows above it are titles: a note). None, with the problem added, if there is none."""
    first = None
    for skipped in range(max(title_rows, HEADER_SEARCH_ROWS) + 1):
        cells = next(rows, None)
        if cells is None:
            break
        header = ["" if c is None else str(c) for c in cells]
        if first is None:
            first = header
        if _has_required(header, dataset):
            if skipped == 0:
                return header
            if skipped > title_rows:  # found, to say why, but title rows are not agreed for this feed
                problems.add("FILE-015", "", 0)
                return None
            problems.note("READ-007", found=f"{skipped} title row{'s' if skipped != 1 else ''}")
            return header
    if first is None or not any(h.strip() for h in first):
        problems.add("FILE-003", "", 0)
        return None
    return first  # the header row as it is: _header_positions names what is missing


def _workbook_within_limits(path: Path) -> bool:
    """A zip whose parts expand within bounds: an .xlsx is a zip archive, so it could be a zip bomb."""
    try:
        with zipfile.ZipFile(path) as archive:
            parts = archive.infolist()
    except (zipfile.BadZipFile, OSError):
        return False
    if sum(p.file_size for p in parts) > MAX_XLSX_EXPANDED_BYTES:
        return False
    return all(p.file_size <= max(p.compress_size, 1) * MAX_XLSX_RATIO or p.file_size < (1 << 20) for p in parts)


def _json_records(path: Path, dataset: Dataset, problems: Problems) -> Iterator[tuple[int, list]]:
    """Records of an API feed's landed document: ``{"pages": [{"records": [...]}, ...]}``."""
    try:
        document = json.loads(path.read_bytes())
        records = [record for page in document["pages"] for record in page["records"]]
    except (ValueError, KeyError, TypeError):
        problems.add("FILE-004", "", 0)
        return
    names = _spellings(dataset)
    found = {names[k] for r in records if isinstance(r, dict) for k in map(_normalise_header, r) if k in names}
    if records:
        _check_required(found, dataset, problems)
        if problems:
            return
    loaded = [c.name for c in dataset.loaded_columns]
    for row_number, record in enumerate(records, start=1):
        if not isinstance(record, dict) or any(isinstance(v, dict | list) for v in record.values()):
            problems.add("FILE-004", "", row_number)
            continue
        if any(isinstance(v, str) and "\x00" in v for v in record.values()):
            problems.add("FILE-013", "", row_number)
            continue
        mapped = {names.get(_normalise_header(k)): v for k, v in record.items()}
        yield row_number, [mapped.get(name) for name in loaded]


def _spellings(dataset: Dataset) -> dict[str, str]:
    """Every accepted header spelling (normalised) -> the column's name."""
    names: dict[str, str] = {}
    for column in dataset.columns:
        for spelling in (column.name, *column.aliases):
            names[_normalise_header(spelling)] = column.name
    return names


def _header_positions(header: list[str], dataset: Dataset, problems: Problems) -> list[int | None]:
    """Where each loaded column is in the partner's header (None if absent), by name or alias; unknown
    columns are ignored. Missing required columns (FILE-002) and columns given twice (FILE-006) are problems.
    A heading matched only once Unicode and spacing are normalised is a note (READ-005).
    """
    names = _spellings(dataset)
    seen: dict[str, int] = {}
    for position, heading in enumerate(header):
        name = names.get(_normalise_header(heading))
        if name is None:
            continue
        if _plain_header(heading) not in names:
            problems.note("READ-005")
        if name in seen:
            problems.add("FILE-006", name, 0)
        seen.setdefault(name, position)
    _check_required(set(seen), dataset, problems)
    return [seen.get(column.name) for column in dataset.loaded_columns]


def _has_required(header: Sequence[Any], dataset: Dataset) -> bool:
    """Whether ``header`` names every required column of ``dataset`` (a row that makes sense as a header)."""
    names = _spellings(dataset)
    found = {names.get(_normalise_header("" if h is None else str(h))) for h in header}
    return all(c.name in found for c in dataset.columns if c.required)


def _normalise_header(name: str) -> str:
    """A heading as compared: Unicode compatibility forms (NFKC: non-breaking spaces, full-width letters),
    runs of spaces as one, case, and spaces and hyphens as underscores."""
    return "_".join(unicodedata.normalize("NFKC", name).lower().split()).replace("-", "_")


def _plain_header(name: str) -> str:
    """A heading as compared before Unicode and spacing were normalised (to tell when that mattered)."""
    return name.strip().lower().replace(" ", "_").replace("-", "_")


def _check_required(found: set[str], dataset: Dataset, problems: Problems) -> None:
    for column in dataset.columns:
        if column.required and column.name not in found:
            problems.add("FILE-002", column.name, 0)


# --- typing and minimising one value --------------------------------------------------------------
# A converter takes one raw value (CSV text, or an XLSX/JSON cell that is not None) and returns the typed,
# minimised value to store, or None when it is empty; it raises _BadValue with the rule code otherwise.
# Each is built once per column with its options resolved, because it runs for every value of a file.


class _BadValue(Exception):
    def __init__(self, code: str):
        self.code = code


def _converter(column: Column, date_format: str, pseudonymiser: Pseudonymiser) -> Callable[[Any], Any]:
    if column.type == "date":
        return _date_converter(date_format, month=column.minimise == "month")
    if column.type in ("text", "code"):
        return _text_converter(column, pseudonymiser)
    return {"integer": _integer, "decimal": _decimal, "boolean": _boolean}[column.type]


def _text_converter(column: Column, pseudonymiser: Pseudonymiser, empty: str | None = None) -> Callable[[Any], Any]:
    """A text column's converter; an empty value gives ``empty`` (None, or COPY's NULL when staging a pseudonym)."""
    identifier = column.minimise in ("pseudonymise", "nhs_number") or column.length is not None
    name, max_length, length = column.name, column.max_length, column.length
    minimise: Callable[[str], str] | None = {
        "pseudonymise": pseudonymiser.for_namespace(name),
        "nhs_number": _refusing(pseudonymiser.nhs_number, "FLD-004"),
        "postcode_sector": _refusing(postcode_sector, "FLD-005"),
    }.get(column.minimise)

    def convert_text(raw: Any) -> str | None:
        text = raw.strip() if type(raw) is str else _cell_text(raw, identifier)
        if not text:
            return empty
        if len(text) > max_length:
            raise _BadValue("FLD-003")
        if identifier and not text.isdigit():
            if SPREADSHEET_NUMBER.match(text):
                raise _BadValue("FLD-010")
        if length is not None and len(text) != length:
            raise _BadValue("FLD-011" if text.isdigit() and len(text) < length else "FLD-012")
        return text if minimise is None else minimise(text)

    return convert_text


def _refusing(minimise: Callable[[str], str], code: str) -> Callable[[str], str]:
    """``minimise``, with its MinimisationError turned into the rule code the partner is told."""

    def minimised(text: str) -> str:
        try:
            return minimise(text)
        except MinimisationError:
            raise _BadValue(code) from None

    return minimised


def _cell_text(value: Any, identifier: bool) -> str:
    """The text of a typed cell (XLSX, JSON) for a text column; spreadsheet-changed values are refused."""
    if isinstance(value, bool):
        return str(value).upper()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        if identifier:
            raise _BadValue("FLD-010")
        return repr(value)
    if isinstance(value, dt.date | dt.time | dt.timedelta):
        raise _BadValue("FLD-010")  # a code or id a spreadsheet turned into a date
    return str(value).strip()


def _date_converter(date_format: str, *, month: bool) -> Callable[[Any], dt.date | None]:
    iso = date_format == "%Y-%m-%d"

    def convert_date(raw: Any) -> dt.date | None:
        if type(raw) is str:
            text = raw.strip()
            if not text:
                return None
            day = None
            if iso:
                if len(text) == 10 and text[4] == "-" and text[7] == "-" and text.replace("-", "").isdigit():
                    try:
                        day = dt.date.fromisoformat(text)
                    except ValueError:
                        pass
            else:
                try:
                    parsed = dt.datetime.strptime(text, date_format)
                    if parsed.strftime(date_format) == text:  # strict: no missing zero padding
                        day = parsed.date()
                except ValueError:
                    pass
            if day is None:
                raise _BadValue(_bad_date_code(text, iso=iso))
        elif isinstance(raw, dt.datetime):
            day = raw.date()
        elif isinstance(raw, dt.date):
            day = raw
        elif isinstance(raw, int | float) and not isinstance(raw, bool):
            raise _BadValue("FLD-008")  # a spreadsheet cell holding the date's serial number
        else:
            raise _BadValue("FLD-001")
        return day.replace(day=1) if month else day

    return convert_date


def _bad_date_code(text: str, *, iso: bool) -> str:
    """Why ``text`` is not a date in the agreed format: a word for missing, a spreadsheet's rewrite, or not."""
    if text.upper() in MISSING_WORDS:
        return "FLD-013"
    if SERIAL_DATE.match(text):
        return "FLD-008"
    if iso and SPREADSHEET_DATE.match(text):
        return "FLD-009"
    return "FLD-001"


def _integer(raw: Any) -> int | None:
    if type(raw) is str:
        text = raw.strip()
        if not text:
            return None
        if not INTEGER.match(text):
            raise _BadValue("FLD-013" if text.upper() in MISSING_WORDS else "FLD-002")
        value = int(text)
    elif isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    elif isinstance(raw, float) and raw.is_integer():
        value = int(raw)
    else:
        raise _BadValue("FLD-002")
    if not INT_RANGE[0] <= value <= INT_RANGE[1]:
        raise _BadValue("FLD-002")
    return value


def _decimal(raw: Any) -> decimal.Decimal | None:
    if type(raw) is str:
        text = raw.strip()
        if not text:
            return None
        if not DECIMAL.match(text):
            raise _BadValue("FLD-013" if text.upper() in MISSING_WORDS else "FLD-006")
        return decimal.Decimal(text)
    if isinstance(raw, int | float) and not isinstance(raw, bool) and math.isfinite(raw):
        return decimal.Decimal(str(raw))
    raise _BadValue("FLD-006")


def _boolean(raw: Any) -> bool | None:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int) and raw in (0, 1):
        return bool(raw)
    text = str(raw).strip().lower()
    if not text:
        return None
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise _BadValue("FLD-013" if text.upper() in MISSING_WORDS else "FLD-007")
