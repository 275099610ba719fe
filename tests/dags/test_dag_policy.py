"""Policy tests over the real DagBag: every DAG partnerflow generates follows the house rules.

In the manner of mozilla/telemetry-airflow's ``tests/dags/test_dag_validity.py``: load the real ``dags/`` folder
the way the dag-processor does and check each DAG for what operators rely on (owner, run book, tags, retries,
an alert route, one run at a time, how it is started). Each test reports every offending DAG or task at once.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk import Asset, AssetOrTimeSchedule, CronTriggerTimetable
from airflow.sdk.definitions.asset import AssetBooleanCondition
from airflow.sdk.definitions.timetables.assets import AssetTriggeredTimetable

from partnerflow.airflow import dags
from partnerflow.airflow.callbacks import OutboxFailureAlert, fails_at_once_when_terminal
from partnerflow.core.config import HttpTransport, Partnership, SftpTransport, partnership
from partnerflow.transport.arrival import SftpArrivalTrigger

REPO = Path(__file__).resolve().parents[2]
DAGS_FOLDER = REPO / "dags"
DEMO_CONFIG = REPO / "config" / "partnership.yaml"

FIXED_TAGS = {"partnerflow", "ingest", "deadlines", "board-pack"}
AIRFLOW_2_DEFAULT_ARGS = {"email", "email_on_failure", "email_on_retry", "sla", "schedule_interval"}
AIRFLOW_2_SOURCE = re.compile(r"\b(schedule_interval|email_on_failure|email_on_retry|sla_miss_callback)\b|\bsla\s*=")
HEAVY_MODULES = ("great_expectations", "pandas")
MIN_RUNBOOK_CHARS = 200
SYNTHETIC_FEEDS = 200


def load_dagbag(config_path: Path, monkeypatch: pytest.MonkeyPatch) -> DagBag:
    """Parse the real DAGs folder against the given partnership file, as the dag-processor would."""
    monkeypatch.setenv("PARTNERFLOW_CONFIG", str(config_path))
    partnership.cache_clear()
    try:
        return DagBag(dag_folder=str(DAGS_FOLDER))
    finally:
        partnership.cache_clear()


@pytest.fixture(scope="module")
def dagbag() -> Iterator[DagBag]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield load_dagbag(DEMO_CONFIG, monkeypatch)


@pytest.fixture(scope="module")
def config(demo_config: Partnership) -> Partnership:
    return demo_config


def allowed_tags(config: Partnership) -> set[str]:
    return (
        FIXED_TAGS
        | {f"partner:{partner.id}" for partner in config.partners}
        | {f"dataset:{dataset.id}" for dataset in config.datasets}
    )


def assets_of(condition) -> list[Asset]:
    """Every asset named in a schedule's asset condition, however it is combined."""
    if isinstance(condition, Asset):
        return [condition]
    if isinstance(condition, AssetBooleanCondition):
        return [asset for part in condition.objects for asset in assets_of(part)]
    return []


def test_dags_folder_imports_without_errors(dagbag: DagBag) -> None:
    assert dagbag.import_errors == {}, json.dumps(dagbag.import_errors, indent=2)


def test_one_ingest_dag_per_feed_plus_deadlines_digest_and_board_pack(dagbag: DagBag, config: Partnership) -> None:
    expected = {f"ingest_{feed.id}" for feed in config.feeds} | {"deadlines", "weekly_digest", "board_pack"}
    assert set(dagbag.dag_ids) == expected


def test_every_dag_is_owned_by_partnerflow_and_has_a_runbook(dagbag: DagBag) -> None:
    problems = []
    for dag_id, dag in dagbag.dags.items():
        if dag.owner != "partnerflow":
            problems.append(f"{dag_id}: owner {dag.owner!r}")
        doc = (dag.doc_md or "").strip()
        if not doc.startswith("# ") or len(doc) < MIN_RUNBOOK_CHARS:
            problems.append(f"{dag_id}: doc_md is not a run book (a '# ' heading and {MIN_RUNBOOK_CHARS}+ chars)")
    assert problems == []


