"""Parsing a landed file into minimised, typed rows, streaming, and staging them with COPY.

Columns are found by header name (with the dataset's aliases), never by position. Values keep their text
exactly: "NA" and "Null" are text, identifiers keep their leading zeros. A problem is recorded against the
row number and column with a rule code; values are never repeated in any message.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from partnerflow.config import Column, Dataset, Feed
from partnerflow.minimise import (
    MinimisationError,
    month_only,
    nhs_number_valid,
    postcode_sector,
    pseudonymise,
)

log = logging.getLogger(__name__)

MAX_ROW_NUMBERS = 1000
SQL_TYPES = {
    "text": "text",
    "code": "text",
    "date": "date",
    "integer": "bigint",
    "decimal": "numeric",
    "boolean": "boolean",
}
TRUE_WORDS = {"y", "yes", "true", "1"}
FALSE_WORDS = {"n", "no", "false", "0"}

# The rules intake itself applies before the contract: code -> plain-English message for the partner.
FILE_RULES = {
    "FILE-001": "The file is not in the agreed text encoding. Save it as UTF-8 (CSV UTF-8 in Excel) and resend.",
    "FILE-002": "Required columns are missing from the header row. Add them with the agreed names.",
    "FILE-003": "The file is empty or has no header row.",
    "FILE-004": "The file is not in the agreed structure (JSON pages of records).",
    "FILE-005": "Some rows have more fields than the header row (check for unquoted commas).",
    "FLD-001": "Dates must be written in the agreed format (YYYY-MM-DD).",
    "FLD-002": "This column must hold whole numbers only.",
    "FLD-003": "Values in this column are longer than allowed.",
    "FLD-004": "NHS numbers must be 10 digits with a valid check digit.",
    "FLD-005": "Postcodes must be full UK postcodes.",
    "FLD-006": "This column must hold a number.",
    "FLD-007": "This column must hold Y or N.",
}


@dataclass
class Problems:
    """Rule failures found while reading a file: rule code and columns -> row numbers. Never values."""

    found: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    counts: dict[tuple[str, str], int] = field(default_factory=dict)

    def add(self, code: str, column: str, row_number: int) -> None:
        key = (code, column)
        self.counts[key] = self.counts.get(key, 0) + 1
        rows = self.found.setdefault(key, [])
        if row_number and len(rows) < MAX_ROW_NUMBERS:
            rows.append(row_number)

    def __bool__(self) -> bool:
        return bool(self.counts)

    def report(self, rows_checked: int) -> dict[str, Any]:
        """The report in the same shape the contract check produces."""
        return {
            "passed": False,
            "stage": "intake",
            "rules_checked": len(FILE_RULES),
            "rows_checked": rows_checked,
            "failures": [
                {
                    "code": code,
                    "message": FILE_RULES[code],
                    "columns": [column] if column else [],
                    "severity": "error",
                    "failing_rows": self.counts[(code, column)],
                    "row_numbers": rows,
                }
                for (code, column), rows in sorted(self.found.items())
            ],
        }


class FileRejected(Exception):
    """The file can't be read as its feed declares; ``report`` says why, with no values."""

    def __init__(self, report: dict[str, Any]):
        super().__init__("file rejected at intake: " + ", ".join(f["code"] for f in report["failures"]))
        self.report = report


@dataclass(frozen=True)
class StagedFile:
    table: str
    rows: int


def staging_table(dataset: Dataset, file_id: int) -> str:
    return f"staging.{dataset.id}_f{file_id}"


def stage(eng: Engine, *, path: Path, file_id: int, feed: Feed, dataset: Dataset, key: bytes) -> StagedFile:
    """Parse, minimise and COPY a landed file into its own staging table; raise FileRejected on problems.

    On any problem the staging table is dropped: nothing of a bad file stays behind.
    """
    table = staging_table(dataset, file_id)
    columns = dataset.loaded_columns
    problems = Problems()
    with eng.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        column_sql = ", ".join(f"{c.name} {SQL_TYPES[c.type]}" for c in columns)
        conn.execute(sa.text(f"CREATE TABLE {table} (row_number integer NOT NULL, {column_sql})"))
        cursor = conn.connection.driver_connection.cursor()
        names = ", ".join(["row_number", *(c.name for c in columns)])
        rows = 0
        with cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
            for row_number, record in _records(path, feed, dataset, problems):
                values = [
                    _convert(c, record.get(c.name), row_number, problems, key, dataset.date_format) for c in columns
                ]
                rows += 1
                if not problems:
                    copy.write_row([row_number, *values])
        if rows == 0 and not problems:
            problems.add("FILE-003", "", 0)
        if problems:
            raise FileRejected(problems.report(rows))  # leaving the block rolls the staging table back
    log.info("staged file %s: %d rows into %s", file_id, rows, table)
    return StagedFile(table=table, rows=rows)


