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
POLICE = "Police PPNs and DA incidents with a child present from Blanktown Police"
REFERRALS = "Council referrals and assessments from Blanktown Council Children's Services"


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
    assert alerts[first]["subject"] == f"Blanktown SCP: {POLICE} — we can't collect the Q2 2026/27 return"
    repeat = alerts["incident:ingest_police_ppn:2026Q3:incident=1:alert=2"]
    assert repeat["subject"] == f"Blanktown SCP: {POLICE} — we still can't collect the Q2 2026/27 return"
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
    assert recovery["subject"] == f"Blanktown SCP: {POLICE} — we can collect the Q2 2026/27 return again"
    assert "ingest_police_ppn" not in recovery["subject"]


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

    task = SimpleNamespace(
        retries=3,
        retry_delay=dt.timedelta(seconds=30),
        retry_exponential_backoff=True,
        max_retry_delay=dt.timedelta(minutes=30),
    )
    alert = OutboxFailureAlert(runs="whenever a file arrives and every 30 minutes", cron="*/30 * * * *")
    alert.notify({**context("fetch", TimeoutError("row 7 had CANARY-42")), "task": task})
    alert.notify({**context("fetch", TimeoutError("row 8 had CANARY-42")), "task": task})
    OutboxRecoveryNotice().notify(context("fetch"))

    sent = sink.messages()
    assert [m["subject"] for m in sent] == [
        f"Blanktown SCP: {REFERRALS} — we can't collect the Q2 2026/27 return",
        f"Blanktown SCP: {REFERRALS} — we can collect the Q2 2026/27 return again",
    ]
    assert all("ingest_council_referrals" not in m["subject"] for m in sent)
    alert_text = next(c["value"] for c in sent[0]["content"] if c["type"] == "text/plain")
    officer_reads, data_team_reads = alert_text.split("FOR THE DATA TEAM")
    assert "Due: Wednesday 21 October 2026" in officer_reads
    assert (
        "Board pack at risk: this return goes into the pack for the Board meeting on Thursday 10 December 2026, "
        "due Thursday 3 December 2026" in officer_reads
    )
    # the retry schedule is the task's (the DAG's default_args); the next run is the DAG's clock's
    assert (
        "Retrying until it works: it runs whenever a file arrives and every 30 minutes (next at Wed 21 Oct 09:30),"
        " and each run tries 4 times, waiting 30 seconds at first and up to 2 minutes between tries"
    ) in officer_reads
    assert "Nobody yet: partnerflow is retrying" in officer_reads
    # the technical cause is for the data team only
    for technical in ("TimeoutError", "fetch", "ingest_council_referrals", "/runs/"):
        assert technical not in officer_reads, technical
    assert "Task: fetch" in data_team_reads and "DAG: ingest_council_referrals" in data_team_reads
    assert "Error: TimeoutError (the message is in the task log)" in data_team_reads
    assert "https://airflow.example.org/dags/ingest_council_referrals/runs/manual__2026-10-21" in data_team_reads
    # the officer is copied: the footer sends her to the data team, never to herself
    footer = alert_text.split("\n--\n")[1]
    assert demo_config.officer.email not in footer and "data.team@blanktown.example.org" in footer
    assert "CANARY" not in str(sent)


def test_a_terminal_failure_says_who_must_act(engine, demo_config: Partnership, sink: SendgridSink) -> None:
    from partnerflow.airflow.callbacks import SomeoneMustAct
    from partnerflow.transport.errors import PartnerRefused, TransportRefused

    dag_run = SimpleNamespace(conf={"period": "2026Q3"}, run_id="manual__2026-10-21")

    def context(dag_id: str, error: Exception) -> dict:
        ti = SimpleNamespace(dag_id=dag_id, task_id="fetch")
        return {"ti": ti, "dag_run": dag_run, "exception": SomeoneMustAct(error)}

    OutboxFailureAlert().notify(
        context("ingest_council_referrals", TransportRefused("council_referrals: the server refused our key"))
    )
    OutboxFailureAlert().notify(
        context("ingest_police_ppn", PartnerRefused("police_ppn: partner API forbids us this return (HTTP 403)"))
    )
    council, police = (next(c["value"] for c in m["content"] if c["type"] == "text/plain") for m in sink.messages())
    assert council.split("\n\n")[2] == "Someone must act: council_referrals: the server refused our key"
    assert "Not retrying: someone must act." in council
    assert "WHO MUST ACT\nThe data team (data.team@blanktown.example.org)" in council
    assert "Blanktown Police must act: please ask Public protection analyst (ppu.analyst@police" in police
    assert "Error: PartnerRefused: police_ppn: partner API forbids us this return (HTTP 403)" in police


def test_the_period_of_an_incident(demo_config: Partnership, var: Path) -> None:
    clock.set_now(START)
    try:
        assert incident_period({"period": "2026M10"}, demo_config) == "2026M10"
        assert incident_period({"as_of": "2026-07-02"}, demo_config) == "2026Q2"
        assert incident_period(None, demo_config) == "2026Q3"
        assert incident_period({"period": "nonsense"}, demo_config) == "2026Q3"
    finally:
        clock.set_now(None)
