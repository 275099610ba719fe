"""Building partnerflow's DAGs from the validated partnership configuration.

One ingest DAG per feed (``ingest_<feed>``), the daily ``deadlines`` DAG and the ``board_pack`` DAG. The file
in ``dags/`` only calls :func:`build_all`. DAGs have no ``start_date`` on purpose: a new or redeployed DAG
then waits for its next scheduled time instead of at once running the latest past one (which would
chase partners, or pull, at an unplanned moment). Task bodies import their heavy modules (Great Expectations, the
providers' hooks) when they run, so parsing stays fast with hundreds of feeds.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import DAG, Asset, AssetOrTimeSchedule, AssetWatcher, CronTriggerTimetable, task
from airflow.sdk.exceptions import AirflowSkipException

from partnerflow.alerts import OutboxFailureAlert
from partnerflow.config import Feed, Partnership, SftpTransport, partnership
from partnerflow.triggers import SftpArrivalTrigger

OWNER = "partnerflow"
SAFETY_NET_CRON = "*/30 * * * *"
DEADLINES_CRON = "0 7 * * *"


def default_args() -> dict[str, Any]:
    return {
        "owner": OWNER,
        "retries": 3,
        "retry_delay": dt.timedelta(seconds=30),
        "retry_exponential_backoff": True,
        "max_retry_delay": dt.timedelta(minutes=30),
        "on_failure_callback": [OutboxFailureAlert()],
    }


def published_asset(feed: Feed) -> Asset:
    """The asset an ingest DAG updates when it publishes a slice; the Board pack listens to these."""
    return Asset(name=f"published_{feed.id}", uri=f"partnerflow://published/{feed.id}", group="partnerflow")


def arrival_asset(feed: Feed) -> Asset:
    """The asset the SFTP watcher updates when files arrive on a feed's drop."""
    transport = feed.transport
    assert isinstance(transport, SftpTransport)
    trigger = SftpArrivalTrigger(
        sftp_conn_id=transport.connection,
        directory=transport.directory,
        pattern=transport.pattern,
        poll_seconds=transport.poll_seconds,
    )
    return Asset(
        name=f"arrivals_{feed.id}",
        uri=f"partnerflow://arrivals/{feed.id}",
        group="partnerflow",
        watchers=[AssetWatcher(name=f"sftp_arrivals_{feed.id}", trigger=trigger)],
    )


@task(task_id="send_notifications", trigger_rule="all_done", retries=1)
def send_notifications() -> dict[str, int]:
    """Drain the outbox: whatever the run decided is told to people now (and by any later run if this fails)."""
    from partnerflow import warehouse
    from partnerflow.notify.sender import send_pending

    summary = send_pending(warehouse.engine())
    return {name: getattr(summary, name) for name in ("sent", "retried", "dead", "blocked")}


def ingest_dag(config: Partnership, feed: Feed) -> DAG:
    partner = config.partner(feed.partner)
    dataset = config.dataset(feed.dataset)
    publishes = published_asset(feed)
    if isinstance(feed.transport, SftpTransport):
        schedule: Any = AssetOrTimeSchedule(
            timetable=CronTriggerTimetable(SAFETY_NET_CRON, timezone="UTC"), assets=[arrival_asset(feed)]
        )
        started_by = (
            f"a file arriving on `{feed.transport.directory}` (an SFTP watcher), with a safety-net run every 30 minutes"
        )
    else:
        schedule = CronTriggerTimetable(feed.transport.schedule, timezone="UTC")
        started_by = f"its schedule (`{feed.transport.schedule}`, UTC), polling the partner's API"

    with DAG(
        dag_id=f"ingest_{feed.id}",
        description=f"{partner.name}: {feed.title}",
        schedule=schedule,
        catchup=False,
        max_active_runs=1,
        default_args=default_args(),
        tags=["partnerflow", "ingest", f"partner:{partner.id}", f"dataset:{dataset.id}"],
        doc_md=_ingest_runbook(config, feed, started_by),
        params={"period": None},
    ) as dag:

        @task(task_id="fetch")
        def fetch(**context) -> list[int]:
            from partnerflow import ingest

            return ingest.fetch(feed.id, period_id=context["params"].get("period"))

        @task(task_id="decide")
        def decide(file_ids: list[int]) -> list[dict[str, Any]]:
            from partnerflow import ingest

            return ingest.decide(feed.id, file_ids)

        @task(task_id="announce", outlets=[publishes])
        def announce(outcomes: list[dict[str, Any]], *, outlet_events=None) -> None:
            published = [o for o in outcomes if o["state"] == "published"]
            if not published:
                raise AirflowSkipException("nothing was published in this run")
            outlet_events[publishes].extra = {
                "feed_id": feed.id,
                "periods": sorted({o["period_id"] for o in published}),
                "file_ids": [o["file_id"] for o in published],
            }

        outcomes = decide(fetch())
        announce(outcomes)
        outcomes >> send_notifications()
    return dag


