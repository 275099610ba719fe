"""Data contracts: one Great Expectations suite per dataset, checked against a staged table in PostgreSQL.

A contract is ``expectations/<dataset>.json``: a GX 1.x expectation suite as GX serialises it (``name``,
``meta``, ``expectations`` of ``type`` and ``kwargs``), where each expectation's ``meta`` holds our rule:

- ``code``: stable, quoted to partners and in the ledger (``REF-001``);
- ``message``: plain English for the partner: what is wrong and how to fix it (never a value);
- ``columns``: the columns the rule checks (the ones its kwargs name; empty for a whole-file rule);
- ``severity``: ``error`` blocks publication, ``warning`` publishes and is reported;
- ``volume`` (volume rules only): ``{"min_ratio": 0.5, "max_ratio": 2.0}``, how far the return may move
  from the last accepted return of the same feed;
- ``examples``: the rule's own test cases, ``{"pass": case, "fail": case}`` (see ``read_examples``).

Rules take run-time values as ``{"$PARAMETER": name}``; ``validate_staged`` fills them in:

- ``period_start``, ``period_end``: the period the return is for;
- each date the suite's ``meta.dates`` declares, relative to those: ``{"earliest_birth": {"from":
  "period_start", "years": -18}}`` (``years``, ``months``, ``days``; negative looks back);
- ``volume_min``, ``volume_max``: the bounds of the one volume rule (``expect_table_row_count_to_be_between``
  for rows, ``expect_column_sum_to_be_between`` for the total of a count column), from the last accepted
  return's volume times the rule's ratios. With no accepted return yet, the volume rule is not checked.

Pitfalls:

- GX results carry failing values (``partial_unexpected_list``, ``observed_value``, the index list's
  value column). The validation asks for SUMMARY with ``exclude_unexpected_values`` and reads only
  counts and the staged ``row_number`` column, then drops the GX result; ``ContractReport`` holds rule
  codes, columns, counts and row numbers, nothing else. GX exception messages (which can quote a value)
  are redacted before they go into an exception.
- GX silently drops an expectation whose type it does not know; ``load_suite`` refuses such a file.
- GX gives no row numbers for ``expect_compound_columns_to_be_unique`` on SQL, so those are looked up
  with one query of our own.
- ``great_expectations`` takes seconds to import, so it is imported inside the functions that need it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import re
from calendar import monthrange
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from partnerflow.core.errors import TerminalError
from partnerflow.core.paths import repo_path

if TYPE_CHECKING:
    from great_expectations.core import ExpectationSuite
    from sqlalchemy.engine import Connection

    from partnerflow.core.config import Dataset
    from partnerflow.core.periods import Period

log = logging.getLogger(__name__)


# Great Expectations talks at INFO while it imports and validates ("Skipping registering function …",
# hundreds of lines per file): only its warnings reach a task's log. Set here, before it is first imported.
def quiet_gx() -> None:
    """Only warnings from Great Expectations' loggers, including any it made (and levelled) itself."""
    names = [n for n in logging.root.manager.loggerDict if n.startswith("great_expectations.")]
    for name in ("great_expectations", *names):
        logging.getLogger(name).setLevel(logging.WARNING)


quiet_gx()

Severity = Literal["error", "warning"]
SEVERITIES: tuple[Severity, ...] = ("error", "warning")
GX_SEVERITY = {"error": "critical", "warning": "warning"}
PERIOD_PARAMETERS = ("period_start", "period_end")
VOLUME_PARAMETERS = ("volume_min", "volume_max")
SUITE_PARAMETERS = PERIOD_PARAMETERS + VOLUME_PARAMETERS
# What a volume rule measures: the staged rows, or the total of one count column.
VOLUME_TYPES = ("expect_table_row_count_to_be_between", "expect_column_sum_to_be_between")
DATE_UNITS = ("years", "months", "days")
ROW_NUMBER = "row_number"
ROW_NUMBERS_CAP = 1000
RULE_CODE = re.compile(r"^[A-Z][A-Z0-9]*-\d{3}$")
EXPECTATION_KEYS = {"type", "kwargs", "meta", "notes", "description"}
SUITE_KEYS = {"name", "meta", "expectations", "notes"}
COLUMN_KWARGS = ("column", "column_A", "column_B", "column_list")
STAGING_SCHEMA = "staging"
IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")
OUTCOMES = ("pass", "fail")

