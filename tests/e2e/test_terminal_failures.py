"""Under a real Airflow (api-server, scheduler, dag-processor, triggerer, LocalExecutor) with partnerflow's
own DAGs: a failure someone must act on fails its task at once, without the retries, and the alert says
"someone must act" and why; a transient one is retried with backoff as before.

The council's SFTP connection is set without a host-key pin (the fetch refuses it: a terminal failure);
the health partner's is pinned but points at a port nobody listens on (a transient failure).
"""

from __future__ import annotations

import json
import socket
import time

import pytest
import sqlalchemy as sa

from partnerflow import warehouse
from partnerflow_dev.airflow_stack import AirflowStack
from partnerflow_dev.sftp_server import client_connection
from tests.e2e.services import running_stack

pytestmark = pytest.mark.e2e

TERMINAL_DAG = "ingest_council_referrals"
TRANSIENT_DAG = "ingest_health_icb"
# alerts name the partner and the return, never the DAG
TERMINAL_RETURN = "Council referrals and assessments from Blanktown Council Children's Services"
TRANSIENT_RETURN = "ICB health assessments and A&E self-harm from NHS Blanktown Integrated Care Board"


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def failed_runs(postgres, demo_config, tmp_path_factory):
    var = tmp_path_factory.mktemp("terminal") / "var"
    var.mkdir()
    with running_stack(postgres, demo_config, var, "term") as stack:
        env = stack.environment()
        unpinned = json.loads(env["AIRFLOW_CONN_PARTNERFLOW_SFTP_COUNCIL"])
        del unpinned["extra"]["host_key"]
        env["AIRFLOW_CONN_PARTNERFLOW_SFTP_COUNCIL"] = json.dumps(unpinned)
        env["AIRFLOW_CONN_PARTNERFLOW_SFTP_HEALTH"] = json.dumps(
            client_connection("127.0.0.1", _closed_port(), stack.keys)
        )
        airflow = AirflowStack(
            home=var / "airflow",
            metadata_url=stack.postgres.url(stack.airflow_db),
            dags_folder=_repo_dags(),
            env=env,
        )
        with airflow:
            client = airflow.client
            client.wait_dags_parsed([TERMINAL_DAG, TRANSIENT_DAG])
            terminal_run = client.trigger(TERMINAL_DAG, conf={})
            transient_run = client.trigger(TRANSIENT_DAG, conf={})
            terminal_state = client.wait_run(TERMINAL_DAG, terminal_run, timeout=300)
            terminal_tis = {ti["task_id"]: ti for ti in client.task_instances(TERMINAL_DAG, terminal_run)}
            # The DAG's safety-net schedule may start a run first, and max_active_runs=1 queues ours behind it
            # until its retries (30 s, 60 s, 120 s) are spent: wait long enough for that.
            transient_fetch = _wait_task_state(
                client, TRANSIENT_DAG, transient_run, "fetch", "up_for_retry", timeout=600.0
            )
        with warehouse.engine().connect() as conn:
            alerts = [
                dict(row)
                for row in conn.execute(
                    sa.text("SELECT subject, text_body, html_body FROM ops.notifications WHERE kind = 'incident'")
                ).mappings()
            ]
        yield terminal_state, terminal_tis, transient_fetch, alerts


def _repo_dags():
    from partnerflow.core.paths import repo_path

    return repo_path("dags")


def _wait_task_state(client, dag_id: str, run_id: str, task_id: str, state: str, timeout: float = 300.0) -> dict:
    """Poll the REST API (as wait_run does) until the task reaches ``state``; return the task instance."""
    deadline = time.monotonic() + timeout
    while True:
        (ti,) = [t for t in client.task_instances(dag_id, run_id) if t["task_id"] == task_id]
        if ti["state"] == state:
            return ti
        if ti["state"] in ("failed", "success") or time.monotonic() > deadline:
            raise AssertionError(f"{dag_id}.{task_id} is {ti['state']}, never {state}")
        time.sleep(1)


def test_a_terminal_failure_fails_the_task_at_once_without_retries(failed_runs):
    state, tis, _, _ = failed_runs
    assert state == "failed"
    assert (tis["fetch"]["state"], tis["fetch"]["try_number"], tis["fetch"]["max_tries"]) == ("failed", 1, 3)
    assert tis["decide"]["state"] == "upstream_failed"


def test_the_alert_says_someone_must_act_and_why(failed_runs):
    *_, alerts = failed_runs
    (alert,) = [a for a in alerts if TERMINAL_RETURN in a["subject"]]
    assert TERMINAL_DAG not in alert["subject"]
    assert alert["subject"].endswith("someone must act")
    text = alert["text_body"]
    assert "Someone must act: council_referrals: SFTP connection partnerflow_sftp_council was refused" in text
    assert "does not pin the server's host key" in text and "ssh-keyscan -t ed25519" in text
    assert "failed at once, without retries" in text and "Not retrying: someone must act." in text
    assert "each after all its retries" not in text
    assert f"DAG: {TERMINAL_DAG}" in text.split("FOR THE DATA TEAM")[1]
    assert "Someone must act:" in alert["html_body"]


def test_a_transient_failure_is_still_retried(failed_runs):
    _, _, fetch, alerts = failed_runs
    assert (fetch["state"], fetch["try_number"]) == ("up_for_retry", 1)
    assert not [a for a in alerts if TRANSIENT_RETURN in a["subject"]]  # no alert before the retries are spent
