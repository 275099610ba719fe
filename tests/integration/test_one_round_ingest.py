"""Exports read as they are, and refusals in one round, through the real SFTP drop, ingest and publish (issue 12).

- Education's feed is agreed as Windows-1252. Excel's "CSV UTF-8" (with a byte order mark) is read as UTF-8
  and published, and the receipt says calmly how it was read.
- A file with a bad date in one row (an intake problem) and an unknown category in another (a contract rule)
  is rejected once, with both in the same report and e-mail, so the partner fixes everything in one go.
- A file refused as a whole names no row count ("Rows affected: 1" when no rows were read was wrong).
"""

from __future__ import annotations

import csv
import io
import os

import sqlalchemy as sa

from partnerflow import warehouse
from partnerflow.core.periods import Period
from partnerflow.pipeline import ingest
from partnerflow_dev import synthetic

PERIOD = Period.from_id("2026Q3")
FEED = "education_exclusions"
NAME = "exclusions_2026Q3.csv"


def _rows(seed: int) -> list[dict[str, str]]:
    return synthetic.exclusions_rows(PERIOD, seed=seed, n=40)


def _csv(rows: list[dict[str, str]], *, encoding: str, delimiter: str = ",") -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), delimiter=delimiter, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode(encoding)


def _upload(stack, config, content: bytes) -> None:
    drop = stack.drop_dir(config.feed(FEED).transport.directory)
    (drop / f"{NAME}.part").write_bytes(content)
    os.replace(drop / f"{NAME}.part", drop / NAME)


def _decide(config) -> list[str]:
    return [o["state"] for o in ingest.decide(FEED, ingest.fetch(FEED, config=config), config=config)]


def _last(kind: str) -> tuple[dict, str]:
    with warehouse.engine().connect() as conn:
        report = conn.execute(
            sa.text("SELECT report FROM ops.validation_reports ORDER BY file_id DESC LIMIT 1")
        ).scalar_one()
        body = conn.execute(
            sa.text("SELECT text_body FROM ops.notifications WHERE kind = :k ORDER BY id DESC LIMIT 1"), {"k": kind}
        ).scalar_one()
    return report, body


def test_excel_csv_utf8_on_a_windows_1252_feed_is_published_with_a_calm_note(devstack, demo_config):
    rows = _rows(seed=1)
    rows[0]["pupil_name"] = "Zoë O’Farrow"  # a dropped column: read, never kept
    _upload(devstack, demo_config, b"\xef\xbb\xbf" + _csv(rows, encoding="utf-8"))
    assert _decide(demo_config) == ["published"]
    report, body = _last("receipt")
    assert [(f["code"], f["severity"], f["failing_rows"]) for f in report["failures"]] == [("READ-001", "info", 0)]
    assert "HOW WE READ YOUR FILE" in body and "read as UTF-8" in body and "agreed as Windows-1252" in body
    assert "Zoë" not in body


def test_intake_problems_and_contract_failures_arrive_in_one_report(devstack, demo_config):
    rows = _rows(seed=2)
    rows[2]["start_date"] = "03/07/2026"  # intake: a spreadsheet's date (FLD-009)
    rows[4]["category"] = "EXCL"  # the contract: not a category (EDU-007)
    data = _csv(rows, encoding="cp1252", delimiter=";")  # and a semicolon locale, read with a note
    _upload(devstack, demo_config, data)
    assert _decide(demo_config) == ["rejected"]
    report, body = _last("rejection")
    found = {(f["code"], tuple(f["columns"]), tuple(f["row_numbers"])) for f in report["failures"]}
    assert ("FLD-009", ("start_date",), (3,)) in found and ("EDU-007", ("category",), (5,)) in found
    assert ("READ-003", (), ()) in found
    # The refused date is staged empty; "start date is required" would name row 3 for the wrong reason.
    assert not [f for f in report["failures"] if f["code"] == "EDU-005"]
    assert "FLD-009" in body and "EDU-007" in body and "separated by semicolons" in body


def test_a_file_refused_as_a_whole_names_no_row_count(devstack, demo_config):
    rows = _rows(seed=3)
    data = _csv(rows, encoding="cp1252").replace(b"persistent_absence", b"absence_flag")
    _upload(devstack, demo_config, data)
    assert _decide(demo_config) == ["rejected"]
    report, body = _last("rejection")
    assert [(f["code"], f["failing_rows"]) for f in report["failures"]] == [("FILE-002", 0)]
    assert "Rows affected: this check applies to the file as a whole." in body
    assert "Rows affected: 1" not in body