def test_tags_come_from_the_allowed_set(dagbag: DagBag, config: Partnership) -> None:
    allowed = allowed_tags(config)
    problems = [
        f"{dag_id}: tag {tag!r} is not allowed"
        for dag_id, dag in dagbag.dags.items()
        for tag in sorted(dag.tags)
        if tag not in allowed
    ]
    untagged = [dag_id for dag_id, dag in dagbag.dags.items() if "partnerflow" not in dag.tags]
    problems += [f"{dag_id}: no 'partnerflow' tag" for dag_id in untagged]
    assert problems == []


def test_ingest_dags_are_tagged_with_their_partner_and_dataset(dagbag: DagBag, config: Partnership) -> None:
    for feed in config.feeds:
        tags = dagbag.dags[f"ingest_{feed.id}"].tags
        assert {"ingest", f"partner:{feed.partner}", f"dataset:{feed.dataset}"} <= set(tags), feed.id


def test_every_task_retries_with_exponential_backoff(dagbag: DagBag) -> None:
    problems = []
    for dag_id, dag in dagbag.dags.items():
        for task in dag.tasks:
            where = f"{dag_id}.{task.task_id}"
            if not task.retries or task.retries < 1:
                problems.append(f"{where}: retries={task.retries}")
            if not task.retry_exponential_backoff:
                problems.append(f"{where}: no exponential backoff")
            if task.max_retry_delay is None:
                problems.append(f"{where}: backoff without a ceiling (max_retry_delay)")
    assert problems == []


def test_every_task_fails_at_once_when_someone_must_act(dagbag: DagBag) -> None:
    """Each task's callable sits behind the boundary that turns a TerminalError into AirflowFailException."""
    boundary = fails_at_once_when_terminal(lambda: None).__code__
    problems = [
        f"{dag_id}.{task.task_id}"
        for dag_id, dag in dagbag.dags.items()
        for task in dag.tasks
        if getattr(getattr(task, "python_callable", None), "__code__", None) is not boundary
    ]
    assert problems == []


def test_every_task_fails_into_the_outbox_alert(dagbag: DagBag) -> None:
    problems = []
    for dag_id, dag in dagbag.dags.items():
        for task in dag.tasks:
            callbacks = task.on_failure_callback
            callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
            if not any(isinstance(callback, OutboxFailureAlert) for callback in callbacks):
                problems.append(f"{dag_id}.{task.task_id}: on_failure_callback is {task.on_failure_callback!r}")
    assert problems == []


def test_dags_run_one_at_a_time_and_never_catch_up(dagbag: DagBag) -> None:
    """They write shared tables; correctness rests on database locks, but piling up runs helps nobody."""
    problems = [
        f"{dag_id}: max_active_runs={dag.max_active_runs} catchup={dag.catchup}"
        for dag_id, dag in dagbag.dags.items()
        if dag.max_active_runs != 1 or dag.catchup
    ]
    assert problems == []


def test_no_airflow_2_idioms(dagbag: DagBag) -> None:
    """No email_on_failure (it bypasses the email backend in Airflow 3), no SLAs, no schedule_interval."""
    problems = []
    for dag_id, dag in dagbag.dags.items():
        stale = AIRFLOW_2_DEFAULT_ARGS & set(dag.default_args)
        if stale:
            problems.append(f"{dag_id}: default_args {sorted(stale)}")
        problems += [f"{dag_id}.{task.task_id}: emails {task.email!r}" for task in dag.tasks if task.email]
    for source in [*DAGS_FOLDER.glob("*.py"), Path(dags.__file__)]:
        for number, line in enumerate(source.read_text().splitlines(), start=1):
            if AIRFLOW_2_SOURCE.search(line):
                problems.append(f"{source.name}:{number}: {line.strip()}")
    assert problems == []


