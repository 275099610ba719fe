"""The ``partnerflow`` command: check the config, migrate the warehouse, show status, run the demo.

Every expected failure (a setting missing, an invalid configuration, a database down) ends in one sentence
on stderr and a documented exit code, never a traceback; each subcommand's --help lists its exit codes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

from partnerflow.cli import calendar
from partnerflow.core.devtools import dev_tool
from partnerflow.pipeline import backfill as backfill_command
from partnerflow.pipeline import dry_run as validate_command
from partnerflow.report import approval as approve_pack_command

EXIT_CODES = {
    "check-config": "0 the file is valid; 1 it is not (every problem is listed, with file, line and key path)",
    "migrate": "0 migrated (or up to date); 2 the warehouse is not set or not reachable",
    "status": "0 shown; 1 the configuration is invalid; 2 the warehouse is not set or not reachable",
    "report": "0 shown; 1 no such file, or the configuration is invalid; 2 the warehouse is not set or not reachable",
    "calendar": "0 shown; 1 unknown feed, a name that fits no feed, or --to before --from; 2 a usage error",
    "demo": "0 the demo played through; 2 the development tools are not installed",
    "validate": "0 the file would be accepted; 1 it would be rejected; 2 an engineer's problem (unknown feed, "
    "no such file, invalid contract or configuration, warehouse not reachable)",
    "backfill": "0 every return was published (or already loaded); 1 a return was rejected or is not of a past period",
    "approve-pack": "0 approved; 1 nothing to approve, or an invalid period; "
    "2 the warehouse is not set or not reachable",
}


def _subcommand(commands: argparse._SubParsersAction, name: str, *, help: str, description: str, example: str):
    """A subcommand whose --help has a description, an example and its exit codes."""
    return commands.add_parser(
        name,
        help=help,
        description=description,
        epilog=f"example:\n  {example}\n\nexit codes: {EXIT_CODES[name]}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="partnerflow",
        description="partnerflow: check the configuration, migrate the warehouse, see where every return stands,\n"
        "read a file's report, dry-run a partner's file, approve the Board pack, run the demo.",
        epilog="example:\n  partnerflow status\n\n"
        "Each command's --help says what it does and what its exit codes mean.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = _subcommand(
        commands,
        "check-config",
        help="validate a partnership file",
        description="Validate a partnership file and list every problem in it, each with its line and key path.",
        example="partnerflow check-config config/partnership.yaml",
    )
    check.add_argument("path", nargs="?", type=Path, help="default: $PARTNERFLOW_CONFIG or config/partnership.yaml")

    _subcommand(
        commands,
        "migrate",
        help="apply the warehouse migrations (PARTNERFLOW_WAREHOUSE_URL)",
        description="Apply the warehouse migrations not yet applied, then recreate the marts views.\n"
        "The warehouse is PARTNERFLOW_WAREHOUSE_URL.",
        example="PARTNERFLOW_WAREHOUSE_URL=postgresql+psycopg://partnerflow@db:5432/warehouse partnerflow migrate",
    )

    status = _subcommand(
        commands,
        "status",
        help="every return's status: feed x period",
        description="Every return, feed x period, newest first: on time, late by N working days, overdue,\n"
        "rejected (rules, rows, when the partner was told), accepted with warnings, superseded versions and\n"
        "near-miss uploads. The same statuses as the Submissions page and the weekly digest.",
        example="partnerflow status --json",
    )
    status.add_argument("--json", action="store_true", help="machine-readable output")

    report = _subcommand(
        commands,
        "report",
        help="one file's report as the partner got it, its ledger history and e-mails",
        description="Print the stored, value-free validation report of a received file (as the partner got it),\n"
        "its ledger history and the e-mails it caused (subjects only). FILE_ID is the number in\n"
        "`partnerflow status` and on the Submissions page.",
        example="partnerflow report 2",
    )
    report.add_argument("file_id", metavar="FILE_ID", type=int, help="the received file's number")
    report.add_argument("--json", action="store_true", help="machine-readable output")

    calendar.add_arguments(
        _subcommand(
            commands,
            "calendar",
            help="what is due when; which period a file is for",
            description="The partnership's calendar: periods ending, due dates, reminder days and Board dates\n"
            "(the next 90 days by default), or which feed and period a file name belongs to.",
            example="partnerflow calendar --from 2026-10-01 --to 2026-12-31 --feed police_ppn",
        )
    )
    demo = _subcommand(
        commands,
        "demo",
        help="start the embedded stack and play one quarter end to end",
        description="Start the embedded stack (PostgreSQL, SFTP, partner API, e-mail sink, Airflow) and play\n"
        "one quarter end to end. Needs the development tools (a checkout with `make demo`).",
        example="partnerflow demo --keep-running",
    )
    demo.add_argument("--keep-running", action="store_true", help="leave the stack and the Airflow UI up")

    validate = _subcommand(
        commands,
        "validate",
        help="dry-run a local file against its feed's contract; keeps nothing",
        description="Check a partner's file against its feed's contract as an ingest run would, and print the\n"
        "report the partner would get. Nothing is kept.",
        example="partnerflow validate council_referrals referrals_2026Q3.csv",
    )
    validate.add_argument("feed", help="the feed id, as in the configuration")
    validate.add_argument("file", type=Path, help="the return as the partner sends it (CSV, XLSX, JSON records)")
    validate.add_argument("--period", help="the period it is for, e.g. 2026Q3 (default: from the file name)")
    validate.add_argument("--contracts", type=Path, help="a folder of (draft) contracts instead of expectations/")
    validate.add_argument("--json", action="store_true", help="print the report as stored, in JSON")

    backfill_command.add_arguments(
        _subcommand(
            commands,
            "backfill",
            help="load past returns from a folder through the normal checks and publish; no e-mails for past periods",
            description="Replay a folder of past returns (named as each feed's files are) through landing, the\n"
            "ledger, the contract and publish, oldest period first. Only periods before the one being collected\n"
            "are loaded, and nobody is e-mailed about them. Running it again adds nothing.",
            example="partnerflow backfill returns/2024-2026 --feed council_referrals",
        )
    )

    approve = _subcommand(
        commands,
        "approve-pack",
        help="approve the Board pack waiting for a period, e.g. 2026Q3",
        description="Approve, as the officer, the Board pack draft waiting for a period; the board_pack DAG\n"
        "sends it to the Board when its day comes.",
        example="partnerflow approve-pack 2026Q3",
    )
    approve.add_argument("period", help="the period id, e.g. 2026Q3")

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for chatty in ("httpx", "asyncssh", "paramiko"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        message = expected_failure(exc)
        if message is None:
            raise
        print(f"partnerflow {args.command}: {message}", file=sys.stderr)
        return 1 if _is_config_error(exc) else 2


def expected_failure(exc: BaseException) -> str | None:
    """One sentence for a failure an operator can fix (settings, configuration, database); None otherwise.

    Never the database's own message: it can hold the connection URL and its password.
    """
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from partnerflow.warehouse import WarehouseNotConfigured

    if _is_config_error(exc):
        return str(exc)
    if isinstance(exc, WarehouseNotConfigured):
        return (
            "PARTNERFLOW_WAREHOUSE_URL is not set: point it at the warehouse database "
            "(postgresql+psycopg://user@host:port/db)."
        )
    if isinstance(exc, OperationalError):
        return f"cannot reach the warehouse at {_safe_url()}: is the database up, and the URL right?"
    if isinstance(exc, ProgrammingError) and "does not exist" in str(exc.orig):
        return f"the warehouse at {_safe_url()} is not migrated: run `partnerflow migrate` first."
    return None


def _is_config_error(exc: BaseException) -> bool:
    from partnerflow.core.config import ConfigError

    return isinstance(exc, ConfigError)


def _safe_url() -> str:
    """PARTNERFLOW_WAREHOUSE_URL's host, port and database, never its user's password."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    raw = os.environ.get("PARTNERFLOW_WAREHOUSE_URL", "")
    try:
        url = make_url(raw)
    except ArgumentError:
        return "PARTNERFLOW_WAREHOUSE_URL (not a database URL)"
    return f"{url.host or 'localhost'}:{url.port or 5432}/{url.database or ''}"


