"""The ``partnerflow`` command: check the config, migrate the warehouse, show status, run the demo."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="partnerflow", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    check = commands.add_parser("check-config", help="validate a partnership file")
    check.add_argument("path", nargs="?", type=Path, help="default: $PARTNERFLOW_CONFIG or config/partnership.yaml")

    commands.add_parser("migrate", help="apply the warehouse migrations (PARTNERFLOW_WAREHOUSE_URL)")

    status = commands.add_parser("status", help="the submissions matrix: feed x period")
    status.add_argument("--json", action="store_true", help="machine-readable output")

    demo = commands.add_parser("demo", help="start the embedded stack and play one quarter end to end")
    demo.add_argument("--keep-running", action="store_true", help="leave the stack and the Airflow UI up")

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for chatty in ("httpx", "asyncssh", "paramiko"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        return 130


def _check_config(args) -> int:
    from partnerflow.config import ConfigError, config_path, load_config

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
    from partnerflow import status, warehouse
    from partnerflow.config import partnership
    from partnerflow.devstack.local import warehouse_environment

    with warehouse_environment():
        rows = status.matrix(warehouse.engine(), partnership())
    if args.json:
        print(json.dumps([r.as_dict() for r in rows], indent=2))
    else:
        print(status.render_table(rows))
    return 0


def _demo(args) -> int:
    from partnerflow.devstack.demo import run_demo

    return run_demo(keep_running=args.keep_running)


COMMANDS = {"check-config": _check_config, "migrate": _migrate, "status": _status, "demo": _demo}

if __name__ == "__main__":
    sys.exit(main())
