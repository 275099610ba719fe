"""Building partnerflow's DAGs from the validated partnership configuration.

One ingest DAG per feed (``ingest_<feed>``), the daily ``deadlines`` DAG, the officer's ``weekly_digest``
and the ``board_pack`` DAG. The file
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

from partnerflow.airflow.callbacks import OutboxFailureAlert, OutboxRecoveryNotice, fails_at_once_when_terminal
from partnerflow.core.config import Feed, Partnership, SftpTransport, partnership
from partnerflow.transport.arrival import SftpArrivalTrigger

OWNER = "partnerflow"
SAFETY_NET_CRON = "*/30 * * * *"
DEADLINES_CRON = "0 7 * * *"
DIGEST_CRON = "0 8 * * 1"


def default_args(runs: str = "", cron: str | None = None, timezone: str = "UTC") -> dict[str, Any]:
    """Every task: retries with backoff for what may pass (``TransientError``, anything unexpected); a
    ``TerminalError`` skips them (``fails_at_once_when_terminal`` on each task). ``runs`` (words), ``cron`` and
    ``timezone`` (the DAG's clock) let a failure alert say when partnerflow tries again."""
    return {
        "owner": OWNER,
        "retries": 3,
        "retry_delay": dt.timedelta(seconds=30),
        "retry_exponential_backoff": True,
        "max_retry_delay": dt.timedelta(minutes=30),
        "on_failure_callback": [OutboxFailureAlert(runs=runs, cron=cron, timezone=timezone)],
        "on_success_callback": [OutboxRecoveryNotice()],
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
        completeness=transport.completeness,
        min_age_seconds=transport.min_age_seconds,
    )
    return Asset(
        name=f"arrivals_{feed.id}",
        uri=f"partnerflow://arrivals/{feed.id}",
        group="partnerflow",
        watchers=[AssetWatcher(name=f"sftp_arrivals_{feed.id}", trigger=trigger)],
    )


@task(task_id="send_notifications", trigger_rule="all_done", retries=1)
@fails_at_once_when_terminal
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
        retry_args = default_args("whenever a file arrives and every 30 minutes", SAFETY_NET_CRON)
    else:
        schedule = CronTriggerTimetable(feed.transport.schedule, timezone="UTC")
        started_by = f"its schedule (`{feed.transport.schedule}`, UTC), polling the partner's API"
        retry_args = default_args("on its polling schedule", feed.transport.schedule)

    with DAG(
        dag_id=f"ingest_{feed.id}",
        description=f"{partner.name}: {feed.title}",
        schedule=schedule,
        catchup=False,
        max_active_runs=1,
        default_args=retry_args,
        tags=["partnerflow", "ingest", f"partner:{partner.id}", f"dataset:{dataset.id}"],
        doc_md=_ingest_runbook(config, feed, started_by),
        params={"period": None},
    ) as dag:

        @task(task_id="fetch")
        @fails_at_once_when_terminal
        def fetch(**context) -> list[int]:
            from partnerflow.pipeline import ingest

            return ingest.fetch(feed.id, period_id=context["params"].get("period"))

        @task(task_id="decide")
        @fails_at_once_when_terminal
        def decide(file_ids: list[int]) -> list[dict[str, Any]]:
            from partnerflow.pipeline import ingest

            return ingest.decide(feed.id, file_ids)

        @task(task_id="announce", outlets=[publishes])
        @fails_at_once_when_terminal
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
        default_args=default_args("every morning at 07:00", DEADLINES_CRON, "Europe/London"),
        tags=["partnerflow", "deadlines"],
        doc_md=DEADLINES_RUNBOOK,
        params={"as_of": None},
    ) as dag:

        @task(task_id="run_ladder")
        @fails_at_once_when_terminal
        def run_ladder(**context) -> int:
            from partnerflow import warehouse
            from partnerflow.chasing import ladder

            as_of = _run_day(context)
            return len(ladder.run_ladder(warehouse.engine(), partnership(), as_of=as_of))

        run_ladder() >> send_notifications()
    return dag