# SUMMARY is the lowest format that returns row indexes; these options strip the values from it.
PASS_FAIL_FORMAT = {"result_format": "BOOLEAN_ONLY"}
RESULT_FORMAT = {
    "result_format": "SUMMARY",
    "unexpected_index_column_names": [ROW_NUMBER],
    "partial_unexpected_count": ROW_NUMBERS_CAP,
    "exclude_unexpected_values": True,
    "return_unexpected_index_query": False,
}


class ContractError(TerminalError):
    """A contract file is missing, malformed, or holds a rule GX does not understand: it is refused.

    Terminal: an engineer must correct the contract; retrying reads the same file."""


class ContractConfigurationError(TerminalError):
    """GX could not evaluate the contract against the staged table (wrong column type, missing table...).

    An engineer's problem, never reported to the partner as a failure of their file.
    """


@dataclass(frozen=True, kw_only=True)
class Volume:
    """How far a return's volume may move from the last accepted return of the same feed."""

    min_ratio: float = 0.5
    max_ratio: float = 2.0

    def bounds(self, baseline: float) -> tuple[int, int]:
        """The accepted range around ``baseline``, widened to whole numbers."""
        return math.floor(baseline * self.min_ratio), math.ceil(baseline * self.max_ratio)


@dataclass(frozen=True, kw_only=True)
class RelativeDate:
    """A date a contract declares relative to its period (``meta.dates``), e.g. 18 years before it starts."""

    base: Literal["period_start", "period_end"]
    years: int = 0
    months: int = 0
    days: int = 0

    def on(self, period: Period) -> dt.date:
        day = period.start if self.base == "period_start" else period.end
        year, month = divmod(day.year * 12 + day.month - 1 + self.years * 12 + self.months, 12)
        shifted = day.replace(year=year, month=month + 1, day=min(day.day, monthrange(year, month + 1)[1]))
        return shifted + dt.timedelta(days=self.days)


@dataclass(frozen=True, kw_only=True)
class Rule:
    """One rule of a contract, as written in its file."""

    code: str
    message: str
    columns: tuple[str, ...]
    severity: Severity
    expectation_type: str
    kwargs: dict[str, Any]
    volume: Volume | None = None

    @property
    def parameters(self) -> frozenset[str]:
        """The ``$PARAMETER`` names the rule takes at run time."""
        return frozenset(_parameters_used(self.kwargs))


@dataclass(frozen=True, kw_only=True)
class Contract:
    """One contract file: its rules and the dates it declares relative to the period."""

    name: str
    path: Path
    rules: tuple[Rule, ...]
    dates: dict[str, RelativeDate] = field(default_factory=dict)

    @property
    def volume_rule(self) -> Rule | None:
        return next((r for r in self.rules if r.volume is not None), None)

    def rules_to_check(self, volume_baseline: float | None) -> tuple[Rule, ...]:
        """Every rule, less the volume rule when there is no accepted return to compare with."""
        return tuple(r for r in self.rules if r.volume is None or volume_baseline is not None)

    def parameters(self, period: Period, volume_baseline: float | None) -> dict[str, Any]:
        """The values of every ``$PARAMETER`` for a return for ``period``."""
        values: dict[str, Any] = {"period_start": period.start, "period_end": period.end}
        values |= {name: date.on(period) for name, date in self.dates.items()}
        rule = self.volume_rule
        if rule is not None and rule.volume is not None and volume_baseline is not None:
            values["volume_min"], values["volume_max"] = rule.volume.bounds(volume_baseline)
        return values


@dataclass(frozen=True, kw_only=True)
class RuleFailure:
    """A rule that some rows broke: how many, and (up to ``ROW_NUMBERS_CAP``) which, by row number.

    A whole-file rule (volume, row count) fails with no rows: ``failing_rows`` is 0.
    """

    code: str
    message: str
    columns: tuple[str, ...]
    severity: Severity
    failing_rows: int
    row_numbers: tuple[int, ...]


