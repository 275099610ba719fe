"""Engineers' alerts: one incident message per DAG x period with a cool-down, and a recovery message, through
the notifiers every DAG uses, against a real PostgreSQL and the SendGrid sink."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from partnerflow import warehouse
from partnerflow.airflow.callbacks import OutboxFailureAlert, OutboxRecoveryNotice, incident_period
from partnerflow.core import clock
from partnerflow.core.config import Partnership
from partnerflow.notify import incidents
from partnerflow_dev.sendgrid_sink import SendgridSink
from tests.integration.ladder_world import outbox

API_KEY = "SG.incidents.test"
START = dt.datetime(2026, 10, 21, 9, 0, tzinfo=clock.LONDON)


@pytest.fixture
def engine(warehouse_url: str, var: Path):
    clock.set_now(START)
    yield warehouse.engine()
    clock.set_now(None)


@pytest.fixture
def sink(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SendgridSink]:
    with SendgridSink(out_dir=tmp_path / "sink", api_key=API_KEY) as server:
        monkeypatch.setenv("PARTNERFLOW_SENDGRID_API_KEY", API_KEY)
        monkeypatch.setenv("PARTNERFLOW_SENDGRID_HOST", server.url)
        yield server


def later(hours: float) -> None:
    clock.set_now(START + dt.timedelta(hours=hours))


def fail(
    engine, partnership: Partnership, task_id: str = "fetch", *, dag_id: str = "ingest_police_ppn", period="2026Q3"
):
    return incidents.dag_task_failed(
        engine,
        partnership,
        dag_id=dag_id,
        task_id=task_id,
        period_id=period,
        error="TransportError",
        run_url=f"/dags/{dag_id}/runs/scheduled__x",
    )


def succeed(engine, partnership: Partnership, task_id: str = "fetch", *, dag_id: str = "ingest_police_ppn"):
    return incidents.dag_task_succeeded(engine, partnership, dag_id=dag_id, task_id=task_id)


def test_a_dag_failing_all_day_alerts_once_then_after_each_cool_down(engine, demo_config: Partnership) -> None:
    first = fail(engine, demo_config)
    assert first == "incident:ingest_police_ppn:2026Q3:incident=1:alert=1"
    for hours in (0.5, 1, 2, 5.9):  # every safety-net run fails again: no new message
        later(hours)
        assert fail(engine, demo_config) is None
    later(6)
    assert fail(engine, demo_config) == "incident:ingest_police_ppn:2026Q3:incident=1:alert=2"
    later(7)
    assert fail(engine, demo_config) is None

    alerts = outbox(engine)
    assert sorted(alerts) == [first, "incident:ingest_police_ppn:2026Q3:incident=1:alert=2"]
    assert alerts[first]["subject"] == "Blanktown SCP: ingest_police_ppn failing for Q2 2026/27"
    repeat = alerts["incident:ingest_police_ppn:2026Q3:incident=1:alert=2"]
    assert repeat["subject"] == "Blanktown SCP: ingest_police_ppn still failing for Q2 2026/27"
    assert repeat["recipients"] == [p.email for p in demo_config.engineers]
    assert repeat["cc"] == [demo_config.officer.email]


def test_recovery_comes_once_when_everything_that_failed_works_again(engine, demo_config: Partnership) -> None:
    fail(engine, demo_config, "fetch")
    fail(engine, demo_config, "decide")
    assert succeed(engine, demo_config, "announce") == []  # never failed
    assert succeed(engine, demo_config, "fetch") == []  # decide still failing
    later(1)
    assert succeed(engine, demo_config, "decide") == ["incident-recovery:ingest_police_ppn:2026Q3:incident=1"]
    assert succeed(engine, demo_config, "decide") == []

    with engine.connect() as conn:
        failures, resolved = conn.execute(sa.text("SELECT failures, resolved_at FROM ops.incidents")).one()
    assert failures == 2 and resolved == START + dt.timedelta(hours=1)
    recovery = outbox(engine)["incident-recovery:ingest_police_ppn:2026Q3:incident=1"]
    assert recovery["subject"] == "Blanktown SCP: ingest_police_ppn working again for Q2 2026/27"


def test_a_flapping_dag_is_not_announced_again_within_the_cool_down(engine, demo_config: Partnership) -> None:
    assert fail(engine, demo_config)
    later(0.5)
    assert succeed(engine, demo_config)  # recovery for the alerted incident
    later(1)
    assert fail(engine, demo_config) is None  # a new incident, but within the cool-down of the last alert
    later(1.5)
    assert succeed(engine, demo_config) == []  # nobody heard of that one, so no recovery either
    later(8)
    assert fail(engine, demo_config) == "incident:ingest_police_ppn:2026Q3:incident=3:alert=1"


def test_each_dag_and_period_is_its_own_incident(engine, demo_config: Partnership) -> None:
    assert fail(engine, demo_config, period="2026Q3")
    assert fail(engine, demo_config, period="2026Q2")
    assert fail(engine, demo_config, dag_id="deadlines", task_id="run_ladder")
    with engine.connect() as conn:
        assert len(incidents.open_incidents(conn)) == 3


def test_the_notifiers_tell_people_through_the_outbox_and_sendgrid(
    engine, demo_config: Partnership, sink: SendgridSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example.org/")
    dag_run = SimpleNamespace(conf={"period": "2026Q3"}, run_id="manual__2026-10-21")

    def context(task_id: str, exception: BaseException | None = None) -> dict:
        ti = SimpleNamespace(dag_id="ingest_council_referrals", task_id=task_id)
        return {"ti": ti, "dag_run": dag_run, "exception": exception}

    OutboxFailureAlert().notify(context("fetch", TimeoutError("row 7 had CANARY-42")))
    OutboxFailureAlert().notify(context("fetch", TimeoutError("row 8 had CANARY-42")))
    OutboxRecoveryNotice().notify(context("fetch"))

    sent = sink.messages()
    assert [m["subject"] for m in sent] == [
        "Blanktown SCP: ingest_council_referrals failing for Q2 2026/27",
        "Blanktown SCP: ingest_council_referrals working again for Q2 2026/27",
    ]
    alert_text = next(c["value"] for c in sent[0]["content"] if c["type"] == "text/plain")
    assert "The task fetch failed after all its retries (TimeoutError)." in alert_text
    assert "https://airflow.example.org/dags/ingest_council_referrals/runs/manual__2026-10-21" in alert_text
    assert "CANARY" not in str(sent)


def test_the_period_of_an_incident(demo_config: Partnership, var: Path) -> None:
    clock.set_now(START)
    try:
        assert incident_period({"period": "2026M10"}, demo_config) == "2026M10"
        assert incident_period({"as_of": "2026-07-02"}, demo_config) == "2026Q2"
        assert incident_period(None, demo_config) == "2026Q3"
        assert incident_period({"period": "nonsense"}, demo_config) == "2026Q3"
    finally:
        clock.set_now(None)
