"""A real Airflow stack starts, runs a DAG triggered over the REST API, and stops without leftovers."""

from __future__ import annotations

import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import psycopg
import pytest
from psycopg import sql

from partnerflow_dev.airflow_stack import AirflowStack, DagsNotParsedError

SMOKE_DAG = textwrap.dedent(
    '''
    """Writes the file named in the run's conf into PARTNERFLOW_SMOKE_DIR."""
    import os
    from datetime import datetime, timezone
    from pathlib import Path

    from airflow.sdk import dag, get_current_context, task


    @dag(dag_id="stack_smoke", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc))
    def stack_smoke():
        @task
        def write_marker():
            name = get_current_context()["dag_run"].conf["marker"]
            Path(os.environ["PARTNERFLOW_SMOKE_DIR"], name).write_text("done")

        write_marker()


    stack_smoke()
    '''
)

BROKEN_DAG = textwrap.dedent(
    """
    from airflow.sdk import dag

    raise RuntimeError("deliberately broken DAG file")
    """
)


@pytest.fixture
def airflow_metadata_url(postgres) -> Iterator[str]:
    """A SQLAlchemy URL to a fresh, uniquely named database on the tests' embedded server, dropped afterwards."""
    name = f"pf_airflow_test_{uuid.uuid4().hex[:12]}"
    postgres.create_database(name)
    try:
        yield postgres.url(name)
    finally:
        with psycopg.connect(postgres.dsn("postgres"), autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_stack_runs_a_triggered_dag_and_leaves_no_process(tmp_path: Path, airflow_metadata_url: str) -> None:
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "smoke.py").write_text(SMOKE_DAG)
    (dags / "broken.py").write_text(BROKEN_DAG)
    out = tmp_path / "out"
    out.mkdir()
    home = tmp_path / "airflow-home"
    stack = AirflowStack(
        home=home,
        metadata_url=airflow_metadata_url,
        dags_folder=dags,
        env={"PARTNERFLOW_SMOKE_DIR": str(out)},
    )
    stack.setup()

    started = time.monotonic()
    stack.start()
    try:
        stack.wait_healthy(timeout=180)
        healthy_seconds = time.monotonic() - started
        client = stack.client

        client.wait_dags_parsed(["stack_smoke"], timeout=120)
        with pytest.raises(DagsNotParsedError, match="deliberately broken DAG file"):
            client.wait_dags_parsed(["never_defined"], timeout=10)

        triggered = time.monotonic()
        run_id = client.trigger("stack_smoke", conf={"marker": "marker.txt"})
        state = client.wait_run("stack_smoke", run_id, timeout=180)
        run_seconds = time.monotonic() - triggered

        assert state == "success", client.task_instances("stack_smoke", run_id)
        assert (out / "marker.txt").read_text() == "done"
        assert [ti["state"] for ti in client.task_instances("stack_smoke", run_id)] == ["success"]

        known = {run["dag_run_id"] for run in client.runs("stack_smoke")}
        assert known == {run_id}
        second_id = client.trigger("stack_smoke", conf={"marker": "second.txt"})
        assert client.wait_new_run("stack_smoke", known, timeout=60)["dag_run_id"] == second_id
        assert client.wait_run("stack_smoke", second_id, timeout=180) == "success"
        seen_while_running = stack.processes()
        assert len(seen_while_running) > len(stack.pids())
    finally:
        stopping = time.monotonic()
        stack.stop()
        stop_seconds = time.monotonic() - stopping

    print(
        f"\nAirflow healthy {healthy_seconds:.1f}s after start; trivial run took {run_seconds:.1f}s; "
        f"stop took {stop_seconds:.1f}s"
    )
    survivors = [process.pid for process in seen_while_running if _alive(process)]
    survivors += [process.pid for process in psutil.process_iter() if _has_airflow_home(process, home)]
    assert survivors == []


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _has_airflow_home(process: psutil.Process, home: Path) -> bool:
    try:
        return _alive(process) and process.environ().get("AIRFLOW_HOME") == str(home.resolve())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
