"""A real Airflow 3 stack run natively for the demo and the end-to-end tests.

``AirflowStack`` starts the api-server, scheduler (LocalExecutor), dag-processor and triggerer as
separate processes against a PostgreSQL metadata database, waits until the api-server reports them
healthy, and stops them without leaving any child behind. With ``celery=CeleryWorkers(broker_url)`` the
scheduler uses the CeleryExecutor instead (result backend: the metadata database) and the stack also
runs ``airflow celery worker`` processes, healthy once each answers ``celery inspect ping``.
``AirflowClient`` drives the stack through the public REST API v2 (``/api/v2``) with a JWT from the
SimpleAuthManager (``/auth/token``).

Choices worth knowing:

- Every setting comes from the environment (``environment()``); ``airflow.cfg`` in the home is
  written empty so that no process generates one with its own secrets. Variables named ``AIRFLOW*``
  in the caller's environment are not passed on, so a developer's shell cannot change the stack;
  ``env`` given to the constructor is applied last and may override any default here.
- New DAGs are *not* paused on creation (``dags_are_paused_at_creation=False``): event-driven DAGs
  only watch their assets while unpaused, and the demo must run without clicks. Pass
  ``env={"AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True"}`` and ``client.unpause()`` to opt out.
- The Fernet key, the JWT secret, the api secret key and the admin password are generated once and
  kept in ``home/stack-secrets.json`` (mode 0600), so a restart on the same home can read what the
  previous run encrypted and the printed login stays valid.

Pitfalls:

- ``killpg`` on a component's group is not enough: the task supervisor puts each task process in
  its own process group, and subprocess-based operators start new sessions. Every process the
  stack starts inherits ``PARTNERFLOW_AIRFLOW_STACK_ID``; ``stop()`` finds leftovers by that marker
  (and by the process tree) and kills them too.
- On Celery, tasks go to a queue of this stack's own (``celery_queue``) and only its workers listen there:
  a Redis shared with other stacks or tests never hands one stack's tasks to another's workers.
- The health endpoint reads job heartbeats from the database, so a scheduler killed seconds ago
  still looks alive. ``wait_healthy()`` only accepts heartbeats newer than this ``start()``.
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx
import psutil

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
HEALTH_KEYS = {
    "metadatabase": None,
    "scheduler": "latest_scheduler_heartbeat",
    "triggerer": "latest_triggerer_heartbeat",
    "dag_processor": "latest_dag_processor_heartbeat",
}
ADMIN_USERNAME = "admin"
STACK_ID_VARIABLE = "PARTNERFLOW_AIRFLOW_STACK_ID"
TERMINAL_RUN_STATES = frozenset({"success", "failed"})
STOP_GRACE_SECONDS = 30.0
POLL_SECONDS = 1.0
LOG_TAIL_LINES = 40

SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"


class AirflowStackError(RuntimeError):
    """The Airflow stack failed to migrate, start, become healthy or answer as expected."""


class DagsNotParsedError(AirflowStackError):
    """Some DAGs never appeared in Airflow; the message carries import errors and parser logs."""


@dataclass(frozen=True)
class CeleryWorkers:
    """Run the stack on the CeleryExecutor with ``workers`` ``airflow celery worker`` processes on
    ``broker_url``, each running up to ``concurrency`` tasks at once."""

    broker_url: str
    workers: int = 2
    concurrency: int = 2


@dataclass(frozen=True)
class Login:
    """How a person signs in to the stack's UI."""

    url: str
    username: str
    password: str


