"""Loads keep the invariants in docs/invariants.md when runs collide, connections die and tasks are killed.

Each test drives the package's own path (ingest.fetch, ingest.decide) against the real SFTP server and
the embedded PostgreSQL, and then looks at the warehouse the way a reader or an engineer would.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from partnerflow import warehouse
from partnerflow.core.periods import Period
from partnerflow.pipeline import ingest
from partnerflow.warehouse import partitions
from partnerflow_dev.synthetic import referrals_csv
from tests.integration.transport_stack import (
    SFTP_FEED,
    assert_every_file_accounted_for,
    ledger_rows,
    scalar,
    stack_fixture,  # noqa: F401 (the ``stack`` fixture)
    staging_tables,
    upload,
)

PERIOD = Period.from_id("2026Q3")
NAME = "referrals_2026Q3.csv"
DEADLINE_SECONDS = 120
_MTIMES = itertools.count(int(time.time()) - 3600, 10)


def _receive(stack, config, *, seed: int, n: int) -> int:
    """Upload a version of the return and fetch it; its ledger id (the newest waiting to be decided)."""
    _upload_new_version(stack, config, referrals_csv(PERIOD, seed=seed, n=n))
    return max(ingest.fetch(SFTP_FEED, config=config))


def _upload_new_version(stack, config, content: bytes) -> None:
    """Upload under the same name with an mtime of its own (listings have whole seconds)."""
    path = upload(stack, config.feed(SFTP_FEED), NAME, content)
    mtime = next(_MTIMES)
    os.utime(path, (mtime, mtime))


def _at_once(*calls: Callable[[], Any]) -> list[Any]:
    """Run the calls in threads released together; return each result or the exception it raised."""
    start = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int, call: Callable[[], Any]) -> None:
        start.wait()
        try:
            results[index] = call()
        except Exception as exc:
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE_SECONDS)
        assert not thread.is_alive(), "a run did not finish"
    return results


def _events(file_id: int) -> list[str]:
    with warehouse.engine().connect() as conn:
        return list(
            conn.execute(
                sa.text("SELECT state FROM ops.file_events WHERE file_id = :i ORDER BY id"), {"i": file_id}
            ).scalars()
        )


def _published() -> tuple[int, set[int]]:
    with warehouse.engine().connect() as conn:
        rows, files = conn.execute(
            sa.text("SELECT count(*), array_agg(DISTINCT file_id) FROM core.referrals WHERE period_id = :p"),
            {"p": PERIOD.id},
        ).one()
    return rows, set(files or ())


def test_two_runs_of_one_file_at_once_end_in_one_state(stack, demo_config):
    file_id = _receive(stack, demo_config, seed=31, n=400)
    results = _at_once(
        lambda: ingest.decide(SFTP_FEED, [file_id], config=demo_config),
        lambda: ingest.decide(SFTP_FEED, [file_id], config=demo_config),
    )
    assert not [r for r in results if isinstance(r, Exception)]
    assert {o["state"] for r in results for o in r} == {"published"}
    assert _published() == (400, {file_id})
    assert _events(file_id) == ["received", "published"]
    assert scalar("SELECT count(*) FROM ops.notifications WHERE kind = 'receipt'") == 1
    assert staging_tables() == 0


def test_two_versions_of_one_slice_decided_at_once_leave_the_newer_published(stack, demo_config):
    older = _receive(stack, demo_config, seed=32, n=300)
    newer = _receive(stack, demo_config, seed=33, n=350)
    results = _at_once(
        lambda: ingest.decide(SFTP_FEED, [newer], config=demo_config),
        lambda: ingest.decide(SFTP_FEED, [older], config=demo_config),
    )
    assert not [r for r in results if isinstance(r, Exception)]
    assert ledger_rows(SFTP_FEED) == [(older, "superseded"), (newer, "published")]
    assert _published() == (350, {newer})
    assert staging_tables() == 0
    assert_every_file_accounted_for()


def test_readers_never_see_part_of_a_replacement(stack, demo_config):
    first = _receive(stack, demo_config, seed=34, n=2000)
    ingest.decide(SFTP_FEED, [first], config=demo_config)
    second = _receive(stack, demo_config, seed=35, n=3000)
    seen: set[int] = set()
    done = threading.Event()

    def read() -> None:
        with psycopg.connect(_dsn(), autocommit=True) as conn:  # a statement at a time, as dashboards read
            while not done.is_set():
                seen.add(conn.execute("SELECT count(*) FROM core.referrals").fetchone()[0])

    reader = threading.Thread(target=read)
    reader.start()
    try:
        ingest.decide(SFTP_FEED, [second], config=demo_config)
    finally:
        done.set()
        reader.join(DEADLINE_SECONDS)
    assert seen <= {2000, 3000}
    assert _published() == (3000, {second})


def test_a_reader_holding_a_transaction_open_delays_publish_then_it_fails_clearly_and_a_retry_publishes(
    stack, demo_config, monkeypatch
):
    first = _receive(stack, demo_config, seed=38, n=500)
    ingest.decide(SFTP_FEED, [first], config=demo_config)
    second = _receive(stack, demo_config, seed=39, n=700)
    monkeypatch.setattr(partitions, "LOCK_TIMEOUT", "1s")
    with psycopg.connect(_dsn()) as reader:  # a transaction left open, as a careless client does
        assert reader.execute("SELECT count(*) FROM core.referrals").fetchone() == (500,)
        with pytest.raises(partitions.TableBusy, match="core.referrals was being read"):
            ingest.decide(SFTP_FEED, [second], config=demo_config)
        assert reader.execute("SELECT count(*) FROM core.referrals").fetchone() == (500,)
    assert ledger_rows(SFTP_FEED)[-2:] == [(first, "published"), (second, "received")]
    assert _published() == (500, {first})

    assert [o["state"] for o in ingest.decide(SFTP_FEED, [second], config=demo_config)] == ["published"]
    assert _published() == (700, {second})
    assert scalar(f"SELECT to_regclass('{partitions.partition_name('core.referrals', first)}') IS NULL")


def test_postgres_connection_killed_mid_copy_leaves_nothing_and_a_rerun_publishes(stack, demo_config, monkeypatch):
    file_id = _receive(stack, demo_config, seed=36, n=3000)
    copying, killed = threading.Event(), threading.Event()
    originals = {name: getattr(psycopg.Copy, name) for name in ("write", "write_row")}

    def holding(original):
        def write(self, data):  # the COPY has started: hold its first data until the connection is killed
            if not copying.is_set():
                copying.set()
                assert killed.wait(DEADLINE_SECONDS)
            return original(self, data)

        return write

    for name, original in originals.items():
        monkeypatch.setattr(psycopg.Copy, name, holding(original))
    results: list[Any] = []
    run = threading.Thread(target=lambda: results.append(_try(ingest.decide, SFTP_FEED, [file_id], config=demo_config)))
    run.start()
    assert copying.wait(DEADLINE_SECONDS)
    with psycopg.connect(_dsn(), autocommit=True) as admin:
        terminated = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND query LIKE 'COPY staging.%'"
        ).fetchall()
    killed.set()
    run.join(DEADLINE_SECONDS)
    assert terminated == [(True,)]
    (outcome,) = results
    assert isinstance(outcome, Exception)  # the task fails; Airflow retries it
    assert ledger_rows(SFTP_FEED) == [(file_id, "received")]
    assert scalar("SELECT count(*) FROM core.referrals") == 0
    assert staging_tables() == 0

    for name, original in originals.items():
        monkeypatch.setattr(psycopg.Copy, name, original)
    assert [o["state"] for o in ingest.decide(SFTP_FEED, [file_id], config=demo_config)] == ["published"]
    assert _published() == (3000, {file_id})


# A decide run that reports the moment its publish has committed, then waits to be killed.
_DECIDE_THEN_WAIT = """
import sys
from partnerflow.pipeline import ingest