def deadlines_dag(config: Partnership) -> DAG:
    with DAG(
        dag_id="deadlines",
        description="The reminder ladder: who is due, late or still failing, told once",
        schedule=CronTriggerTimetable(DEADLINES_CRON, timezone="Europe/London"),
        catchup=False,
        max_active_runs=1,
        default_args=default_args(),
        tags=["partnerflow", "deadlines"],
        doc_md=DEADLINES_RUNBOOK,
        params={"as_of": None},
    ) as dag:

        @task(task_id="run_ladder")
        def run_ladder(**context) -> int:
            from partnerflow import deadlines, ingest, warehouse

            as_of = ingest.as_of_date(context["params"])
            return len(deadlines.run_ladder(warehouse.engine(), partnership(), as_of=as_of))

        run_ladder() >> send_notifications()
    return dag


def board_pack_dag(config: Partnership) -> DAG:
    with DAG(
        dag_id="board_pack",
        description="Rebuild the KPI marts and send the Board's MI pack",
        schedule=[published_asset(feed) for feed in config.feeds],
        catchup=False,
        max_active_runs=1,
        default_args=default_args(),
        tags=["partnerflow", "board-pack"],
        doc_md=BOARD_PACK_RUNBOOK,
        params={"period": None},
    ) as dag:

        @task(task_id="build_and_distribute")
        def build_and_distribute(**context) -> str:
            from partnerflow import clock, warehouse
            from partnerflow.calendar import Period, collecting_period
            from partnerflow.report.boardpack import distribute

            period_id = (
                context["params"].get("period") or _latest_period(context) or collecting_period(clock.today()).id
            )
            distribute(warehouse.engine(), partnership(), Period.from_id(period_id))
            return period_id

        build_and_distribute() >> send_notifications()
    return dag


def _latest_period(context) -> str | None:
    """The newest period named by the asset events that started this run."""
    periods = [
        period
        for events in (context.get("triggering_asset_events") or {}).values()
        for event in events
        for period in (event.extra or {}).get("periods", [])
    ]
    return max(periods) if periods else None


def build_all(config: Partnership | None = None) -> dict[str, DAG]:
    """Every DAG of the partnership, by dag_id."""
    config = config or partnership()
    dags = [ingest_dag(config, feed) for feed in config.feeds]
    dags += [deadlines_dag(config), board_pack_dag(config)]
    return {dag.dag_id: dag for dag in dags}


def _ingest_runbook(config: Partnership, feed: Feed, started_by: str) -> str:
    partner = config.partner(feed.partner)
    contract = f"expectations/{config.dataset(feed.dataset).suite_name}.json"
    return f"""\
# {feed.title}

**Partner:** {partner.name} · **dataset:** `{feed.dataset}` · **contract:** `{contract}`

Started by {started_by}. A run: **fetch** lands every new file (raw bytes by sha256, a ledger row) →
**decide** parses, minimises, stages (COPY), checks the contract and either publishes the feed × period
slice in one transaction or quarantines the file → **announce** emits `published_{feed.id}` for the Board
pack → **send_notifications** drains the outbox (receipt or rejection report).

## When it fails
- *fetch* failing: the partner's server is unreachable, its host key changed, or a file changed while
  downloading. Nothing is half-loaded; retries back off, then the data team and the officer get an alert.
  Check the connection `{feed.transport.connection}`, then clear the task.
- *decide* failing (not a rejection — rejections succeed): an engineer's problem (contract file, database).
  The file stays `received` in `ops.received_files` and the next run picks it up.
- A rejected file is normal operation: the partner got a report; published data is unchanged.

## Rerun or backfill
Safe at any time: every decision is locked per feed × period and recorded in the ledger, so a rerun does
nothing twice. Trigger with `{{"period": "2026Q3"}}` to pull a specific period from an API feed.
"""


DEADLINES_RUNBOOK = """\
# Deadlines: the reminder ladder

Every morning, for each feed's collecting period: an advance reminder before the due date, a due-day
reminder, an overdue reminder, and an escalation to the partner's senior lead — each sent at most once
(a unique outbox key), and none once the return is published. Trigger with `{"as_of": "2026-10-21"}` to act
for a given day; re-running a day sends nothing new.
"""

BOARD_PACK_RUNBOOK = """\
# Board pack

Runs when every feed has published a new slice (or by hand with `{"period": "2026Q3"}`): rebuilds the KPI
marts, renders the pack under `var/boardpack/<period>/`, and sends it once to the Board list. Missing or
late partners are named in the pack, never left out silently.
"""