@dataclass(frozen=True, kw_only=True)
class ContractReport:
    """The result of checking one staged file against its contract. Holds no data values, by design."""

    passed: bool
    rules_checked: int
    rows_checked: int
    failures: tuple[RuleFailure, ...]

    @property
    def errors(self) -> tuple[RuleFailure, ...]:
        return tuple(f for f in self.failures if f.severity == "error")

    @property
    def warnings(self) -> tuple[RuleFailure, ...]:
        return tuple(f for f in self.failures if f.severity == "warning")

    def to_json(self) -> str:
        """The report as JSON, for ``ops.validation_reports.report``."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ContractReport:
        data = json.loads(text)
        failures = tuple(
            RuleFailure(**{**f, "columns": tuple(f["columns"]), "row_numbers": tuple(f["row_numbers"])})
            for f in data["failures"]
        )
        return cls(
            passed=data["passed"],
            rules_checked=data["rules_checked"],
            rows_checked=data["rows_checked"],
            failures=failures,
        )


@dataclass(frozen=True, kw_only=True)
class Example:
    """One of a rule's own test cases, from the rule's ``meta.examples`` (see ``read_examples``)."""

    code: str
    expect: Literal["pass", "fail"]
    period: Period
    rows: tuple[dict[str, Any], ...]
    row_numbers: tuple[int, ...] | None = None
    volume_baseline: float | None = None


def contract_path(dataset_id: str, *, directory: Path | None = None) -> Path:
    return (directory or repo_path("expectations")) / f"{dataset_id}.json"


def read_contract(dataset_id: str, *, directory: Path | None = None) -> Contract:
    """The contract ``expectations/<dataset_id>.json``, checked for shape (without importing GX).

    Raises ContractError naming the file and the rule when the file is missing or malformed.
    """
    path = contract_path(dataset_id, directory=directory)
    suite = _read_json(path)
    if not isinstance(suite, dict) or not isinstance(suite.get("expectations"), list):
        raise ContractError(f"{path}: must be a GX suite: an object with a list of 'expectations'")
    if unknown := set(suite) - SUITE_KEYS:
        raise ContractError(f"{path}: unknown keys {sorted(unknown)}")
    if suite.get("name") != dataset_id:
        raise ContractError(f"{path}: 'name' must be {dataset_id!r}, the file's name")
    meta: dict[str, Any] = suite["meta"] if isinstance(suite.get("meta"), dict) else {}
    dates = _dates(path, meta.get("dates", {}))
    known = set(SUITE_PARAMETERS) | set(dates)
    rules = [_rule(path, i, raw, known) for i, raw in enumerate(suite["expectations"], start=1)]
    if not rules:
        raise ContractError(f"{path}: has no rules")
    codes = [r.code for r in rules]
    if repeated := sorted({c for c in codes if codes.count(c) > 1}):
        raise ContractError(f"{path}: rule codes must be unique; repeated: {', '.join(repeated)}")
    if len([r for r in rules if r.volume is not None]) > 1:
        raise ContractError(f"{path}: has more than one volume rule")
    return Contract(name=dataset_id, path=path, rules=tuple(rules), dates=dates)


def read_rules(dataset_id: str, *, directory: Path | None = None) -> tuple[Rule, ...]:
    """The rules of ``expectations/<dataset_id>.json`` (``read_contract(...).rules``)."""
    return read_contract(dataset_id, directory=directory).rules


def load_suite(dataset_id: str, *, directory: Path | None = None) -> ExpectationSuite:
    """The GX suite of ``expectations/<dataset_id>.json``; refuses (ContractError) any rule GX would drop."""
    return _build_suite(dataset_id, read_rules(dataset_id, directory=directory))


def accepted_volume(
    conn: Connection, *, file_id: int, row_count: int | None, dataset: Dataset, directory: Path | None = None
) -> float | None:
    """The volume of an accepted (published) file, as its contract's volume rule measures it: rows, or the
    total of a count column. None when the contract has no volume rule.
    """
    import sqlalchemy as sa

    rule = read_contract(dataset.suite_name, directory=directory).volume_rule
    if rule is None:
        return None
    if rule.expectation_type == "expect_table_row_count_to_be_between":
        return None if row_count is None else float(row_count)
    schema, name = dataset.table.split(".")
    published = sa.table(name, sa.column("file_id"), sa.column(rule.columns[0]), schema=schema)
    total = conn.execute(
        sa.select(sa.func.coalesce(sa.func.sum(published.c[rule.columns[0]]), 0)).where(published.c.file_id == file_id)
    ).scalar_one()
    return float(total)


def validate_staged(
    *,
    warehouse_url: str,
    table: str,
    dataset: Dataset,
    period: Period,
    volume_baseline: float | None = None,
    directory: Path | None = None,
) -> ContractReport:
    """Check the staged table against ``dataset``'s contract, in PostgreSQL, for ``period``.

    ``table`` is ``schema.name`` (or a bare name in the staging schema) with a ``row_number`` column.
    ``volume_baseline`` is the last accepted return's volume (``accepted_volume``); without one the
    volume rule is not checked. ``directory`` holds the contracts (default: ``expectations/``).
    Raises ContractError for a refused contract and ContractConfigurationError when GX cannot evaluate a
    rule (a type mismatch, a missing column or table): an engineer's problem, not the partner's.
    """
    contract = read_contract(dataset.suite_name, directory=directory)
    loaded = {c.name for c in dataset.loaded_columns}
    for rule in contract.rules:
        if unknown := [c for c in rule.columns if c not in loaded]:
            raise ContractError(
                f"contract {dataset.suite_name!r} rule {rule.code} checks {unknown}, "
                f"which dataset {dataset.id!r} does not load"
            )
    rules = contract.rules_to_check(volume_baseline)
    suite = _build_suite(dataset.suite_name, rules)
    schema, name = _split_table(table)
    by_code = {rule.code: rule for rule in rules}

    import great_expectations as gx

    quiet_gx()
    import sqlalchemy as sa
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    datasource = None
    try:
        try:
            datasource = context.data_sources.add_postgres(
                name="warehouse", connection_string=_with_search_path(warehouse_url, schema), create_temp_table=False
            )
            asset = datasource.add_table_asset(name=name, table_name=name)
            batch = asset.add_batch_definition_whole_table(name="whole table").get_batch()
        except Exception as exc:
            raise ContractConfigurationError(
                f"cannot open staged table {schema}.{name} for validation: {_redacted(exc)}"
            ) from None
        # Two phases: every rule's pass or fail as cheaply as GX can say it (no row-index or value queries),
        # then the counts and row numbers for the rules that failed only. A passing file costs phase 1 alone.
        parameters = contract.parameters(period, volume_baseline)
        verdicts = _checked(batch.validate(suite, result_format=PASS_FAIL_FORMAT, expectation_parameters=parameters))
        outcomes: list[tuple[Rule, bool, int | None, tuple[int, ...]]] = []
        failed = []
        for code, success, result in verdicts:
            _raise_if_unevaluated(by_code[code], result, dataset, schema, name)
            if success:
                outcomes.append((by_code[code], True, 0, ()))
            else:
                failed.append(by_code[code])
        if failed:
            detail = batch.validate(
                _build_suite(dataset.suite_name, tuple(failed)),
                result_format=RESULT_FORMAT,
                expectation_parameters=parameters,
            )
            for code, success, result in _checked(detail):
                _raise_if_unevaluated(by_code[code], result, dataset, schema, name)
                counts = result.result or {}
                outcomes.append((by_code[code], success, counts.get("unexpected_count"), _row_numbers(counts)))

        execution_engine = datasource.get_execution_engine()  # the one GX validated with
        staged = sa.table(name, *(sa.column(c) for c in (ROW_NUMBER, *loaded)), schema=schema)
        rows_checked = execution_engine.execute_query(sa.select(sa.func.count()).select_from(staged)).scalar_one()
        failures = []
        for rule, success, unexpected, row_numbers in outcomes:
            if success:
                continue
            if rule.expectation_type == "expect_compound_columns_to_be_unique":
                row_numbers = _duplicate_row_numbers(execution_engine, staged, rule.kwargs["column_list"])
            failures.append(
                RuleFailure(
                    code=rule.code,
                    message=rule.message,
                    columns=rule.columns,
                    severity=rule.severity,
                    failing_rows=int(unexpected or 0),
                    row_numbers=row_numbers,
                )
            )
    finally:
        if datasource is not None:
            # Each call builds its own engines: close them now rather than when garbage collected.
            datasource.get_execution_engine().close()
            datasource.get_engine().dispose()

    failures.sort(key=lambda f: f.code)
    report = ContractReport(
        passed=not any(f.severity == "error" for f in failures),
        rules_checked=len(outcomes),
        rows_checked=int(rows_checked),
        failures=tuple(failures),
    )
    log.info(
        "contract %s on %s.%s: %d rules, %d rows, %d errors, %d warnings",
        dataset.suite_name,
        schema,
        name,
        report.rules_checked,
        report.rows_checked,
        len(report.errors),
        len(report.warnings),
    )
    return report


def read_examples(dataset_id: str, *, directory: Path | None = None) -> tuple[Example, ...]:
    """The test cases a contract carries for its own rules, so every rule is tested with its file.

    The suite's ``meta.examples`` gives the ``period`` the cases are for and a ``row`` that passes every
    rule, as staged (after minimisation: identifiers are any text, dates ISO, a missing value null). Each
    rule's ``meta.examples`` has a ``pass`` and a ``fail`` case::

        "examples": {
          "pass": {"rows": [{"referral_source": "10"}]},
          "fail": {"rows": [{}, {"referral_source": "11"}], "row_numbers": [2]}
        }

    A case's ``rows`` are staged in order (row 1 first), each being the suite's ``row`` with the given
    values changed. ``row_numbers`` (fail cases) are the rows the report must name; ``volume_baseline``
    is the last accepted return's volume, for volume rules.
    """
    from partnerflow.core.periods import Period

    contract = read_contract(dataset_id, directory=directory)
    suite = _read_json(contract.path)
    shared = suite.get("meta", {}).get("examples")
    if not isinstance(shared, dict) or not isinstance(shared.get("row"), dict) or "period" not in shared:
        raise ContractError(f"{contract.path}: meta.examples needs a 'period' and a 'row' that passes every rule")
    try:
        period = Period.from_id(shared["period"])
    except (TypeError, ValueError):
        raise ContractError(f"{contract.path}: meta.examples.period must be a period id like 2026Q3") from None
    found = []
    for rule, raw in zip(contract.rules, suite["expectations"], strict=True):
        cases = raw.get("meta", {}).get("examples") or {}
        if not isinstance(cases, dict) or set(cases) - set(OUTCOMES):
            raise ContractError(f"{contract.path}: rule {rule.code}: examples must be {{'pass': ..., 'fail': ...}}")
        for expect, case in cases.items():
            found.append(_example(contract.path, rule.code, expect, case, period, shared["row"]))
    return tuple(found)


def _example(path: Path, code: str, expect: str, case: Any, period: Period, row: dict[str, Any]) -> Example:
    where = f"{path}: rule {code} {expect} example"
    if not isinstance(case, dict) or set(case) - {"rows", "row_numbers", "volume_baseline"}:
        raise ContractError(f"{where}: must be an object with 'rows' (and 'row_numbers', 'volume_baseline')")
    rows = case.get("rows")
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
        raise ContractError(f"{where}: 'rows' must be a list of objects")
    numbers = case.get("row_numbers")
    if numbers is not None and not (isinstance(numbers, list) and all(isinstance(n, int) for n in numbers)):
        raise ContractError(f"{where}: 'row_numbers' must be a list of row numbers")
    baseline = case.get("volume_baseline")
    if baseline is not None and not isinstance(baseline, int | float):
        raise ContractError(f"{where}: 'volume_baseline' must be a number")
    return Example(
        code=code,
        expect=expect,  # type: ignore[arg-type]
        period=period,
        rows=tuple({**row, **changes} for changes in rows),
        row_numbers=tuple(numbers) if numbers is not None else None,
        volume_baseline=baseline,
    )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ContractError(f"{path}: cannot read the contract ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise ContractError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno})") from None


def _dates(path: Path, raw: Any) -> dict[str, RelativeDate]:
    if not isinstance(raw, dict):
        raise ContractError(f"{path}: meta.dates must map parameter names to dates relative to the period")
    dates = {}
    for name, spec in raw.items():
        where = f"{path}: meta.dates.{name}"
        if not IDENTIFIER.match(str(name)) or name in SUITE_PARAMETERS:
            raise ContractError(
                f"{where}: must be a new parameter name (lower case, not {', '.join(SUITE_PARAMETERS)})"
            )
        if not isinstance(spec, dict) or spec.get("from") not in PERIOD_PARAMETERS:
            raise ContractError(f"{where}: needs 'from': one of {', '.join(PERIOD_PARAMETERS)}")
        offsets = {k: v for k, v in spec.items() if k != "from"}
        if set(offsets) - set(DATE_UNITS) or not all(isinstance(v, int) for v in offsets.values()):
            raise ContractError(f"{where}: offsets must be whole numbers of {', '.join(DATE_UNITS)}")
        dates[name] = RelativeDate(base=spec["from"], **offsets)
    return dates


def _rule(path: Path, position: int, raw: Any, parameters: set[str]) -> Rule:
    where = f"{path}: expectation {position}"
    if not isinstance(raw, dict):
        raise ContractError(f"{where}: must be an object")
    meta: dict[str, Any] = raw["meta"] if isinstance(raw.get("meta"), dict) else {}
    code = meta.get("code")
    if isinstance(code, str) and code:
        where = f"{path}: rule {code}"
    if unknown := set(raw) - EXPECTATION_KEYS:
        raise ContractError(f"{where}: unknown keys {sorted(unknown)}")
    if not isinstance(raw.get("type"), str) or not isinstance(raw.get("kwargs"), dict):
        raise ContractError(f"{where}: needs a 'type' (the GX expectation) and 'kwargs' (an object)")
    missing = [k for k in ("code", "message", "severity") if not meta.get(k)]
    if "columns" not in meta:
        missing.append("columns")
    if missing:
        raise ContractError(f"{where}: meta lacks {', '.join(missing)}")
    if not isinstance(code, str) or not RULE_CODE.match(code):
        raise ContractError(f"{where}: code must look like REF-001")
    if meta["severity"] not in SEVERITIES:
        raise ContractError(f"{where}: severity must be one of {', '.join(SEVERITIES)}")
    if not isinstance(meta["message"], str):
        raise ContractError(f"{where}: message must be text")
    columns = meta["columns"]
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise ContractError(f"{where}: columns must be a list of column names")
    named = _columns_named(raw["kwargs"])
    if named and set(named) != set(columns):
        raise ContractError(f"{where}: columns {columns} differ from the columns its kwargs check {named}")
    used = _parameters_used(raw["kwargs"])
    if unknown_parameters := sorted(used - parameters):
        raise ContractError(
            f"{where}: unknown $PARAMETER {unknown_parameters}; available: {', '.join(sorted(parameters))}"
        )
    return Rule(
        code=code,
        message=meta["message"],
        columns=tuple(columns),
        severity=meta["severity"],
        expectation_type=raw["type"],
        kwargs=raw["kwargs"],
        volume=_volume(where, raw["type"], used, meta.get("volume")),
    )


def _volume(where: str, expectation_type: str, parameters: set[str], raw: Any) -> Volume | None:
    uses_volume = bool(parameters & set(VOLUME_PARAMETERS))
    if not uses_volume and raw is None:
        return None
    if not uses_volume or expectation_type not in VOLUME_TYPES:
        raise ContractError(
            f"{where}: a volume rule is one of {', '.join(VOLUME_TYPES)} with min_value/max_value "
            f"{{'$PARAMETER': 'volume_min'/'volume_max'}} and meta.volume"
        )
    if not isinstance(raw, dict) or set(raw) != {"min_ratio", "max_ratio"}:
        raise ContractError(f"{where}: meta.volume must be {{'min_ratio': 0.5, 'max_ratio': 2.0}}")
    low, high = raw["min_ratio"], raw["max_ratio"]
    if not all(isinstance(v, int | float) for v in (low, high)) or not 0 <= low <= 1 <= high:
        raise ContractError(f"{where}: meta.volume needs 0 <= min_ratio <= 1 <= max_ratio")
    return Volume(min_ratio=float(low), max_ratio=float(high))


def _build_suite(name: str, rules: tuple[Rule, ...]) -> ExpectationSuite:
    import great_expectations as gx
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    expectations = []
    for rule in rules:
        configuration = ExpectationConfiguration(
            type=rule.expectation_type,
            kwargs=dict(rule.kwargs),
            meta={"code": rule.code, "severity": rule.severity, "columns": list(rule.columns), "message": rule.message},
            severity=GX_SEVERITY[rule.severity],  # type: ignore[arg-type]  # GX accepts the enum's values
        )
        try:
            expectations.append(configuration.to_domain_obj())
        except Exception as exc:
            reason = " ".join(str(exc).split())
            raise ContractError(
                f"contract {name!r} rule {rule.code}: GX does not understand {rule.expectation_type!r}: {reason}"
            ) from None
    suite = gx.ExpectationSuite(name=name, expectations=expectations)
    built = [(e.expectation_type, (e.meta or {}).get("code")) for e in suite.expectations]
    wanted = [(r.expectation_type, r.code) for r in rules]
    if built != wanted:
        raise ContractError(f"contract {name!r}: GX kept {len(built)} of its {len(wanted)} rules")
    return suite


def _columns_named(kwargs: dict[str, Any]) -> list[str]:
    named: list[str] = []
    for key in COLUMN_KWARGS:
        value = kwargs.get(key)
        named.extend(value if isinstance(value, list) else [value] if isinstance(value, str) else [])
    return named


def _parameters_used(kwargs: dict[str, Any]) -> set[str]:
    return {v["$PARAMETER"] for v in kwargs.values() if isinstance(v, dict) and "$PARAMETER" in v}


def _split_table(table: str) -> tuple[str, str]:
    schema, _, name = table.rpartition(".")
    schema = schema or STAGING_SCHEMA
    if not IDENTIFIER.match(schema) or not IDENTIFIER.match(name):
        raise ValueError(f"{table!r} is not a table name like staging.referrals_f12")
    return schema, name


def _with_search_path(url: str, schema: str) -> str:
    """``url`` with the staging schema first on PostgreSQL's search path (GX 1.14+ deprecates
    ``schema_name`` on table assets in favour of the connection's own schema)."""
    import sqlalchemy as sa

    parsed = sa.engine.make_url(url)
    options = f"{parsed.query.get('options', '')} -csearch_path={schema}".strip()
    return parsed.update_query_dict({"options": options}).render_as_string(hide_password=False)


