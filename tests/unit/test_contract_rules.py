"""Every contract file, read without a database: well formed, a rule for each requirement of a contract,
and its own pass and fail case for every rule (``meta.examples``; run by tests/integration/test_contracts.py).

Parametrised over the datasets in the demo configuration, so a new feed's contract is checked as soon as
its dataset is configured.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path

import pytest

from partnerflow.contracts import suites
from partnerflow.core.config import Dataset, load_config
from partnerflow.core.periods import Period

REPO = Path(__file__).resolve().parents[2]
DATASETS = load_config(REPO / "config" / "partnership.yaml").datasets
UNIQUE_TYPES = {"expect_column_values_to_be_unique", "expect_compound_columns_to_be_unique"}


def by_id(dataset: Dataset) -> str:
    return dataset.id


@pytest.fixture(params=DATASETS, ids=by_id)
def dataset(request) -> Dataset:
    return request.param


def test_every_configured_dataset_has_a_well_formed_contract(dataset):
    contract = suites.read_contract(dataset.suite_name)
    loaded = {c.name for c in dataset.loaded_columns}
    assert contract.rules
    for rule in contract.rules:
        assert set(rule.columns) <= loaded, f"{rule.code} checks columns the dataset does not load"
        assert rule.message.strip().endswith("."), f"{rule.code}: the message should be whole sentences"


def test_every_contract_file_belongs_to_a_dataset():
    suite_names = {d.suite_name for d in DATASETS}
    files = {path.stem for path in (REPO / "expectations").glob("*.json")}
    assert files <= suite_names, f"contracts no dataset uses: {sorted(files - suite_names)}"


def test_required_columns_have_a_not_null_rule(dataset):
    rules = suites.read_rules(dataset.suite_name)
    not_null = {r.columns[0] for r in rules if r.expectation_type == "expect_column_values_to_not_be_null"}
    required = {c.name for c in dataset.loaded_columns if c.required}
    assert required <= not_null, f"required columns with no not-null rule: {sorted(required - not_null)}"


def test_the_record_key_must_be_unique(dataset):
    rules = suites.read_rules(dataset.suite_name)
    unique = [set(r.columns) for r in rules if r.expectation_type in UNIQUE_TYPES]
    assert set(dataset.key) in unique, f"no rule says {dataset.key} is unique"


def test_volume_is_compared_with_the_last_accepted_return(dataset):
    rule = suites.read_contract(dataset.suite_name).volume_rule
    assert rule is not None, "the contract needs a volume rule (see the contracts module docstring)"
    assert rule.expectation_type in suites.VOLUME_TYPES
    assert rule.parameters == {"volume_min", "volume_max"}


def test_every_rule_has_a_pass_and_a_fail_example(dataset):
    rules = suites.read_rules(dataset.suite_name)
    examples = suites.read_examples(dataset.suite_name)
    have = {(e.code, e.expect) for e in examples}
    missing = [f"{r.code} {outcome}" for r in rules for outcome in suites.OUTCOMES if (r.code, outcome) not in have]
    assert not missing, f"rules without an example: {', '.join(missing)}"
    loaded = {c.name for c in dataset.loaded_columns}
    for example in examples:
        for row in example.rows:
            assert set(row) <= loaded, f"{example.code} {example.expect}: unknown columns {sorted(set(row) - loaded)}"
    volume = suites.read_contract(dataset.suite_name).volume_rule
    for example in examples:
        if volume is not None and example.code == volume.code:
            assert example.volume_baseline is not None, f"{example.code} {example.expect} needs a volume_baseline"


def test_dates_relative_to_the_period():
    period = Period.from_id("2024Q1")
    assert suites.RelativeDate(base="period_start", years=-18).on(period) == dt.date(2006, 1, 1)
    assert suites.RelativeDate(base="period_end", months=9).on(period) == dt.date(2024, 12, 31)
    assert suites.RelativeDate(base="period_end", months=-1).on(period) == dt.date(2024, 2, 29)
    assert suites.RelativeDate(base="period_start", days=-1).on(period) == dt.date(2023, 12, 31)


def test_parameters_for_a_run():
    contract = suites.read_contract("referrals")
    period = Period.from_id("2026Q3")
    values = contract.parameters(period, volume_baseline=401)
    assert values["period_start"] == dt.date(2026, 7, 1) and values["period_end"] == dt.date(2026, 9, 30)
    assert (values["volume_min"], values["volume_max"]) == (200, 802)
    without = contract.parameters(period, volume_baseline=None)
    assert "volume_min" not in without
    assert contract.volume_rule not in contract.rules_to_check(None)
    assert contract.volume_rule in contract.rules_to_check(0)


def _write(tmp_path: Path, suite: dict) -> Path:
    (tmp_path / f"{suite['name']}.json").write_text(json.dumps(suite))
    return tmp_path


@pytest.fixture
def referrals_suite() -> dict:
    return json.loads(suites.contract_path("referrals").read_text())


def _rule(suite: dict, code: str) -> dict:
    return next(e for e in suite["expectations"] if e["meta"]["code"] == code)


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (lambda rule: rule["meta"].pop("volume"), "meta.volume must be"),
        (lambda rule: rule["meta"].update(volume={"min_ratio": 1.5, "max_ratio": 2}), "0 <= min_ratio <= 1"),
        (lambda rule: rule.update(type="expect_table_row_count_to_equal"), "a volume rule is one of"),
    ],
)
def test_malformed_volume_rules_are_refused(tmp_path, referrals_suite, change, complaint):
    change(_rule(referrals_suite, "REF-013"))
    with pytest.raises(suites.ContractError, match=complaint):
        suites.read_contract("referrals", directory=_write(tmp_path, referrals_suite))


def test_a_second_volume_rule_is_refused(tmp_path, referrals_suite):
    second = copy.deepcopy(_rule(referrals_suite, "REF-013"))
    second["meta"]["code"] = "REF-099"
    referrals_suite["expectations"].append(second)
    with pytest.raises(suites.ContractError, match="more than one volume rule"):
        suites.read_contract("referrals", directory=_write(tmp_path, referrals_suite))


@pytest.mark.parametrize(
    ("dates", "complaint"),
    [
        ({"period_start": {"from": "period_start"}}, "must be a new parameter name"),
        ({"earliest": {"from": "today"}}, "needs 'from'"),
        ({"earliest": {"from": "period_start", "weeks": 2}}, "offsets must be whole numbers"),
    ],
)
def test_malformed_dates_are_refused(tmp_path, referrals_suite, dates, complaint):
    referrals_suite["meta"]["dates"] = dates
    with pytest.raises(suites.ContractError, match=complaint):
        suites.read_contract("referrals", directory=_write(tmp_path, referrals_suite))


def test_a_rule_using_an_undeclared_date_is_refused(tmp_path, referrals_suite):
    del referrals_suite["meta"]["dates"]["latest_birth"]
    with pytest.raises(suites.ContractError, match=r"rule REF-012: unknown \$PARAMETER \['latest_birth'\]"):
        suites.read_contract("referrals", directory=_write(tmp_path, referrals_suite))


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (lambda suite: suite["meta"].pop("examples"), "meta.examples needs a 'period' and a 'row'"),
        (lambda suite: _rule(suite, "REF-006")["meta"]["examples"].update(maybe={}), "examples must be"),
        (lambda suite: _rule(suite, "REF-006")["meta"]["examples"]["fail"].update(rows=[]), "'rows' must be"),
        (lambda suite: _rule(suite, "REF-006")["meta"]["examples"]["fail"].update(row_numbers=2), "'row_numbers'"),
    ],
)
def test_malformed_examples_are_refused(tmp_path, referrals_suite, change, complaint):
    change(referrals_suite)
    with pytest.raises(suites.ContractError, match=complaint):
        suites.read_examples("referrals", directory=_write(tmp_path, referrals_suite))


def test_example_rows_are_the_suite_row_with_changes(referrals_suite):
    examples = {(e.code, e.expect): e for e in suites.read_examples("referrals")}
    base = referrals_suite["meta"]["examples"]["row"]
    fail = examples[("REF-006", "fail")]
    assert fail.period == Period.from_id("2026Q3")
    assert fail.rows[0] == base
    assert fail.rows[1] == {**base, "referral_id": "R-2", "referral_source": "11"}
    assert fail.row_numbers == (2, 3)