def _check_config(args) -> int:
    from partnerflow.core.config import ConfigError, config_path, load_config

    path = args.path or config_path()
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(
        f"{path}: OK — {config.short_name}: {len(config.partners)} partners, {len(config.feeds)} feeds, "
        f"{len(config.kpis)} KPIs"
    )
    problems = _check_sftp_connections(config)
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


def _check_sftp_connections(config) -> list[str]:
    """Every SFTP feed's Airflow connection set in the environment (``AIRFLOW_CONN_<ID>``, JSON or URI)
    must pin the server's host key; the problems found (connections elsewhere are checked when used)."""
    from partnerflow.core.config import SftpTransport
    from partnerflow.transport.pinning import HOW_TO_PIN, connection_extra_from_env, pin_problem

    problems = []
    for conn_id in sorted({f.transport.connection for f in config.feeds if isinstance(f.transport, SftpTransport)}):
        feeds = ", ".join(f.id for f in config.feeds if getattr(f.transport, "connection", None) == conn_id)
        variable = f"AIRFLOW_CONN_{conn_id.upper()}"
        value = os.environ.get(variable)
        if value is None:
            print(f"SFTP connection {conn_id} ({feeds}): not in the environment; its host key is checked when used")
            continue
        try:
            problem = pin_problem(connection_extra_from_env(value))
        except ValueError:
            problem = f"{variable} is neither a JSON connection nor a connection URI"
        if problem:
            problems.append(f"SFTP connection {conn_id} ({feeds}) would be refused: {problem}. {HOW_TO_PIN}")
        else:
            print(f"SFTP connection {conn_id} ({feeds}): host key pinned")
    return problems


