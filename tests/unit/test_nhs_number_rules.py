"""NHS numbers that are invalid by definition are refused before pseudonymising (issue 12).

Every repeated digit passes the modulus 11 check (``d x 54 = -d mod 11``), so ``0000000000`` was loaded and
pseudonymised as if it were one child shared by every record holding it. The check digit 10 (no number),
lengths, non-ASCII digits and letters were already refused; allocation ranges are deliberately not checked
(see ``minimise.nhs_number_valid``). No values appear in the report.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from partnerflow.core.config import Column, Dataset, Feed
from partnerflow.intake import reader
from partnerflow.intake.minimise import MinimisationError, Pseudonymiser, nhs_number_digits, nhs_number_valid

KEY = bytes(range(32))
REPEATED = [str(d) * 10 for d in range(10)]
DATASET = Dataset(
    id="health_records",
    title="A record-level health return",
    grain="record",
    table="core.health_records",
    key=("case_id",),
    columns=(
        Column(name="case_id", required=True, minimise="pseudonymise"),
        Column(name="nhs_number", minimise="nhs_number"),
    ),
)
FEED = Feed.model_validate(
    {
        "id": "health_records_feed",
        "partner": "health",
        "dataset": "health_records",
        "title": "Health records",
        "transport": {"kind": "sftp", "connection": "c", "directory": "/d", "pattern": "h_{period}.csv"},
        "format": {"kind": "csv"},
    }
)


def check_digit(nine: str) -> int:
    """The modulus 11 check digit of nine digits, 10 meaning there is no valid number."""
    check = 11 - sum(int(d) * w for d, w in zip(nine, range(10, 1, -1), strict=True)) % 11
    return 0 if check == 11 else check


def test_every_repeated_digit_passes_modulus_11_but_is_refused():
    for value in REPEATED:
        assert check_digit(value[:9]) == int(value[9])  # why the check digit alone let them through
        assert not nhs_number_valid(value)
        for written in (value, f"{value[:3]} {value[3:6]} {value[6:]}", f"{value[:3]}-{value[3:6]}-{value[6:]}"):
            assert not nhs_number_valid(written)
            with pytest.raises(MinimisationError) as raised:
                Pseudonymiser(KEY).nhs_number(written)
            assert value not in str(raised.value)


@given(st.text(alphabet="0123456789", min_size=9, max_size=9))
def test_a_number_is_valid_exactly_when_its_check_digit_is_right_and_it_is_not_one_digit_repeated(nine):
    check = check_digit(nine)
    for last in range(10):
        value = nine + str(last)
        assert nhs_number_valid(value) == (last == check and value != value[0] * 10)
        if nhs_number_valid(value):
            assert nhs_number_digits(f"{value[:3]} {value[3:6]} {value[6:]}") == value


def test_other_malformed_values_stay_refused():
    for value in ("9434765918", "943476591", "94347659190", "٩٤٣٤٧٦٥٩١٩", "９４３４７６５９１９", "943 476 591X", ""):
        assert not nhs_number_valid(value)
    assert nhs_number_valid("943 476 5919") and nhs_number_valid("999 000 0018")  # the test range is not refused


def test_intake_names_the_rule_column_and_rows_and_never_the_value(tmp_path: Path):
    rows = ["C1,943 476 5919", "C2,0000000000", "C3,", "C4,111 111 1111", "C5,999 999 9999"]
    path = tmp_path / "landed"
    path.write_bytes(("case_id,nhs_number\n" + "\n".join(rows) + "\n").encode())
    problems = reader.Problems()
    read = list(reader.minimised_rows(path, feed=FEED, dataset=DATASET, key=KEY, problems=problems))
    assert problems.found == {("FLD-004", "nhs_number"): [2, 4, 5]}
    assert [values[1] is None for _, values in read] == [False, True, True, True, True]
    report = problems.report(len(read), file_id=7)
    (failure,) = report["failures"]
    assert failure["columns"] == ["nhs_number"] and failure["row_numbers"] == [2, 4, 5]
    assert "not one digit repeated" in failure["message"]
    text = json.dumps(report) + str(reader.FileRejected(report, problems.summary()))
    assert not [v for v in ("1111111111", "111 111 1111", "999 999 9999", "943 476") if v in text]
