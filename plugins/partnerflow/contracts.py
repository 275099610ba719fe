"""Data contracts: one Great Expectations suite per dataset, checked against a staged table in PostgreSQL.

A contract is ``expectations/<dataset>.json``: a GX 1.x expectation suite as GX serialises it (``name``,
``meta``, ``expectations`` of ``type`` and ``kwargs``), where each expectation's ``meta`` holds our rule:

- ``code``: stable, quoted to partners and in the ledger (``REF-001``);
- ``message``: plain English for the partner: what is wrong and how to fix it (never a value);
- ``columns``: the columns the rule checks (must be the ones its kwargs name);
- ``severity``: ``error`` blocks publication, ``warning`` publishes and is reported.

Rules may use ``{"$PARAMETER": "period_start"}`` or ``period_end``; ``validate_staged`` fills them in.

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

import json
import logging
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from partnerflow.paths import repo_path

if TYPE_CHECKING:
    from great_expectations.core import ExpectationSuite

    from partnerflow.calendar import Period
    from partnerflow.config import Dataset

log = logging.getLogger(__name__)

Severity = Literal["error", "warning"]
SEVERITIES: tuple[Severity, ...] = ("error", "warning")
GX_SEVERITY = {"error": "critical", "warning": "warning"}
SUITE_PARAMETERS = ("period_start", "period_end")
ROW_NUMBER = "row_number"
ROW_NUMBERS_CAP = 1000
RULE_CODE = re.compile(r"^[A-Z][A-Z0-9]*-\d{3}$")
EXPECTATION_KEYS = {"type", "kwargs", "meta", "notes", "description"}
SUITE_KEYS = {"name", "meta", "expectations", "notes"}
COLUMN_KWARGS = ("column", "column_A", "column_B", "column_list")
STAGING_SCHEMA = "staging"
IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")

# SUMMARY is the lowest format that returns row indexes; these options strip the values from it.
RESULT_FORMAT = {
    "result_format": "SUMMARY",
    "unexpected_index_column_names": [ROW_NUMBER],
    "partial_unexpected_count": ROW_NUMBERS_CAP,
    "exclude_unexpected_values": True,
    "return_unexpected_index_query": False,
}


class ContractError(Exception):
    """A contract file is missing, malformed, or holds a rule GX does not understand: it is refused."""


class ContractConfigurationError(Exception):
    """GX could not evaluate the contract against the staged table (wrong column type, missing table...).

    An engineer's problem, never reported to the partner as a failure of their file.
    """


@dataclass(frozen=True, kw_only=True)
class Rule:
    """One rule of a contract, as written in its file."""

    code: str
    message: str
    columns: tuple[str, ...]
    severity: Severity
    expectation_type: str
    kwargs: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class RuleFailure:
    """A rule that some rows broke: how many, and (up to ``ROW_NUMBERS_CAP``) which, by row number."""

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


def contract_path(dataset_id: str, *, directory: Path | None = None) -> Path:
    return (directory or repo_path("expectations")) / f"{dataset_id}.json"


def read_rules(dataset_id: str, *, directory: Path | None = None) -> tuple[Rule, ...]:
    """The rules of ``expectations/<dataset_id>.json``, checked for shape (without importing GX).

    Raises ContractError naming the file and the rule when the file is missing or malformed.
    """
    path = contract_path(dataset_id, directory=directory)
    try:
        suite = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ContractError(f"{path}: cannot read the contract ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise ContractError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno})") from None
    if not isinstance(suite, dict) or not isinstance(suite.get("expectations"), list):
        raise ContractError(f"{path}: must be a GX suite: an object with a list of 'expectations'")
    if unknown := set(suite) - SUITE_KEYS:
        raise ContractError(f"{path}: unknown keys {sorted(unknown)}")
    if suite.get("name") != dataset_id:
        raise ContractError(f"{path}: 'name' must be {dataset_id!r}, the file's name")
    rules = [_rule(path, i, raw) for i, raw in enumerate(suite["expectations"], start=1)]
    if not rules:
        raise ContractError(f"{path}: has no rules")
    codes = [r.code for r in rules]
    if repeated := sorted({c for c in codes if codes.count(c) > 1}):
        raise ContractError(f"{path}: rule codes must be unique; repeated: {', '.join(repeated)}")
    return tuple(rules)


def load_suite(dataset_id: str, *, directory: Path | None = None) -> ExpectationSuite:
    """The GX suite of ``expectations/<dataset_id>.json``; refuses (ContractError) any rule GX would drop."""
    return _build_suite(dataset_id, read_rules(dataset_id, directory=directory))


def validate_staged(*, warehouse_url: str, table: str, dataset: Dataset, period: Period) -> ContractReport:
    """Check the staged table against ``dataset``'s contract, in PostgreSQL, for ``period``.

    ``table`` is ``staging.<name>`` (or a bare name in the staging schema) with a ``row_number`` column.
    Raises ContractError for a refused contract and ContractConfigurationError when GX cannot evaluate a
    rule (a type mismatch, a missing column or table): an engineer's problem, not the partner's.
    """
    rules = read_rules(dataset.suite_name)
    loaded = {c.name for c in dataset.loaded_columns}
    for rule in rules:
        if unknown := [c for c in rule.columns if c not in loaded]:
            raise ContractError(
                f"contract {dataset.suite_name!r} rule {rule.code} checks {unknown}, "
                f"which dataset {dataset.id!r} does not load"
            )
    suite = _build_suite(dataset.suite_name, rules)
    schema, name = _split_table(table)
    by_code = {rule.code: rule for rule in rules}

    import great_expectations as gx
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
        gx_result = batch.validate(
            suite,
            result_format=RESULT_FORMAT,
            expectation_parameters={"period_start": period.start, "period_end": period.end},
        )
        outcomes = []
        for result in gx_result.results:
            rule = by_code[result.expectation_config.meta["code"]]
            if reason := _raised_exception(result.exception_info):
                raise ContractConfigurationError(
                    f"contract {dataset.suite_name!r} rule {rule.code} ({rule.expectation_type} on "
                    f"{', '.join(rule.columns)}) could not be evaluated on {schema}.{name}: {reason}"
                )
            counts = result.result or {}
            outcomes.append((rule, bool(result.success), counts.get("unexpected_count"), _row_numbers(counts)))
        del gx_result

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


def _rule(path: Path, position: int, raw: Any) -> Rule:
    where = f"{path}: expectation {position}"
    if not isinstance(raw, dict):
        raise ContractError(f"{where}: must be an object")
    meta = raw.get("meta") if isinstance(raw.get("meta"), dict) else {}
    code = meta.get("code")
    if isinstance(code, str) and code:
        where = f"{path}: rule {code}"
    if unknown := set(raw) - EXPECTATION_KEYS:
        raise ContractError(f"{where}: unknown keys {sorted(unknown)}")
    if not isinstance(raw.get("type"), str) or not isinstance(raw.get("kwargs"), dict):
        raise ContractError(f"{where}: needs a 'type' (the GX expectation) and 'kwargs' (an object)")
    missing = [k for k in ("code", "message", "columns", "severity") if not meta.get(k)]
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
    parameters = _parameters_used(raw["kwargs"])
    if unknown_parameters := sorted(parameters - set(SUITE_PARAMETERS)):
        raise ContractError(
            f"{where}: unknown $PARAMETER {unknown_parameters}; available: {', '.join(SUITE_PARAMETERS)}"
        )
    return Rule(
        code=code,
        message=meta["message"],
        columns=tuple(columns),
        severity=meta["severity"],
        expectation_type=raw["type"],
        kwargs=raw["kwargs"],
    )


def _build_suite(name: str, rules: tuple[Rule, ...]) -> ExpectationSuite:
    import great_expectations as gx
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    expectations = []
    for rule in rules:
        configuration = ExpectationConfiguration(
            type=rule.expectation_type,
            kwargs=dict(rule.kwargs),
            meta={"code": rule.code, "severity": rule.severity, "columns": list(rule.columns), "message": rule.message},
            severity=GX_SEVERITY[rule.severity],
        )
        try:
            expectations.append(configuration.to_domain_obj())
        except Exception as exc:
            reason = " ".join(str(exc).split())
            raise ContractError(
                f"contract {name!r} rule {rule.code}: GX does not understand {rule.expectation_type!r}: {reason}"
            ) from None
    suite = gx.ExpectationSuite(name=name, expectations=expectations)
    built = [(e.expectation_type, e.meta.get("code")) for e in suite.expectations]
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