published = ingest.publish

def publish_then_wait(*args, **kwargs):
    outcome = published(*args, **kwargs)  # committed: the slice is published and the ledger says so
    print("committed", flush=True)
    sys.stdin.read()  # until the test kills this process
    return outcome

ingest.publish = publish_then_wait
ingest.decide(sys.argv[1], [int(sys.argv[2])])
"""


def test_task_killed_by_a_signal_after_commit_before_reporting_converges_on_rerun(stack, demo_config):
    file_id = _receive(stack, demo_config, seed=37, n=250)
    task = subprocess.Popen(
        [sys.executable, "-c", _DECIDE_THEN_WAIT, SFTP_FEED, str(file_id)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert "committed\n" in iter(task.stdout.readline, "")  # log lines may come first; EOF ends the wait
    finally:
        task.send_signal(signal.SIGKILL)  # as the OOM killer or a lost worker would
        task.wait(DEADLINE_SECONDS)
    assert task.returncode == -signal.SIGKILL

    # Airflow retries the task with the same input; the ledger already says published.
    assert [o["state"] for o in ingest.decide(SFTP_FEED, [file_id], config=demo_config)] == ["published"]
    assert ingest.fetch(SFTP_FEED, config=demo_config) == []  # and a new run finds nothing left to do
    assert _published() == (250, {file_id})
    assert _events(file_id) == ["received", "published"]
    assert scalar("SELECT count(*) FROM ops.notifications WHERE kind = 'receipt'") == 1


def test_same_bytes_again_is_a_recorded_duplicate_and_changes_nothing(stack, demo_config):
    content = referrals_csv(PERIOD, seed=38, n=90)
    _upload_new_version(stack, demo_config, content)
    (first,) = ingest.fetch(SFTP_FEED, config=demo_config)
    ingest.decide(SFTP_FEED, [first], config=demo_config)
    _upload_new_version(stack, demo_config, content)  # the same bytes uploaded again
    assert ingest.fetch(SFTP_FEED, config=demo_config) == []
    ((_, _), (duplicate, state)) = ledger_rows(SFTP_FEED)
    assert state == "duplicate"
    assert scalar("SELECT reason FROM ops.file_events WHERE file_id = :i", i=duplicate) == f"same bytes as file {first}"
    assert _published() == (90, {first})
    assert_every_file_accounted_for()


def test_corrected_file_under_the_same_name_supersedes_and_the_old_bytes_stay(stack, demo_config):
    first = _receive(stack, demo_config, seed=39, n=100)
    ingest.decide(SFTP_FEED, [first], config=demo_config)
    second = _receive(stack, demo_config, seed=40, n=110)
    ingest.decide(SFTP_FEED, [second], config=demo_config)
    assert ledger_rows(SFTP_FEED) == [(first, "superseded"), (second, "published")]
    assert _events(first) == ["received", "published", "superseded"]
    assert scalar("SELECT reason FROM ops.file_events WHERE file_id = :i AND state = 'superseded'", i=first) == (
        f"replaced by file {second}"
    )
    assert _published() == (110, {second})
    old_path = scalar("SELECT landed_path FROM ops.received_files WHERE id = :i", i=first)
    assert (stack.var / "landing" / old_path).read_bytes() == referrals_csv(PERIOD, seed=39, n=100)
    assert_every_file_accounted_for()


def _try(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return call(*args, **kwargs)
    except Exception as exc:
        return exc


def _dsn() -> str:
    return sa.make_url(warehouse.warehouse_url()).set(drivername="postgresql").render_as_string(hide_password=False)