def weekly_digest_dag(config: Partnership) -> DAG:
    with DAG(
        dag_id="weekly_digest",
        description="The officer's weekly digest: who has sent what, who was chased",
        schedule=CronTriggerTimetable(DIGEST_CRON, timezone="Europe/London"),
        catchup=False,
        max_active_runs=1,
        default_args=default_args("every Monday at 08:00", DIGEST_CRON, "Europe/London"),
        tags=["partnerflow", "deadlines"],
        doc_md=DIGEST_RUNBOOK,
        params={"as_of": None},
    ) as dag:

        @task(task_id="build_digest")
        @fails_at_once_when_terminal
        def build_digest(**context) -> str | None:
            from partnerflow import warehouse
            from partnerflow.chasing import digest

            return digest.send_weekly_digest(warehouse.engine(), partnership(), as_of=_run_day(context))

        build_digest() >> send_notifications()
    return dag


def _run_day(context) -> dt.date:
    """The day a deadlines or digest run acts for (``ladder.run_day``); skips a scheduled run while the
    clock is pinned outside production."""
    from partnerflow.chasing import ladder

    dag_run = context["dag_run"]
    run_type = getattr(dag_run.run_type, "value", dag_run.run_type)
    day = ladder.run_day(context["params"], logical_date=context.get("logical_date"), run_type=run_type)
    if day is None:
        raise AirflowSkipException(
            "partnerflow's clock is pinned outside production: scheduled runs do nothing; trigger with conf as_of"
        )
    return day


def board_pack_dag(config: Partnership) -> DAG:
    """build → prebrief → send_prebriefs → wait_for_approval → distribute → send_notifications.

    Started by any feed publishing (or by hand with ``{"period": ...}``). The wait is a sensor in
    reschedule mode, so it holds no worker while the pack waits for its day and its approval.
    """
    from airflow.sdk import AssetAny, PokeReturnValue

    poke_seconds, wait_limit = 30, dt.timedelta(days=30)
    with DAG(
        dag_id="board_pack",
        description="Build the Board's MI pack, pre-brief partner leads on red items, wait for approval, send it",
        schedule=AssetAny(*(published_asset(feed) for feed in config.feeds)),
        catchup=False,
        max_active_runs=1,
        default_args=default_args("whenever a return is published"),
        tags=["partnerflow", "board-pack"],
        doc_md=BOARD_PACK_RUNBOOK,
        params={"period": None},
    ) as dag:

        @task(task_id="build")
        @fails_at_once_when_terminal
        def build(**context) -> dict[str, Any]:
            from partnerflow import warehouse
            from partnerflow.core import clock
            from partnerflow.core.periods import Period, collecting_period
            from partnerflow.report import distribution

            current = partnership()
            requested = context["params"].get("period")
            period_id = requested or _latest_period(context) or collecting_period(clock.today(), current).id
            period = Period.from_id(period_id)
            engine = warehouse.engine()
            if not requested:
                build_now, reason = distribution.should_build(engine, current, period)
                if not build_now:
                    raise AirflowSkipException(f"{period.id}: {reason}")
            prepared = distribution.prepare(engine, current, period)
            if not prepared.needs_sending:
                version = prepared.record.version
                raise AirflowSkipException(f"{period.id}: version {version} was sent; the data is unchanged")
            return {"period": period.id, "record_id": prepared.record.id, "version": prepared.record.version}

        @task(task_id="prebrief")
        @fails_at_once_when_terminal
        def prebrief(draft: dict[str, Any]) -> int:
            from partnerflow import warehouse
            from partnerflow.report.prebrief import send_prebriefs

            return len(send_prebriefs(warehouse.engine(), partnership(), draft["record_id"]).queued)

        @task.sensor(task_id="wait_for_approval", poke_interval=poke_seconds, timeout=wait_limit, mode="reschedule")
        @fails_at_once_when_terminal
        def wait_for_approval(draft: dict[str, Any]) -> PokeReturnValue:
            from partnerflow import warehouse
            from partnerflow.report.approval import check_ready

            engine = warehouse.engine()
            readiness = check_ready(engine, partnership(), draft["period"])
            if readiness.prebriefs_queued:  # a rebuilt draft's new pre-briefs go now, not with the pack
                from partnerflow.notify.sender import send_pending

                send_pending(engine)
            return PokeReturnValue(readiness.done, {"state": readiness.state, "reason": readiness.reason})

        @task(task_id="distribute")
        @fails_at_once_when_terminal
        def distribute(draft: dict[str, Any], readiness: dict[str, str]) -> dict[str, Any]:
            from partnerflow import warehouse
            from partnerflow.report import distribution

            if readiness["state"] != "ready":
                raise AirflowSkipException(readiness["reason"])
            sent = distribution.distribute(warehouse.engine(), partnership(), draft["period"])
            if sent.reason != "sent":
                raise AirflowSkipException(f"{draft['period']}: {sent.reason}")
            return {"period": sent.period_id, "version": sent.version, "enqueued": sent.enqueued}

        draft = build()
        briefed = prebrief(draft)
        readiness = wait_for_approval(draft)
        send_prebriefs = send_notifications.override(
            task_id="send_prebriefs", trigger_rule="none_failed_min_one_success"
        )
        briefed >> send_prebriefs() >> readiness
        distribute(draft, readiness) >> send_notifications()
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
    dags += [deadlines_dag(config), weekly_digest_dag(config), board_pack_dag(config)]
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
The whole story: docs/failures.md in the partnerflow repository.
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

