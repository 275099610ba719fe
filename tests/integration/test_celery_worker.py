"""The Celery stack in the lock works: the CeleryExecutor imports, and a real ``airflow celery worker`` on a
real Redis answers the health check the compose file gives the workers, then stops leaving nothing behind.

The lock follows Airflow's constraints for celery and kombu (README, "The Celery stack follows Airflow's
constraints"); a newer Celery that breaks the executor fails here first.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import redis
import yaml

from partnerflow_dev.airflow_stack import AirflowStack, CeleryWorkers
from partnerflow_dev.redis_server import RedisServer, answers
from tests.celery_support import redis_url, skip_loudly_unless_ci

__all__ = ["redis_url"]  # a fixture, used by name below

REPO = Path(__file__).resolve().parents[2]


def test_the_celery_executor_imports():
    from airflow.executors.base_executor import BaseExecutor
    from airflow.providers.celery.executors.celery_executor import CeleryExecutor

    assert issubclass(CeleryExecutor, BaseExecutor)


def compose_worker_healthcheck() -> str:
    """The shell command of the compose file's worker health check, as the container's shell gets it."""
    compose = yaml.safe_load((REPO / "docker-compose.yaml").read_text())
    kind, command = compose["services"]["airflow-worker"]["healthcheck"]["test"]
    assert kind == "CMD-SHELL"
    return command.replace("$$", "$")  # compose's escape for a literal $


def test_a_worker_starts_on_redis_and_passes_the_compose_health_check(redis_url, fresh_database, tmp_path):
    stack = AirflowStack(
        home=tmp_path / "airflow",
        metadata_url=fresh_database,
        dags_folder=REPO / "dags",
        celery=CeleryWorkers(broker_url=redis_url, workers=1, concurrency=1),
    )
    (node,) = stack.worker_names
    try:
        stack.start_workers()
        stack.wait_workers(timeout=180)
        env = {
            **stack.environment(),
            "HOSTNAME": node.removeprefix("celery@"),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        }
        check = subprocess.run(
            ["bash", "-c", compose_worker_healthcheck()], env=env, capture_output=True, text=True, timeout=120
        )
        assert check.returncode == 0, check.stdout + check.stderr
        assert f"{node}: OK" in check.stdout and "pong" in check.stdout
    finally:
        stack.stop()
    assert stack.processes() == []
    assert stack.ping_workers(timeout=2) == set()
    assert not redis.Redis.from_url(redis_url).keys(f"*{stack.celery_queue}*"), "the stack's queue is left behind"


def test_redis_server_is_started_when_none_answers(request, tmp_path):
    """A bare machine: nothing on the usual port (here, a port nobody listens on), so partnerflow starts
    its own ``redis-server`` on a free port, and stops it again."""
    server = RedisServer(shared_url="redis://127.0.0.1:1/0")
    if server.binary is None:
        skip_loudly_unless_ci(request, "redis-server is not on PATH")
    with server:
        assert server.started_here and server.url != server.shared_url
        assert answers(server.url)
        url = server.url
    assert not answers(url)