class AirflowClient:
    """A small client for Airflow's REST API v2, signed in as one SimpleAuthManager user.

    ``diagnostics`` is called when DAGs never appear, to add context (the dag-processor log tail)
    to the error.
    """

    def __init__(
        self,
        *,
        base_url: str,
        username: str,
        password: str,
        timeout: float = 30.0,
        diagnostics: Callable[[], str] | None = None,
    ) -> None:
        self._http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout)
        self._username = username
        self._password = password
        self._diagnostics = diagnostics
        self._token: str | None = None

    def __enter__(self) -> AirflowClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()

    def health(self) -> dict[str, Any]:
        """The api-server's health report (needs no sign-in)."""
        response = self._http.get("/api/v2/monitor/health")
        _raise_for_status(response)
        return response.json()

    def dag(self, dag_id: str) -> dict[str, Any] | None:
        """The DAG as Airflow knows it, or None when it has not been parsed (yet)."""
        response = self._request("GET", f"/api/v2/dags/{dag_id}", allow_404=True)
        return None if response.status_code == 404 else response.json()

    def wait_dags_parsed(self, dag_ids: Iterable[str], timeout: float = 120.0) -> None:
        """Wait until every DAG in ``dag_ids`` is parsed and active, or raise ``DagsNotParsedError``."""
        missing = set(dag_ids)
        deadline = time.monotonic() + timeout
        while True:
            missing = {dag_id for dag_id in missing if not _is_active(self.dag(dag_id))}
            if not missing:
                return
            if time.monotonic() > deadline:
                raise DagsNotParsedError(self._not_parsed_message(missing, timeout))
            time.sleep(POLL_SECONDS)

    def unpause(self, dag_id: str) -> None:
        """Unpause a DAG so the scheduler runs it and its asset watchers poll."""
        self._request("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})

    def trigger(
        self,
        dag_id: str,
        *,
        conf: dict[str, Any] | None = None,
        logical_date: datetime | None = None,
    ) -> str:
        """Start a manual run of ``dag_id`` and return its run id."""
        if logical_date is not None and logical_date.tzinfo is None:
            raise ValueError("logical_date must be timezone-aware")
        body = {
            "logical_date": logical_date.isoformat() if logical_date else None,
            "conf": conf or {},
        }
        response = self._request("POST", f"/api/v2/dags/{dag_id}/dagRuns", json=body)
        return response.json()["dag_run_id"]

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        """One DAG run."""
        return self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}").json()

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 300.0) -> str:
        """Wait until the run ends and return its state (``success`` or ``failed``)."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.run(dag_id, run_id)["state"]
            if state in TERMINAL_RUN_STATES:
                return state
            if time.monotonic() > deadline:
                raise AirflowStackError(self._run_timeout_message(dag_id, run_id, state, timeout))
            time.sleep(POLL_SECONDS)

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        """Every run of ``dag_id``, oldest first."""
        return self._get_all(f"/api/v2/dags/{dag_id}/dagRuns", "dag_runs", {"order_by": "id"})

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """The task instances of one run."""
        return self._get_all(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", "task_instances")

    def wait_new_run(self, dag_id: str, after: set[str], timeout: float = 120.0) -> dict[str, Any]:
        """Wait for a run of ``dag_id`` whose id is not in ``after`` and return it (the oldest such).

        For runs Airflow starts itself (an asset event, a watcher, a schedule): take
        ``{r["dag_run_id"] for r in client.runs(dag_id)}`` before causing the event.
        """
        deadline = time.monotonic() + timeout
        while True:
            new_runs = [run for run in self.runs(dag_id) if run["dag_run_id"] not in after]
            if new_runs:
                return new_runs[0]
            if time.monotonic() > deadline:
                paused = (self.dag(dag_id) or {}).get("is_paused")
                raise AirflowStackError(
                    f"no new run of {dag_id} within {timeout:.0f}s (known runs: {len(after)}, DAG paused: {paused})"
                )
            time.sleep(POLL_SECONDS)

    def import_errors(self) -> list[dict[str, Any]]:
        """DAG files that failed to parse, with their stack traces."""
        return self._get_all("/api/v2/importErrors", "import_errors")

    def _not_parsed_message(self, missing: set[str], timeout: float) -> str:
        lines = [f"DAGs not parsed within {timeout:.0f}s: {', '.join(sorted(missing))}"]
        errors = self.import_errors()
        lines.append(f"Import errors ({len(errors)}):" if errors else "No import errors reported.")
        for error in errors:
            lines.append(f"--- {error['filename']}\n{error['stack_trace'].strip()}")
        if self._diagnostics is not None:
            lines.append(self._diagnostics())
        return "\n".join(lines)

    def _run_timeout_message(self, dag_id: str, run_id: str, state: str, timeout: float) -> str:
        paused = (self.dag(dag_id) or {}).get("is_paused")
        tasks = ", ".join(f"{ti['task_id']}={ti['state']}" for ti in self.task_instances(dag_id, run_id))
        return (
            f"run {run_id} of {dag_id} still {state} after {timeout:.0f}s "
            f"(DAG paused: {paused}; tasks: {tasks or 'none yet'})"
        )

    def _get_all(self, path: str, key: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        page_size = 100  # the api-server's default maximum_page_limit
        while True:
            page = self._request(
                "GET", path, params={**(params or {}), "limit": page_size, "offset": len(items)}
            ).json()
            items.extend(page[key])
            if not page[key] or len(items) >= page["total_entries"]:
                return items

    def _request(self, method: str, path: str, *, allow_404: bool = False, **kwargs: Any) -> httpx.Response:
        response = self._http.request(method, path, headers=self._auth_header(), **kwargs)
        if response.status_code == 401:
            self._token = None
            response = self._http.request(method, path, headers=self._auth_header(), **kwargs)
        if not (allow_404 and response.status_code == 404):
            _raise_for_status(response)
        return response

    def _auth_header(self) -> dict[str, str]:
        if self._token is None:
            response = self._http.post("/auth/token", json={"username": self._username, "password": self._password})
            _raise_for_status(response)
            self._token = response.json()["access_token"]
        return {"Authorization": f"Bearer {self._token}"}


class AirflowStack:
    """Airflow's api-server, scheduler, dag-processor and triggerer, run natively.

    ``home`` holds ``airflow.cfg`` (empty), the generated secrets, and ``logs/<component>.log``.
    ``metadata_url`` is a SQLAlchemy URL of an existing PostgreSQL database. ``env`` adds
    variables every Airflow process gets (``AIRFLOW_CONN_*``, ``PARTNERFLOW_*``) and may override
    the defaults. ``api_port`` defaults to a free port. ``celery`` runs tasks on Celery workers instead
    of the LocalExecutor.

    Use ``setup()`` once, then ``start()`` and ``wait_healthy()``; ``stop()`` ends everything. As a
    context manager it does all of that: ``with AirflowStack(...) as stack: stack.client...``.
    """

    def __init__(
        self,
        *,
        home: Path,
        metadata_url: str,
        dags_folder: Path,
        env: dict[str, str] | None = None,
        api_port: int | None = None,
        celery: CeleryWorkers | None = None,
    ) -> None:
        self.home = Path(home).resolve()
        self.metadata_url = metadata_url
        self.dags_folder = Path(dags_folder).resolve()
        self.api_port = api_port or _free_port()
        self._extra_env = dict(env or {})
        self._stack_id = uuid.uuid4().hex
        self._log_server_ports = (_free_port(), _free_port())
        self.celery = celery
        # Node names as in the compose file's health check (celery@$HOSTNAME), one log server port each.
        self._workers = {
            f"celery@{self._stack_id[:8]}-worker{number}": _free_port()
            for number in range(1, (celery.workers if celery else 0) + 1)
        }
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._log_files: list[IO[bytes]] = []
        self._started_at: datetime | None = None
        self._client: AirflowClient | None = None

    @property
    def base_url(self) -> str:
        """Where the api-server (UI, REST API, execution API) listens."""
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def celery_queue(self) -> str:
        """The Celery queue this stack's tasks go to and its workers listen on."""
        return f"partnerflow-{self._stack_id[:12]}"

    @property
    def worker_names(self) -> list[str]:
        """The Celery node name of each worker (``celery@<name>``)."""
        return list(self._workers)

    @property
    def logs_dir(self) -> Path:
        """Component logs (``<component>.log``); task logs are filed below it by Airflow."""
        return self.home / "logs"

    @property
    def login(self) -> Login:
        """The UI address and the admin's credentials, for printing to a person."""
        return Login(url=self.base_url, username=ADMIN_USERNAME, password=self._secrets()["admin_password"])

    @property
    def client(self) -> AirflowClient:
        """A REST API client signed in as the admin user."""
        if self._client is None:
            login = self.login
            self._client = AirflowClient(
                base_url=login.url,
                username=login.username,
                password=login.password,
                diagnostics=lambda: self._log_tails(["dag-processor"]),
            )
        return self._client

    def environment(self) -> dict[str, str]:
        """The complete environment of every Airflow process in this stack."""
        secrets_ = self._secrets()
        worker_log_port, trigger_log_port = self._log_server_ports
        env = {name: value for name, value in os.environ.items() if not name.startswith("AIRFLOW")}
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW_CONFIG": str(self.home / "airflow.cfg"),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.metadata_url,
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                # LocalExecutor forks PARALLELISM workers up front; 32 idle workers swamp 2 cores.
                "AIRFLOW__CORE__PARALLELISM": "4",
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__CORE__DEFAULT_TIMEZONE": "utc",
                "AIRFLOW__CORE__FERNET_KEY": secrets_["fernet_key"],
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
                "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USERNAME}:ADMIN",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self._passwords_file),
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.api_port),
                "AIRFLOW__API__BASE_URL": self.base_url,
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API__SECRET_KEY": secrets_["api_secret_key"],
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets_["jwt_secret"],
                # Look for new or changed DAG files every few seconds instead of every 5 minutes.
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__DAG_PROCESSOR__BUNDLE_REFRESH_CHECK_INTERVAL": "5",
                # Free ports, so a test stack and the demo can run side by side.
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(worker_log_port),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(trigger_log_port),
                "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
                # SFTP modification times use the worker's local timezone.
                "TZ": "UTC",
                STACK_ID_VARIABLE: self._stack_id,
            }
        )
        if self.celery is not None:
            env.update(
                {
                    "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                    "AIRFLOW__CELERY__BROKER_URL": self.celery.broker_url,
                    # Celery's database result backend takes a SQLAlchemy URL behind "db+".
                    "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{self.metadata_url}",
                    "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.celery.concurrency),
                    "AIRFLOW__OPERATORS__DEFAULT_QUEUE": self.celery_queue,
                    # Sending a task to the broker may take more than the default 1 s on a busy 2-core machine.
                    "AIRFLOW__CELERY__OPERATION_TIMEOUT": "10",
                }
            )
        env.update(self._extra_env)
        return env

    def setup(self, timeout: float = 600.0) -> None:
        """Create or upgrade the metadata schema (``airflow db migrate``; safe to repeat)."""
        self._prepare_home()
        log_path = self.logs_dir / "db-migrate.log"
        with log_path.open("wb") as log_file:
            result = subprocess.run(
                [sys.executable, "-m", "airflow", "db", "migrate"],
                env=self.environment(),
                cwd=self.home,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            )
        if result.returncode != 0:
            raise AirflowStackError(f"airflow db migrate failed with exit code {result.returncode}\n{_tail(log_path)}")

    def start(self) -> None:
        """Start the four components (and the Celery workers), each in its own session, logging to
        ``logs/<component>.log``."""
        if self._processes:
            raise AirflowStackError("the stack is already started")
        self._prepare_home()
        if not _port_is_free(self.api_port):
            raise AirflowStackError(f"port {self.api_port} is in use: is another Airflow still running?")
        env = self.environment()
        self._started_at = datetime.now(UTC)
        for name in COMPONENTS:
            self._spawn(name, [sys.executable, "-m", "airflow", name], env)
        self.start_workers()

    def start_workers(self) -> None:
        """Start the Celery workers (``start()`` does), logging to ``logs/celery-worker<N>.log``.

        Alone, it runs workers without the rest of the stack: a worker needs the broker and the result
        backend's database, not a migrated metadata database.
        """
        self._prepare_home()
        env = self.environment()
        for number, (node, log_port) in enumerate(self._workers.items(), start=1):
            command = [sys.executable, "-m", "airflow", "celery", "worker", "--celery-hostname", node]
            command += ["--queues", self.celery_queue, "--without-mingle", "--without-gossip"]
            worker_env = {**env, "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(log_port)}
            self._spawn(f"celery-worker{number}", command, worker_env)

    def ping_workers(self, timeout: float = 2.0) -> set[str]:
        """The workers that answer a Celery ping (what the compose file's worker health check asks).

        Sent from this process with a bare Celery app on the broker: much cheaper than starting
        ``celery --app airflow...`` (which imports Airflow) every poll.
        """
        if self.celery is None or not self._workers:
            return set()
        from celery import Celery

        app = Celery(broker=self.celery.broker_url)
        try:
            replies = app.control.ping(destination=list(self._workers), timeout=timeout)
        finally:
            app.close()
        return {node for reply in replies for node, answer in reply.items() if answer == {"ok": "pong"}}

    def wait_workers(self, timeout: float = 180.0) -> None:
        """Wait until every Celery worker answers a ping, or raise ``AirflowStackError``."""
        deadline = time.monotonic() + timeout
        while True:
            self._raise_if_exited()
            answered = self.ping_workers()
            if answered == set(self._workers):
                return
            if time.monotonic() > deadline:
                silent = sorted(set(self._workers) - answered)
                logs = [f"celery-worker{n}" for n, node in enumerate(self._workers, start=1) if node in silent]
                raise AirflowStackError(
                    f"Celery workers not answering after {timeout:.0f}s: {', '.join(silent)}\n{self._log_tails(logs)}"
                )
            time.sleep(POLL_SECONDS)

    def wait_healthy(self, timeout: float = 180.0) -> None:
        """Wait until the api-server reports the database and all three services healthy."""
        if not self._processes or self._started_at is None:
            raise AirflowStackError("the stack is not started")
        # Heartbeats are stored with second precision by some backends; allow a little slack.
        fresh_after = self._started_at - timedelta(seconds=2)
        deadline = time.monotonic() + timeout
        last_report: object = "no answer yet"
        while True:
            self._raise_if_exited()
            try:
                report = self.client.health()
            except (httpx.HTTPError, AirflowStackError) as error:
                last_report = f"{type(error).__name__}: {error}"
            else:
                last_report = report
                if _is_healthy(report, fresh_after):
                    self.wait_workers(max(1.0, deadline - time.monotonic()))
                    return
            if time.monotonic() > deadline:
                raise AirflowStackError(
                    f"Airflow not healthy after {timeout:.0f}s; last health report: {last_report}\n"
                    f"{self._log_tails(COMPONENTS)}"
                )
            time.sleep(POLL_SECONDS)

    def _spawn(self, name: str, command: list[str], env: dict[str, str]) -> None:
        atexit.register(self.stop)  # stop() unregisters every registration at once
        log_file = (self.logs_dir / f"{name}.log").open("ab")
        self._log_files.append(log_file)
        self._processes[name] = subprocess.Popen(
            command,
            env=env,
            cwd=self.home,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _forget_queue(self) -> None:
        """Remove this stack's queue and its binding from a (possibly shared) Redis broker."""
        if self.celery is None or not self.celery.broker_url.startswith(("redis://", "rediss://")):
            return
        import redis

        client = redis.Redis.from_url(self.celery.broker_url, socket_connect_timeout=2, socket_timeout=5)
        try:
            keys = list(client.scan_iter(match=f"*{self.celery_queue}*"))
            if keys:
                client.delete(*keys)
        except (redis.RedisError, OSError):
            pass  # the broker is gone already: nothing left to tidy
        finally:
            client.close()

    def _raise_if_exited(self) -> None:
        exited = {name: p.returncode for name, p in self._processes.items() if p.poll() is not None}
        if exited:
            described = ", ".join(f"{name} (exit code {code})" for name, code in exited.items())
            raise AirflowStackError(f"Airflow stopped early: {described}\n{self._log_tails(exited)}")

    def pids(self) -> dict[str, int]:
        """The process id of each running component."""
        return {name: process.pid for name, process in self._processes.items()}

    def processes(self) -> list[psutil.Process]:
        """Every live process this stack started, directly or not (components, workers, tasks)."""
        found: dict[int, psutil.Process] = {}
        for process in self._processes.values():
            try:
                root = psutil.Process(process.pid)
                for member in [root, *root.children(recursive=True)]:
                    found[member.pid] = member
            except psutil.NoSuchProcess:
                continue
        for member in psutil.process_iter():
            try:
                if member.environ().get(STACK_ID_VARIABLE) == self._stack_id:
                    found[member.pid] = member
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        return [member for member in found.values() if _is_running(member)]

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """Stop everything: SIGTERM to each process group, then SIGKILL whatever outlives ``grace``.

        The api-server goes last: running tasks report their end through its execution API, and
        without it their supervisors retry for a minute before giving up.
        """
        atexit.unregister(self.stop)
        if self._client is not None:
            self._client.close()
            self._client = None
        if not self._processes:
            return
        members = self.processes()
        api_server = self._processes.get("api-server")
        api_group = _process_group(api_server.pid) if api_server else None
        groups = {_process_group(member.pid) for member in members} - {None}
        _terminate(groups - {api_group}, [m for m in members if _process_group(m.pid) != api_group], grace)
        _terminate(groups & {api_group}, members, grace)
        # Processes forked during shutdown are caught by the re-scan until none is left.
        members = [member for member in members if _is_running(member)]
        kill_deadline = time.monotonic() + 30
        while members:
            for member in members:
                group = _process_group(member.pid)
                if group is not None:
                    _signal_group(group, signal.SIGKILL)
                _kill(member)
            time.sleep(0.2)
            members = self.processes()
            if members and time.monotonic() > kill_deadline:
                raise AirflowStackError(f"processes outlived SIGKILL: {[m.pid for m in members]}")
        for process in self._processes.values():
            process.wait(timeout=10)  # reap: every component is dead by now
        self._processes.clear()
        self._forget_queue()
        for log_file in self._log_files:
            log_file.close()
        self._log_files.clear()

    def __enter__(self) -> AirflowStack:
        self.setup()
        self.start()
        try:
            self.wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def _passwords_file(self) -> Path:
        return self.home / "simple_auth_manager_passwords.json"

    def _prepare_home(self) -> None:
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        config = self.home / "airflow.cfg"
        if not config.exists():
            config.write_text(f"# Empty on purpose: {__name__} sets everything in the environment.\n")
        secrets_ = self._secrets()
        _write_private(self._passwords_file, json.dumps({ADMIN_USERNAME: secrets_["admin_password"]}))

    def _secrets(self) -> dict[str, str]:
        path = self.home / "stack-secrets.json"
        if path.exists():
            return json.loads(path.read_text())
        from cryptography.fernet import Fernet

        values = {
            "fernet_key": Fernet.generate_key().decode(),
            "jwt_secret": secrets.token_urlsafe(64),
            "api_secret_key": secrets.token_urlsafe(64),
            "admin_password": secrets.token_urlsafe(12),
        }
        self.home.mkdir(parents=True, exist_ok=True)
        _write_private(path, json.dumps(values, indent=2))
        return values

    def _log_tails(self, names: Iterable[str]) -> str:
        return "\n".join(f"--- last lines of {name}.log\n{_tail(self.logs_dir / f'{name}.log')}" for name in names)


def _is_active(dag: dict[str, Any] | None) -> bool:
    return dag is not None and not dag["is_stale"]


def _is_healthy(report: dict[str, Any], fresh_after: datetime) -> bool:
    for component, heartbeat_key in HEALTH_KEYS.items():
        status = report.get(component) or {}
        if status.get("status") != "healthy":
            return False
        if heartbeat_key is not None:
            heartbeat = status.get(heartbeat_key)
            if heartbeat is None or datetime.fromisoformat(heartbeat) < fresh_after:
                return False
    return True


def _raise_for_status(response: httpx.Response) -> None:
    if response.is_success:
        return
    detail = response.text[:500]
    raise AirflowStackError(
        f"{response.request.method} {response.request.url.path} -> {response.status_code}: {detail}"
    )


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    if not path.exists():
        return "(no log)"
    with path.open("rb") as log:
        log.seek(0, os.SEEK_END)
        log.seek(max(0, log.tell() - 64 * 1024))
        text = log.read().decode(errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def _write_private(path: Path, text: str) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text + "\n")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        # As uvicorn does, so that connections in TIME_WAIT from a previous run do not count.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _is_running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _process_group(pid: int) -> int | None:
    try:
        group = os.getpgid(pid)
    except ProcessLookupError:
        return None
    # Never signal our own group: a stack started from a shell would take the shell down with it.
    return None if group == os.getpgrp() else group


def _signal_group(group: int, signum: signal.Signals) -> None:
    try:
        os.killpg(group, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _terminate(groups: Iterable[int], members: list[psutil.Process], timeout: float) -> None:
    """SIGTERM the groups and wait up to ``timeout`` for ``members`` to exit."""
    for group in groups:
        _signal_group(group, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_is_running(member) for member in members):
        time.sleep(0.2)


def _kill(process: psutil.Process) -> None:
    try:
        process.kill()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        pass
