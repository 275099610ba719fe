"""The ``partnerflow`` command: check the config, migrate the warehouse, show status, run the demo."""

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="partnerflow", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    check = commands.add_parser("check-config", help="validate a partnership file")
    check.add_argument("path", nargs="?", type=Path, help="default: $PARTNERFLOW_CONFIG or config/partnership.yaml")

    commands.add_parser("migrate", help="apply the warehouse migrations (PARTNERFLOW_WAREHOUSE_URL)")

    status = commands.add_parser("status", help="the submissions matrix: feed x period")
    status.add_argument("--json", action="store_true", help="machine-readable output")

    calendar.add_arguments(commands.add_parser("calendar", help="what is due when; which period a file is for"))
    demo = commands.add_parser("demo", help="start the embedded stack and play one quarter end to end")
    demo.add_argument("--keep-running", action="store_true", help="leave the stack and the Airflow UI up")

    validate = commands.add_parser("validate", help="dry-run a local file against its feed's contract; keeps nothing")
    validate.add_argument("feed", help="the feed id, as in the configuration")
    validate.add_argument("file", type=Path, help="the return as the partner sends it (CSV, XLSX, JSON records)")
    validate.add_argument("--period", help="the period it is for, e.g. 2026Q3 (default: from the file name)")
    validate.add_argument("--contracts", type=Path, help="a folder of (draft) contracts instead of expectations/")
    validate.add_argument("--json", action="store_true", help="print the report as stored, in JSON")

    backfill_command.add_arguments(
        commands.add_parser(
            "backfill",
            help="load past returns from a folder through the normal checks and publish; no e-mails for past periods",
        )
    )

    approve = commands.add_parser("approve-pack", help="approve the Board pack waiting for a period, e.g. 2026Q3")
    approve.add_argument("period", help="the period id, e.g. 2026Q3")

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for chatty in ("httpx", "asyncssh", "paramiko"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        return 130


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
    return 0


def _migrate(args) -> int:
    from partnerflow import warehouse

    applied = warehouse.migrate()
    print("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))
    return 0


def _status(args) -> int:
    from partnerflow import warehouse
    from partnerflow.core.config import partnership
    from partnerflow.warehouse import status

    with _warehouse_environment():
        rows = status.matrix(warehouse.engine(), partnership())
    if args.json:
        print(json.dumps([r.as_dict() for r in rows], indent=2))
    else:
        print(status.render_table(rows))
    return 0


def _warehouse_environment() -> AbstractContextManager[None]:
    """``PARTNERFLOW_WAREHOUSE_URL`` as set; unset, the demo's warehouse when the development tools are here."""
    if os.environ.get("PARTNERFLOW_WAREHOUSE_URL"):
        return nullcontext()
    demo_warehouse = dev_tool("local_warehouse")
    if demo_warehouse is None:
        raise SystemExit("partnerflow: PARTNERFLOW_WAREHOUSE_URL is not set: point it at the warehouse")
    return demo_warehouse()


def _demo(args) -> int:
    run_demo = dev_tool("demo")
    if run_demo is None:
        print("partnerflow demo: needs the development tools (partnerflow-dev): run `make demo` in a checkout")
        return 2
    return run_demo(keep_running=args.keep_running)


COMMANDS = {"check-config": _check_config, "migrate": _migrate, "status": _status, "demo": _demo}
COMMANDS["calendar"] = calendar.run
COMMANDS["validate"] = validate_command.run
COMMANDS["approve-pack"] = approve_pack_command.run


def _backfill(args) -> int:
    with _warehouse_environment():
        return backfill_command.run(args)


COMMANDS["backfill"] = _backfill

if __name__ == "__main__":
    sys.exit(main())