def test_sftp_feeds_start_on_arrival_with_a_safety_net_cron(dagbag: DagBag, config: Partnership) -> None:
    sftp_feeds = [feed for feed in config.feeds if isinstance(feed.transport, SftpTransport)]
    assert sftp_feeds, "the demo partnership has an SFTP feed"
    for feed in sftp_feeds:
        timetable = dagbag.dags[f"ingest_{feed.id}"].timetable
        assert isinstance(timetable, AssetOrTimeSchedule), feed.id
        assert isinstance(timetable.timetable, CronTriggerTimetable), feed.id
        (arrivals,) = assets_of(timetable.asset_condition)
        (watcher,) = arrivals.watchers
        assert isinstance(watcher.trigger, SftpArrivalTrigger), feed.id
        assert type(watcher.trigger).__module__ == "partnerflow.transport.arrival", (
            "the triggerer imports it from the package"
        )
        assert (watcher.trigger.sftp_conn_id, watcher.trigger.directory) == (
            feed.transport.connection,
            feed.transport.directory,
        )


def test_api_feeds_poll_on_their_cron(dagbag: DagBag, config: Partnership) -> None:
    api_feeds = [feed for feed in config.feeds if isinstance(feed.transport, HttpTransport)]
    assert api_feeds, "the demo partnership has an API feed"
    for feed in api_feeds:
        timetable = dagbag.dags[f"ingest_{feed.id}"].timetable
        assert isinstance(timetable, CronTriggerTimetable), feed.id
        assert timetable.expression == feed.transport.schedule


def test_board_pack_listens_to_every_feeds_published_asset(dagbag: DagBag, config: Partnership) -> None:
    timetable = dagbag.dags["board_pack"].timetable
    assert isinstance(timetable, AssetTriggeredTimetable)
    listens_to = {asset.name for asset in assets_of(timetable.asset_condition)}
    assert listens_to == {f"published_{feed.id}" for feed in config.feeds}

    for feed in config.feeds:
        outlets = {o.name for task in dagbag.dags[f"ingest_{feed.id}"].tasks for o in task.outlets}
        assert f"published_{feed.id}" in outlets, f"nothing in ingest_{feed.id} emits published_{feed.id}"


def test_parsing_the_dag_file_does_not_import_heavy_libraries() -> None:
    """The dag-processor re-parses every 30 s: GX and pandas belong inside tasks (run in a fresh interpreter)."""
    code = (
        "import json, runpy, sys; "
        f"runpy.run_path({str(DAGS_FOLDER / 'partnerflow_dags.py')!r}); "
        f"print(json.dumps([m for m in {HEAVY_MODULES!r} if m in sys.modules]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=_env_without_config()
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_hundreds_of_feeds_still_build_the_dagbag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw["feeds"] += [_synthetic_feed(n) for n in range(SYNTHETIC_FEEDS)]
    config_path = tmp_path / "partnership.yaml"
    config_path.write_text(yaml.safe_dump(raw, sort_keys=False))

    started = time.perf_counter()
    bag = load_dagbag(config_path, monkeypatch)
    elapsed = time.perf_counter() - started

    assert bag.import_errors == {}
    assert len(bag.dag_ids) == len(raw["feeds"]) + 3
    file_stats = ", ".join(f"{s.file}: {s.duration}" for s in bag.dagbag_stats)
    print(f"\nDagBag with {len(raw['feeds'])} feeds ({len(bag.dag_ids)} DAGs): {elapsed:.2f}s ({file_stats})")


def _synthetic_feed(n: int) -> dict:
    """Feed number n: alternately an SFTP drop for the council and an API for the police."""
    if n % 2 == 0:
        return {
            "id": f"synthetic_{n:03d}",
            "partner": "council",
            "dataset": "referrals",
            "title": f"Synthetic council feed {n}",
            "transport": {
                "kind": "sftp",
                "connection": f"partnerflow_sftp_synthetic_{n:03d}",
                "directory": f"/synthetic/{n:03d}",
                "pattern": "referrals_{period}.csv",
            },
            "format": {"kind": "csv"},
        }
    return {
        "id": f"synthetic_{n:03d}",
        "partner": "police",
        "dataset": "police_ppn",
        "title": f"Synthetic police feed {n}",
        "transport": {
            "kind": "http",
            "connection": f"partnerflow_api_synthetic_{n:03d}",
            "endpoint": "/v1/returns/{period}",
            "schedule": f"{n % 60} */4 * * *",
        },
        "format": {"kind": "json"},
    }


def _env_without_config() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if name != "PARTNERFLOW_CONFIG"}