def _migrate(args) -> int:
    from partnerflow import warehouse

    applied = warehouse.migrate(warehouse.engine())
    print("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))
    return 0


def _status(args) -> int:
    from partnerflow import warehouse
    from partnerflow.core.config import partnership
    from partnerflow.warehouse import status

    config = partnership()
    with _warehouse_environment():
        rows = status.matrix(warehouse.engine(), config)
    if args.json:
        print(json.dumps([r.as_dict() for r in rows], indent=2))
    else:
        print(status.render_table(rows))
    return 0


def _report(args) -> int:
    from partnerflow import warehouse
    from partnerflow.core.config import partnership
    from partnerflow.warehouse import status

    config = partnership()
    with _warehouse_environment(), warehouse.engine().connect() as conn:
        found = status.file_report(conn, config, args.file_id)
    if found is None:
        print(f"partnerflow report: there is no file {args.file_id} (see `partnerflow status`)", file=sys.stderr)
        return 1
    print(json.dumps(found.as_dict(), indent=2) if args.json else status.render_file_report(found))
    return 0


def _warehouse_environment() -> AbstractContextManager[None]:
    """``PARTNERFLOW_WAREHOUSE_URL`` as set; unset, the demo's warehouse when the development tools are here."""
    if os.environ.get("PARTNERFLOW_WAREHOUSE_URL"):
        return nullcontext()
    demo_warehouse = dev_tool("local_warehouse")
    if demo_warehouse is None:
        from partnerflow.warehouse import WarehouseNotConfigured

        raise WarehouseNotConfigured("PARTNERFLOW_WAREHOUSE_URL is not set")
    return demo_warehouse()


def _demo(args) -> int:
    run_demo = dev_tool("demo")
    if run_demo is None:
        print("partnerflow demo: needs the development tools (partnerflow-dev): run `make demo` in a checkout")
        return 2
    return run_demo(keep_running=args.keep_running)


COMMANDS = {"check-config": _check_config, "migrate": _migrate, "status": _status, "report": _report, "demo": _demo}
COMMANDS["calendar"] = calendar.run
COMMANDS["validate"] = validate_command.run
COMMANDS["approve-pack"] = approve_pack_command.run


def _backfill(args) -> int:
    with _warehouse_environment():
        return backfill_command.run(args)


COMMANDS["backfill"] = _backfill

if __name__ == "__main__":
    sys.exit(main())