Every morning at 07:00 London time, for each feed's open returns: an advance reminder before the due date,
a due-day reminder, an overdue reminder, an escalation to the partner's senior lead (officer copied), and a
"still not accepted" notice when the latest version was rejected near or after the due date. Each stage is
decided once per feed x period (`ops.ladder_steps`) and sent once (a unique outbox key); none once the
return is published.

A scheduled run acts for its logical date in London; trigger with `{"as_of": "2026-10-21"}` to act for a
given day. Re-running or backfilling a day sends nothing new, and a backfill never sends a reminder that
a later one has overtaken. Outside production, while partnerflow's clock is pinned, scheduled runs skip.

## When it fails
The whole story: docs/failures.md in the partnerflow repository.
Nothing is half-sent: each feed x period is decided in one transaction. Fix the cause and clear the task,
or let tomorrow's run catch up (it sends the latest reminder due, not every missed one).
"""

DIGEST_RUNBOOK = """\
# Weekly digest

Every Monday at 08:00 London time the performance officer gets the submissions matrix: for each feed, the
period being collected now and the one before (on time, late, missing, rejected, accepted with warnings;
working days late; who was chased and when), and what is due in the week ahead. One email per ISO week:
re-running the week sends nothing new. Trigger with `{"as_of": "2026-10-19"}` for another week's digest.
Outside production, while partnerflow's clock is pinned, scheduled runs skip.
"""

BOARD_PACK_RUNBOOK = """\
# Board pack

Started whenever a feed publishes, or by hand with `{"period": "2026Q3"}` (which builds even with returns
missing). A run:

- **build**: once every expected return for the period is published (or the build deadline before the next
  Board meeting has passed), builds a draft pack — KPIs, disclosure control, charts, PDF — recorded in
  `ops.board_packs` and saved under `var/boardpack/<period>/v<N>/`. Skips if the pack already sent shows
  exactly today's data; builds a revised version (N+1) if the data changed after it was sent.
- **prebrief** / **send_prebriefs**: each partner's senior lead gets a private email about their red measures.
- **wait_for_approval**: waits (rescheduling, no worker held) until the pack's day — `board.pack.prebrief_working_days`
  after the pre-briefs — and the officer's approval: `partnerflow approve-pack 2026Q3`. With
  `board.pack.auto_approve` it is approved on that day. If a return changes meanwhile, the draft is rebuilt.
- **distribute** / **send_notifications**: the Board list gets the email with the PDF, once per period and version.

## When it fails
The whole story: docs/failures.md in the partnerflow repository.
- *build* failing: usually the warehouse or a mart; fix and clear the task. Nothing is sent half-built.
- *wait_for_approval* timing out (30 days): nobody approved the pack. Approve it and trigger the DAG with the
  period; the same draft is picked up.
- Re-running any task is safe: drafts are matched by their content, emails by their outbox keys.
"""