def _raised_exception(exception_info: Any) -> str | None:
    """The redacted reason if GX raised while evaluating a rule; None if it ran."""
    if not isinstance(exception_info, dict):
        return None
    # Either one {raised_exception, exception_message, ...}, or one of those per metric that failed.
    infos = [exception_info] if "raised_exception" in exception_info else list(exception_info.values())
    for info in infos:
        if isinstance(info, dict) and info.get("raised_exception"):
            return _redacted(info.get("exception_message") or "unknown error")
    return None


def _redacted(error: BaseException | str) -> str:
    """An error's first line, without quoted literals or URLs (they can hold values or passwords)."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    text = re.sub(r"\w+(\+\w+)?://\S+", "<url>", text)
    text = re.sub(r"\"[^\"]*\"|'[^']*'|\([^()]*=[^()]*\)", "…", text)
    if isinstance(error, BaseException):
        text = f"{type(error).__name__}: {text}"
    return text[:300]


def _checked(gx_result: Any) -> list[tuple[str, bool, Any]]:
    """``(rule code, success, the GX result)`` for each rule a validation checked."""
    checked = []
    for result in gx_result.results:
        configuration = result.expectation_config
        assert configuration is not None, "GX reports each result with the expectation it checked"
        checked.append((configuration.meta["code"], bool(result.success), result))
    return checked


def _raise_if_unevaluated(rule: Rule, result: Any, dataset: Dataset, schema: str, name: str) -> None:
    if reason := _raised_exception(result.exception_info):
        raise ContractConfigurationError(
            f"contract {dataset.suite_name!r} rule {rule.code} ({rule.expectation_type} on "
            f"{', '.join(rule.columns) or 'the whole table'}) could not be evaluated on {schema}.{name}: "
            f"{reason}"
        )


def _row_numbers(counts: dict[str, Any]) -> tuple[int, ...]:
    """Row numbers from GX's index list, which (with exclude_unexpected_values) is [{"row_number": [...]}]."""
    numbers: set[int] = set()
    for entry in counts.get("partial_unexpected_index_list") or counts.get("unexpected_index_list") or []:
        value = entry.get(ROW_NUMBER) if isinstance(entry, dict) else None
        for number in value if isinstance(value, list) else [value]:
            if number is not None:
                numbers.add(int(number))
    return tuple(sorted(numbers)[:ROW_NUMBERS_CAP])


def _duplicate_row_numbers(execution_engine: Any, staged: Any, columns: list[str]) -> tuple[int, ...]:
    import sqlalchemy as sa

    keys = [staged.c[c] for c in columns]
    repeated = sa.select(*keys).group_by(*keys).having(sa.func.count() > 1)
    query = (
        sa.select(staged.c[ROW_NUMBER])
        .where(sa.tuple_(*keys).in_(repeated))
        .order_by(staged.c[ROW_NUMBER])
        .limit(ROW_NUMBERS_CAP)
    )
    return tuple(int(n) for n in execution_engine.execute_query(query).scalars())
