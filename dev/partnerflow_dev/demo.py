"""``partnerflow demo``: start everything on loopback, play one quarter, print what happened, stop."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from pathlib import Path

import psycopg

from partnerflow import warehouse
from partnerflow.core.config import Partnership, partnership
from partnerflow.core.paths import var_dir
from partnerflow.warehouse import status
from partnerflow_dev.airflow_stack import AirflowStack
from partnerflow_dev.quarter import DEMO_PERIOD, QuarterLog, QuarterPlayer, airflow_for_the_quarter
from partnerflow_dev.stack import DevStack

# What a demo run leaves behind and the next one starts without: its outputs, and the partners' side
# (files on the SFTP drop, returns on the partner API) so no earlier quarter's data is picked up.
DEMO_OUTPUTS = (
    "sink",
    "landing",
    "boardpack",
    "clock.json",
    "airflow/logs",
    "devstack/sftp",
    "devstack/partner_api",
)


def run_demo(*, keep_running: bool = False) -> int:
    config = partnership()
    var = var_dir()
    started = time.monotonic()
    _say(f"partnerflow demo: {config.name}")
    _say(f"working folder: {var}")
    _clear_previous_run(var)
    with DevStack(var=var, partnership=config) as stack:
        _reset_databases(stack)
        env = stack.environment()
        os.environ.update(env)
        warehouse.migrate()
        _say(
            f"embedded services up: PostgreSQL :{stack.postgres.port}, SFTP :{stack.sftp.port}, "
            f"partner API :{stack.partner_api.port}, SendGrid sink :{stack.sink.port}"
        )
        _say("starting Airflow (api-server, scheduler, dag-processor, triggerer) ...")
        with airflow_for_the_quarter(stack, home=var / "airflow", say=_say) as airflow:
            _say(f"Airflow up at {airflow.base_url} ({time.monotonic() - started:.0f}s)")
            log = QuarterPlayer(stack=stack, airflow=airflow, partnership=config, say=_say).play()
            _summary(config, stack, log)
            if keep_running:
                _wait_for_interrupt(airflow)
    _say(f"done in {time.monotonic() - started:.0f}s; nothing left running")
    return 0


def _clear_previous_run(var: Path) -> None:
    for name in DEMO_OUTPUTS:
        path = var / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _reset_databases(stack: DevStack) -> None:
    """Each demo plays its quarter from nothing: fresh warehouse and Airflow databases."""
    with psycopg.connect(stack.postgres.dsn("postgres"), autocommit=True) as conn:
        for database in (stack.warehouse_db, stack.airflow_db):
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{database}"')


def _summary(config: Partnership, stack: DevStack, log: QuarterLog) -> None:
    rows = status.matrix(warehouse.engine(), config)
    current = [r for r in rows if r.period_id == DEMO_PERIOD.id]
    _say("")
    _say(f"Submissions for {DEMO_PERIOD.label} (partnerflow status):")
    for line in status.render_table(current).splitlines():
        _say("  " + line)
    history = len({r.period_id for r in rows if r.period_id < DEMO_PERIOD.id})
    _say(f"  and {len(rows) - len(current)} returns of {history} earlier quarters, loaded by partnerflow backfill")
    messages = stack.sink.messages()
    _say("")
    _say(f"Emails accepted by the SendGrid sink: {len(messages)} (in {stack.sink.out_dir})")
    for message in messages:
        recipients = [to["email"] for p in message["personalizations"] for to in p.get("to", [])]
        _say(f"  - {message['subject']}  →  {', '.join(recipients)}")
    _say(f"Re-running the due day sent {log.rerun_new_messages} new email(s).")
    packs = sorted((var_dir() / "boardpack").glob("*/v*/board-pack.pdf"))
    _say("Board pack: " + (", ".join(str(p) for p in packs) if packs else "not produced"))
    _say("Open the .html files in the sink folder to read the emails as recipients would.")


def _wait_for_interrupt(airflow: AirflowStack) -> None:
    login = airflow.login
    _say("")
    _say(f"Airflow UI: {login.url}  (user {login.username}, password {login.password})")
    _say("The stack stays up; press Ctrl-C to stop everything.")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass


def _say(line: str) -> None:
    print(line, flush=True)