def drop_staging(eng: Engine, dataset: Dataset, file_id: int) -> None:
    with eng.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {staging_table(dataset, file_id)}"))


def _records(path: Path, feed: Feed, dataset: Dataset, problems: Problems) -> Iterator[tuple[int, dict]]:
    if feed.format.kind == "csv":
        yield from _csv_records(path, feed, dataset, problems)
    elif feed.format.kind == "json":
        yield from _json_records(path, dataset, problems)
    else:
        raise NotImplementedError(f"{feed.format.kind} files are not supported yet")


def _header_map(header: list[str], dataset: Dataset) -> dict[int, str]:
    """Position in the partner's file -> our column name, by name or alias; unknown columns are ignored."""
    names: dict[str, str] = {}
    for column in dataset.columns:
        for spelling in (column.name, *column.aliases):
            names[_normalise_header(spelling)] = column.name
    return {i: names[h] for i, h in enumerate(map(_normalise_header, header)) if h in names}


def _normalise_header(name: str) -> str:
    return name.strip().lower().replace(" ", "_").replace("-", "_")


def _check_required(found: set[str], dataset: Dataset, problems: Problems) -> None:
    for column in dataset.columns:
        if column.required and column.name not in found:
            problems.add("FILE-002", column.name, 0)


def _csv_records(path: Path, feed: Feed, dataset: Dataset, problems: Problems) -> Iterator[tuple[int, dict]]:
    encoding = "utf-8-sig" if feed.format.encoding == "utf-8" else feed.format.encoding
    row_number = 0
    try:
        with path.open(encoding=encoding, errors="strict", newline="") as handle:
            reader = csv.reader(handle, delimiter=feed.format.delimiter)
            header = next(reader, None)
            if not header:
                problems.add("FILE-003", "", 0)
                return
            positions = _header_map(header, dataset)
            _check_required(set(positions.values()), dataset, problems)
            if problems:
                return
            for fields in reader:
                row_number += 1
                if not any(f.strip() for f in fields):
                    row_number -= 1
                    continue
                if len(fields) > len(header):
                    problems.add("FILE-005", "", row_number)
                yield (
                    row_number,
                    {name: fields[i] if i < len(fields) else "" for i, name in positions.items()},
                )
    except UnicodeDecodeError:
        problems.add("FILE-001", "", row_number + 1)


def _json_records(path: Path, dataset: Dataset, problems: Problems) -> Iterator[tuple[int, dict]]:
    try:
        document = json.loads(path.read_bytes())
        records = [record for page in document["pages"] for record in page["records"]]
    except (ValueError, KeyError, TypeError):
        problems.add("FILE-004", "", 0)
        return
    if records:
        _check_required(set().union(*(r.keys() for r in records if isinstance(r, dict))), dataset, problems)
        if problems:
            return
    for row_number, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            problems.add("FILE-004", "", row_number)
            continue
        yield row_number, {k: "" if v is None else str(v) for k, v in record.items()}


def _convert(column: Column, raw: str | None, row_number: int, problems: Problems, key: bytes, date_format: str) -> Any:
    """Type one value and minimise it; a problem is recorded and None returned (the file will be rejected)."""
    text = (raw or "").strip()
    if not text:
        return None
    if len(text) > column.max_length:
        problems.add("FLD-003", column.name, row_number)
        return None
    try:
        value = _typed(column, text, date_format)
        return _minimised(column, value, key)
    except _BadValue as bad:
        problems.add(bad.code, column.name, row_number)
        return None


class _BadValue(Exception):
    def __init__(self, code: str):
        self.code = code


def _typed(column: Column, text: str, date_format: str) -> Any:
    if column.type == "date":
        try:
            return dt.datetime.strptime(text, date_format).date()
        except ValueError:
            raise _BadValue("FLD-001") from None
    if column.type == "integer":
        try:
            return int(text)
        except ValueError:
            raise _BadValue("FLD-002") from None
    if column.type == "decimal":
        try:
            return decimal.Decimal(text)
        except decimal.InvalidOperation:
            raise _BadValue("FLD-006") from None
    if column.type == "boolean":
        if text.lower() in TRUE_WORDS:
            return True
        if text.lower() in FALSE_WORDS:
            return False
        raise _BadValue("FLD-007")
    return text


def _minimised(column: Column, value: Any, key: bytes) -> Any:
    if column.minimise == "pseudonymise":
        return pseudonymise(key, column.name, str(value))
    if column.minimise == "nhs_number":
        if not nhs_number_valid(str(value)):
            raise _BadValue("FLD-004")
        return pseudonymise(key, "nhs_number", str(value).replace(" ", "").replace("-", ""))
    if column.minimise == "month":
        if not isinstance(value, dt.date):
            raise _BadValue("FLD-001")
        return month_only(value)
    if column.minimise == "postcode_sector":
        try:
            return postcode_sector(str(value))
        except MinimisationError:
            raise _BadValue("FLD-005") from None
    return value
