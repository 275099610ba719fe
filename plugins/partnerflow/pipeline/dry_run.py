"""``partnerflow validate FEED FILE``: a dry run of one local file against its feed's contract.

The file is parsed and minimised exactly as intake does it, staged in a scratch schema of its own, checked
against the contract in PostgreSQL, and the scratch schema is dropped. It prints the report the partner
would get (rule, message, columns, failing rows, first row numbers) and exits 1 if the file would be
rejected, 2 for an engineer's problem (unknown feed, unreadable contract, a rule GX cannot evaluate).
Nothing is landed, recorded or sent.

- With ``PARTNERFLOW_WAREHOUSE_URL`` set it uses that warehouse, and compares the file's volume with the
  feed's last accepted return there. Without it, it starts a temporary embedded PostgreSQL and removes it
  afterwards, so an engineer can run it anywhere.
- Without ``PARTNERFLOW_PSEUDONYM_KEY`` it pseudonymises with a random key used once: pseudonyms only
  need to be consistent within the file for the checks, and nothing is kept.

Only standard-library modules are imported at the top: the ``partnerflow`` command imports this module
for every subcommand.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import secrets
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from partnerflow.core.devtools import dev_tool
from partnerflow.core.errors import TerminalError

if TYPE_CHECKING:
    import argparse

    from partnerflow.core.config import Dataset, Feed
    from partnerflow.core.periods import Period

log = logging.getLogger(__name__)

ACCEPTED, REJECTED, ENGINEER_PROBLEM = 0, 1, 2
SCRATCH_PREFIX = "scratch_validate_"
ROW_NUMBERS_SHOWN = 20


class DryRunError(TerminalError):
    """The dry run could not start: unknown feed, unreadable file, no period. The message says what to do."""


@dataclass(frozen=True, kw_only=True)
class DryRun:
    """What checking one local file found. ``report`` has the shape stored in ``ops.validation_reports``."""

    feed_id: str
    period: Period
    report: dict[str, Any]
    volume_baseline: float | None

    @property
    def passed(self) -> bool:
        return bool(self.report.get("passed"))


def dry_run(
    *,
    feed: Feed,
    dataset: Dataset,
    path: Path,
    period: Period,
    warehouse_url: str,
    key: bytes,
    volume_baseline: float | None = None,
    contracts_dir: Path | None = None,
) -> DryRun:
    """Stage ``path`` in a scratch schema of ``warehouse_url``, check it, drop the schema, return the report.

    Raises ContractError / ContractConfigurationError (engineers' problems) as ``validate_staged`` does.
    """
    import sqlalchemy as sa

    from partnerflow.contracts import suites
    from partnerflow.intake import reader

    schema = SCRATCH_PREFIX + uuid.uuid4().hex[:12]
    engine = sa.create_engine(warehouse_url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
        with _readable_by_intake(path, feed) as staged_path:
            try:
                staged = reader.stage(
                    engine,
                    path=staged_path,
                    file_id=0,
                    feed=feed,
                    dataset=dataset,
                    key=key,
                    table=f"{schema}.{dataset.id}",
                )
            except reader.FileRejected as rejected:
                return DryRun(feed_id=feed.id, period=period, report=rejected.report, volume_baseline=None)
        checked = suites.validate_staged(
            warehouse_url=warehouse_url,
            table=staged.table,
            dataset=dataset,
            period=period,
            volume_baseline=volume_baseline,
            directory=contracts_dir,
        )
        report = staged.with_contract(json.loads(checked.to_json()))
        return DryRun(feed_id=feed.id, period=period, report=report, volume_baseline=volume_baseline)
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        engine.dispose()


def render(run: DryRun, *, feed: Feed, source_name: str) -> str:
    """The report as a person reads it: what the partner's email would list, rule by rule."""
    report = run.report
    failures = report.get("failures", [])
    errors = [f for f in failures if f.get("severity", "error") == "error"]
    warnings = [f for f in failures if f.get("severity") == "warning"]
    notes = [f for f in failures if f.get("severity") == "info"]
    lines = [f"{feed.id}: {source_name} for {run.period.label}"]
    if report.get("stage") == "intake":
        lines.append(f"The file could not be read as the feed declares ({_rows(report.get('rows_checked', 0))} read).")
    else:
        lines.append(
            f"Checked {_rows(report.get('rows_checked', 0))} against {report.get('rules_checked', 0)} rules; "
            + (
                f"volume compared with the last accepted return ({run.volume_baseline:,.0f})."
                if run.volume_baseline is not None
                else "volume not checked (no accepted return to compare with)."
            )
        )
    for failure in errors + warnings:
        lines += ["", _failure_heading(failure, report.get("rows_checked")), f"    {failure.get('message', '')}"]
        numbers = list(failure.get("row_numbers", []))
        if numbers:
            shown = ", ".join(str(n) for n in numbers[:ROW_NUMBERS_SHOWN])
            more = max(int(failure.get("failing_rows", 0)), len(numbers)) - min(len(numbers), ROW_NUMBERS_SHOWN)
            lines.append(f"    rows {shown}" + (f" and {more:,} more" if more else ""))
    for note in notes:
        lines += ["", f"{'NOTE':<7} {note.get('code', '')}  how the file was read", f"    {note.get('message', '')}"]
    lines.append("")
    if run.passed:
        lines.append("Result: would be ACCEPTED" + (f", with {_count(len(warnings), 'warning')}." if warnings else "."))
    else:
        lines.append(
            f"Result: would be REJECTED: {_count(len(errors), 'error')}"
            + (f" and {_count(len(warnings), 'warning')}." if warnings else ".")
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """The ``partnerflow validate`` command (arguments: feed, file, --period, --contracts, --json)."""
    handlers = {handler: handler.level for handler in logging.getLogger().handlers}
    for handler in handlers:  # the report is the output: no INFO logs from GX or intake
        handler.setLevel(max(handler.level, logging.WARNING))
    try:
        return _run(args)
    finally:
        for handler, level in handlers.items():
            handler.setLevel(level)


def _run(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import OperationalError

    from partnerflow.contracts import suites
    from partnerflow.core.config import ConfigError, partnership

    try:
        config = partnership()
        feed = _feed(config, args.feed)
        dataset = config.dataset(feed.dataset)
        path = Path(args.file)
        if not path.is_file():
            raise DryRunError(f"{path}: no such file")
        period = _period(config, feed, path, args.period)
        key = _pseudonym_key()
        with scratch_warehouse() as (warehouse_url, has_history):
            baseline = _volume_baseline(warehouse_url, feed, dataset, args.contracts) if has_history else None
            result = dry_run(
                feed=feed,
                dataset=dataset,
                path=path,
                period=period,
                warehouse_url=warehouse_url,
                key=key,
                volume_baseline=baseline,
                contracts_dir=args.contracts,
            )
    except (suites.ContractError, suites.ContractConfigurationError) as exc:  # terminal too: caught first
        print(f"partnerflow validate: the contract, not the file, needs fixing: {exc}", file=sys.stderr)
        return ENGINEER_PROBLEM
    except (DryRunError, ConfigError, TerminalError) as exc:
        print(f"partnerflow validate: {exc}", file=sys.stderr)
        return ENGINEER_PROBLEM
    except OperationalError:
        # Not the exception's text: it can hold the connection URL and its password.
        print("partnerflow validate: cannot reach the warehouse (PARTNERFLOW_WAREHOUSE_URL)", file=sys.stderr)
        return ENGINEER_PROBLEM
    print(json.dumps(result.report, indent=2) if args.json else render(result, feed=feed, source_name=path.name))
    return ACCEPTED if result.passed else REJECTED


@contextmanager
def scratch_warehouse() -> Iterator[tuple[str, bool]]:
    """``(url, has_history)``: the configured warehouse, or a temporary embedded PostgreSQL from the
    development tools (migrated, and removed afterwards) when ``PARTNERFLOW_WAREHOUSE_URL`` is not set."""
    url = os.environ.get("PARTNERFLOW_WAREHOUSE_URL")
    if url:
        yield url, True
        return
    temporary = dev_tool("scratch_warehouse")
    if temporary is None:
        raise DryRunError(
            "PARTNERFLOW_WAREHOUSE_URL is not set: point it at a warehouse (the check uses a scratch schema "
            "there and drops it), or install the development tools (`uv sync` in a checkout) for a temporary one"
        )
    _say("PARTNERFLOW_WAREHOUSE_URL is not set: starting a temporary PostgreSQL for this check")
    with temporary() as url:
        yield url, False


def _feed(config: Any, feed_id: str) -> Feed:
    try:
        return config.feed(feed_id)
    except KeyError:
        from partnerflow.core.config import did_you_mean

        known = [f.id for f in config.feeds]
        raise DryRunError(f"no feed {feed_id!r} in the configuration{did_you_mean(feed_id, known)}") from None


def _period(config: Any, feed: Feed, path: Path, given: str | None) -> Period:
    """``--period``, else the period in the file's name (``referrals_2026Q3.csv``), of the feed's calendar."""
    from partnerflow.core.periods import NOT_ASCII_REASON, ascii_folded, period_id_regex, schedule

    feed_schedule = schedule(config, feed)
    if not given:
        period_in_name = rf"(?<![0-9A-Za-z])({period_id_regex(feed_schedule.kind)})(?![0-9])"
        found = set(re.findall(period_in_name, path.name))
        if len(found) != 1:
            example = feed_schedule.collecting_period(dt.date.today()).id
            why = f" ({NOT_ASCII_REASON})" if not found and re.search(period_in_name, ascii_folded(path.name)) else ""
            raise DryRunError(
                f"cannot tell the period from the name {path.name!r}{why}: give it with --period {example}"
            )
        (given,) = found
    try:
        return feed_schedule.period(given)
    except ValueError as exc:
        raise DryRunError(str(exc)) from None


def _pseudonym_key() -> bytes:
    from partnerflow.intake.minimise import KEY_ENV, PseudonymKeyMissing, pseudonym_key

    if not os.environ.get(KEY_ENV):
        _say(f"{KEY_ENV} is not set: pseudonymising with a random key used for this check only")
        return secrets.token_bytes(32)
    try:
        return pseudonym_key()
    except PseudonymKeyMissing as exc:
        raise DryRunError(str(exc)) from None


def _volume_baseline(warehouse_url: str, feed: Feed, dataset: Dataset, contracts_dir: Path | None) -> float | None:
    """The feed's last accepted volume in the warehouse, or None (also when it has no ledger yet)."""
    import sqlalchemy as sa

    from partnerflow.pipeline.ingest import volume_baseline
    from partnerflow.warehouse import ledger

    engine = sa.create_engine(warehouse_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            if not ledger.exists(conn):
                return None
            return volume_baseline(conn, feed.id, dataset, contracts_dir)
    finally:
        engine.dispose()


@contextmanager
def _readable_by_intake(path: Path, feed: Feed) -> Iterator[Path]:
    """``path`` as intake reads a landed file. An API feed's return may be given as the partner's records
    (a JSON list), one API page (``{"records": [...]}``) or a landed document (``{"pages": [...]}``)."""
    if feed.format.kind != "json":
        yield path
        return
    try:
        document = json.loads(path.read_bytes())
    except ValueError:
        yield path  # intake reports it as FILE-004, as it would for a partner
        return
    if isinstance(document, list):
        document = {"pages": [{"records": document}]}
    elif isinstance(document, dict) and "pages" not in document and "records" in document:
        document = {"pages": [document]}
    with tempfile.TemporaryDirectory(prefix="partnerflow-validate-") as folder:
        landed = Path(folder) / "return.json"
        landed.write_text(json.dumps(document), encoding="utf-8")
        yield landed


def _failure_heading(failure: dict[str, Any], rows_checked: Any) -> str:
    severity = str(failure.get("severity", "error")).upper()
    columns = ", ".join(failure.get("columns", [])) or "the whole file"
    failing = int(failure.get("failing_rows", 0))
    affected = f"{_rows(failing)}" + (f" of {int(rows_checked):,}" if rows_checked and failing else "")
    return f"{severity:<7} {failure.get('code', '')}  {columns}: " + (affected if failing else "applies to the file")


def _rows(n: Any) -> str:
    return _count(int(n or 0), "row")


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
