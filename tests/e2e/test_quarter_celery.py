"""The demo quarter again, on the CeleryExecutor: the production shape of docker-compose.yaml.

The same player and the same assertions as the LocalExecutor run (``test_quarter.py``; its tests are
imported below and run here against this module's ``quarter``): SFTP returns from arrival to published
with their receipts, the rejected referrals file and its rejection report, the ``deadlines`` ladder, and
the ``board_pack`` DAG. Here every task goes through a real Redis broker to one of two
``airflow celery worker`` processes, with Celery's results in PostgreSQL.

Tasks of one run land on either worker, so nothing may rely on one worker's local disk between tasks:
natively both share the disk, as the compose workers share the ``partnerflow-var`` volume (README,
"Scaling out").
"""

from __future__ import annotations

import re
from collections import Counter

import pytest

from partnerflow.airflow.dags import build_all
from partnerflow_dev.airflow_stack import CeleryWorkers
from partnerflow_dev.quarter import QuarterPlayer, airflow_for_the_quarter
from tests.celery_support import redis_url
from tests.e2e.services import running_stack
from tests.e2e.test_quarter import (
    test_board_pack_written_and_names_partners,
    test_every_step_succeeded,
    test_exactly_these_emails_once_each,
    test_ledger_and_warehouse,
    test_rejection_report_is_specific_and_value_free,
)

pytestmark = pytest.mark.e2e

# Collected again in this module, where ``quarter`` is the Celery run below.
__all__ = [
    "redis_url",
    "test_board_pack_written_and_names_partners",
    "test_every_step_succeeded",
    "test_exactly_these_emails_once_each",
    "test_ledger_and_warehouse",
    "test_rejection_report_is_specific_and_value_free",
]

WORKERS = 2
RECEIVED = re.compile(r"Task \S*execute_workload\[[0-9a-f-]+\] received")


@pytest.fixture(scope="module")
def celery_quarter(postgres, demo_config, tmp_path_factory, redis_url):
    """Play the quarter once on Celery; yield the stack, the log, and what Airflow and the workers recorded."""
    var = tmp_path_factory.mktemp("e2e-celery") / "var"
    var.mkdir()
    with running_stack(postgres, demo_config, var, "e2e_celery") as stack:
        celery = CeleryWorkers(broker_url=redis_url, workers=WORKERS)
        with airflow_for_the_quarter(stack, home=var / "airflow", celery=celery) as airflow:
            log = QuarterPlayer(stack=stack, airflow=airflow, partnership=demo_config, say=print).play()
            client = airflow.client
            task_instances = [
                ti
                for dag_id in build_all(demo_config)
                for run in client.runs(dag_id)
                for ti in client.task_instances(dag_id, run["dag_run_id"])
            ]
            queue, executor = airflow.celery_queue, airflow.environment()["AIRFLOW__CORE__EXECUTOR"]
        received = {
            number: len(RECEIVED.findall((airflow.logs_dir / f"celery-worker{number}.log").read_text(errors="replace")))
            for number in range(1, WORKERS + 1)
        }
        yield stack, log, {"executor": executor, "queue": queue, "task_instances": task_instances, "received": received}


@pytest.fixture(scope="module")
def quarter(celery_quarter):
    """What the LocalExecutor tests imported above read: the stack and the quarter's log."""
    stack, log, _ = celery_quarter
    return stack, log


def test_the_tasks_ran_on_celery_and_on_both_workers(celery_quarter):
    _, _, ran = celery_quarter
    assert ran["executor"] == "CeleryExecutor"
    finished = [ti for ti in ran["task_instances"] if ti["state"] is not None]
    assert Counter(ti["state"] for ti in finished)["success"] > 20
    # Every task went through this stack's own queue on the broker.
    assert {ti["queue"] for ti in finished if ti["state"] == "success"} == {ran["queue"]}
    # Both workers took tasks: a run's tasks may land on either, and they still agree on everything above.
    assert all(count > 0 for count in ran["received"].values()), ran["received"]
