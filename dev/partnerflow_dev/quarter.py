"""One quarter of the demo partnership, played through a real Airflow against the embedded stack.

The clock (``partnerflow.core.clock``) is moved to each day of the story, so a quarter plays in minutes:
advance reminders to every partner; health, the council and youth justice sending their returns (the
council's referrals file defective first, then corrected); the due day with police and education missing;
police submitting late; the Board pack while education is still missing, so the pack names it; and a rerun
of the due day that must send nothing.

Every return comes from ``generator.sample_return``. SFTP feeds are uploaded the way partners are asked
to (a temporary name, then a rename) and picked up by the feed's SFTP watcher; API feeds are published on
the partner API and their ingest DAG is triggered for the period, as its schedule would.

Before Airflow starts, the partnership's history is loaded: eight quarters of every feed's returns, from
the same generator, through ``partnerflow backfill`` (the real ingest path, no e-mails for past periods),
so the quarter's Board pack shows direction of travel and two years of trend.

The Board pack DAG is scheduled on every feed's published asset, so with education missing it never
starts by itself: the player triggers it by hand for the period, as the officer would at the pack deadline.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from partnerflow import warehouse
from partnerflow.core import clock
from partnerflow.core.config import Feed, HttpTransport, Partnership, SftpTransport
from partnerflow.core.paths import repo_path
from partnerflow.core.periods import Period, add_working_days, due_date
from partnerflow.pipeline.backfill import Replayed, backfill, history_name, render
from partnerflow_dev.airflow_stack import AirflowStack, CeleryWorkers
from partnerflow_dev.stack import DevStack
from partnerflow_dev.synthetic import sample_return

DEMO_PERIOD = Period.from_id("2026Q3")
SEED = 2026
RUN_TIMEOUT = 300.0
MORNING = dt.time(9, 0)
MISSING_FEED = "education_exclusions"  # never sends in the demo: the due-day reminder, and named in the pack
DECIDED = ("rejected", "published", "duplicate", "superseded")
HISTORY_QUARTERS = 8


@dataclass
class QuarterLog:
    """What happened, step by step: ``(day, what, outcome)``, for the summary and the end-to-end test."""

    steps: list[tuple[dt.date, str, str]] = field(default_factory=list)
    rerun_new_messages: int | None = None


class QuarterPlayer:
    """Plays the demo quarter; each step waits for the DAG run it causes to finish."""

    def __init__(
        self,
        *,
        stack: DevStack,
        airflow: AirflowStack,
        partnership: Partnership,
        period: Period = DEMO_PERIOD,
        say: Callable[[str], None] = print,
    ):
        self.stack = stack
        self.client = airflow.client
        self.partnership = partnership
        self.period = period
        self.say = say
        self.log = QuarterLog()
        self._board_run = ""

    def play(self) -> QuarterLog:
        feed = self.partnership.feed
        council = feed("council_referrals")
        missing = self.partnership.partner(feed(MISSING_FEED).partner)
        due = due_date(self.partnership, council, self.period)
        self.say(f"Playing {self.period.label}; returns due {due:%a %d %b %Y}")

        def day(offset: int) -> dt.date:
            return add_working_days(due, offset)

        advance = day(-self.partnership.calendar.ladder.advance_working_days)
        self._on(advance, "deadlines: advance reminders", lambda: self._trigger("deadlines", {"as_of": str(advance)}))
        self._on(day(-4), "health uploads its ICB return", lambda: self._send(feed("health_icb")))
        self._on(
            day(-3), "council uploads its referrals file (with defects)", lambda: self._send(council, defects=True)
        )
        self._on(
            day(-3), "council uploads its child protection file", lambda: self._send(feed("council_child_protection"))
        )
        self._on(day(-2), "council uploads a corrected referrals file under the same name", lambda: self._send(council))
        self._on(
            day(-2),
            "council uploads its children in care workbook",
            lambda: self._send(feed("council_children_in_care")),
        )
        self._on(
            day(-1), "youth justice publish their KPIs on their API", lambda: self._send(feed("youth_justice_kpis"))
        )
        self._on(
            due,
            "deadlines: due day (police and education missing)",
            lambda: self._trigger("deadlines", {"as_of": str(due)}),
        )
        self._on(day(2), "police publish their return late; the API feed polls", lambda: self._send(feed("police_ppn")))
        self._on(
            day(2),
            f"Board pack for {self.period.id}, started by hand ({missing.name} has still sent nothing); "
            "partner leads pre-briefed on their red items",
            self._board_pack_prebriefed,
        )
        ladder = self.partnership.calendar.ladder
        overdue, escalation = day(ladder.overdue_working_days), day(ladder.escalation_working_days)
        self._on(
            overdue,
            f"deadlines: overdue reminder ({missing.name} still missing)",
            lambda: self._trigger("deadlines", {"as_of": str(overdue)}),
        )
        monday = overdue - dt.timedelta(days=overdue.weekday())
        self._on(
            monday,
            "the officer's weekly digest",
            lambda: self._trigger("weekly_digest", {"as_of": str(monday)}),
        )
        self._on(
            escalation,
            f"deadlines: escalation to {missing.name}'s senior lead",
            lambda: self._trigger("deadlines", {"as_of": str(escalation)}),
        )
        send_day = add_working_days(day(2), self.partnership.board.pack.prebrief_working_days)
        self._on(
            send_day,
            "Board pack approved on its day and sent to the Board list",
            lambda: self.client.wait_run("board_pack", self._board_run, timeout=RUN_TIMEOUT),
        )
        before = len(self.stack.sink.messages())
        self._on(due, "deadlines: the due day run again", lambda: self._trigger("deadlines", {"as_of": str(due)}))
        self.log.rerun_new_messages = len(self.stack.sink.messages()) - before
        clock.set_now(None)
        return self.log

    def _on(self, day: dt.date, what: str, action: Callable[[], str]) -> None:
        clock.set_now(dt.datetime.combine(day, MORNING, tzinfo=clock.LONDON))
        outcome = action()
        self.log.steps.append((day, what, outcome))
        self.say(f"  {day:%a %d %b}  {what}: {outcome}")

    def _trigger(self, dag_id: str, conf: dict) -> str:
        run_id = self.client.trigger(dag_id, conf=conf)
        return self.client.wait_run(dag_id, run_id, timeout=RUN_TIMEOUT)

    def _board_pack_prebriefed(self) -> str:
        """Start the Board pack; return once its pre-briefs are sent (the run then waits for the pack's day)."""
        self._board_run = self.client.trigger("board_pack", conf={"period": self.period.id})
        deadline = time.monotonic() + RUN_TIMEOUT
        while time.monotonic() < deadline:
            states = {t["task_id"]: t["state"] for t in self.client.task_instances("board_pack", self._board_run)}
            if states.get("send_prebriefs") in ("success", "failed", "upstream_failed", "skipped"):
                return states["send_prebriefs"]
            run_state = self.client.run("board_pack", self._board_run)["state"]
            if run_state in ("success", "failed"):
                return run_state
            time.sleep(1)
        raise TimeoutError(f"board_pack {self._board_run} did not send its pre-briefs within {RUN_TIMEOUT:.0f}s")

    def _run_ids(self, dag_id: str) -> set[str]:
        return {run["dag_run_id"] for run in self.client.runs(dag_id)}

    def _send(self, feed: Feed, *, defects: bool = False) -> str:
        """The partner sends its generated return for the period, by the feed's own transport."""
        content = sample_return(feed.dataset, self.period, seed=SEED, defects=defects)
        if isinstance(feed.transport, SftpTransport):
            assert isinstance(content, bytes)
            return self._upload_and_wait(feed, content)
        assert isinstance(feed.transport, HttpTransport) and isinstance(content, list)
        self.stack.partner_api.submit(api_dataset(feed), self.period.id, content)
        return self._trigger(f"ingest_{feed.id}", {"period": self.period.id})

    def _upload_and_wait(self, feed: Feed, content: bytes) -> str:
        """Upload the way partners are asked to: write under a temporary name, then rename into place.

        Then wait for the ingest runs that follow until one has decided the file: a safety-net run that
        started just before the upload finishes without it, and the watcher's run comes after.
        """
        transport = feed.transport
        assert isinstance(transport, SftpTransport)
        dag_id = f"ingest_{feed.id}"
        known = self._run_ids(dag_id)
        drop = self.stack.drop_dir(transport.directory)
        final = drop / transport.pattern.format(period=self.period.id)
        partial = drop / f"{final.name}.part"
        partial.write_bytes(content)
        os.replace(partial, final)
        sha256 = hashlib.sha256(content).hexdigest()
        deadline = time.monotonic() + RUN_TIMEOUT
        while True:
            run = self.client.wait_new_run(dag_id, known, timeout=max(1.0, deadline - time.monotonic()))
            known.add(run["dag_run_id"])
            state = self.client.wait_run(dag_id, run["dag_run_id"], timeout=RUN_TIMEOUT)
            if state != "success" or _decided(feed.id, sha256) or time.monotonic() > deadline:
                return state


def pin_clock_before_the_quarter(period: Period = DEMO_PERIOD) -> None:
    """Pin the clock to the morning after the period ends, before Airflow starts.

    Unpausing a DAG can start a scheduled run at once; with the clock pinned, scheduled ladder and digest
    runs stand aside and everything acts on the story's days, never on today's date.
    """
    clock.set_now(dt.datetime.combine(period.end + dt.timedelta(days=1), MORNING, tzinfo=clock.LONDON))


def write_history(folder: Path, partnership: Partnership, *, period: Period = DEMO_PERIOD, quarters: int) -> None:
    """The partners' returns for the ``quarters`` quarters before ``period``, named as ``backfill`` reads them."""
    folder.mkdir(parents=True, exist_ok=True)
    past = period
    for _ in range(quarters):
        past = past.previous()
        for feed in partnership.feeds:
            content = sample_return(feed.dataset, past, seed=SEED)
            data = content if isinstance(content, bytes) else json.dumps(content).encode()
            (folder / history_name(feed, past)).write_bytes(data)


def load_history(stack: DevStack, partnership: Partnership, *, quarters: int = HISTORY_QUARTERS) -> list[Replayed]:
    """Write the history and load it with ``partnerflow backfill``; the clock must already be pinned."""
    folder = stack.var / "history"
    write_history(folder, partnership, quarters=quarters)
    # One summary line for the history, not log lines per file and per contract check.
    loggers = [logging.getLogger(name) for name in ("", "partnerflow", "great_expectations")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        results = backfill(folder, config=partnership)
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
    not_loaded = [r for r in results if r.outcome != "published"]
    if not_loaded:
        raise RuntimeError("the demo history did not load:\n" + render(not_loaded))
    return results


@contextmanager
def airflow_for_the_quarter(
    stack: DevStack,
    *,
    home: Path,
    celery: CeleryWorkers | None = None,
    history_quarters: int = HISTORY_QUARTERS,
    say: Callable[[str], None] = print,
) -> Iterator[AirflowStack]:
    """A real Airflow on the stack's databases, the clock pinned first and the history loaded (before any
    DAG can run), every DAG parsed and unpaused. With ``celery``, on the CeleryExecutor and its workers
    instead of the LocalExecutor."""
    from partnerflow.airflow.dags import build_all

    pin_clock_before_the_quarter()
    if history_quarters:
        loaded = load_history(stack, stack.partnership, quarters=history_quarters)
        first, last = loaded[0].period, loaded[-1].period
        assert first is not None and last is not None
        say(
            f"history: {len(loaded)} past returns loaded by partnerflow backfill, {first.label} to {last.label}; "
            "no e-mails sent for them"
        )
    airflow = AirflowStack(
        home=home,
        metadata_url=stack.postgres.url(stack.airflow_db),
        dags_folder=repo_path("dags"),
        env=stack.environment(),
        celery=celery,
    )
    with airflow:
        dag_ids = list(build_all(stack.partnership))
        airflow.client.wait_dags_parsed(dag_ids)
        for dag_id in dag_ids:
            airflow.client.unpause(dag_id)
        yield airflow


def api_dataset(feed: Feed) -> str:
    """The dataset segment of an API feed's endpoint (``ppn`` in ``/v1/returns/ppn/{period}``)."""
    assert isinstance(feed.transport, HttpTransport)
    parts = feed.transport.endpoint.strip("/").split("/")
    return parts[parts.index("{period}") - 1]


def _decided(feed_id: str, sha256: str) -> bool:
    """Whether the ledger has decided a file of these bytes for the feed."""
    with warehouse.engine().connect() as conn:
        return bool(
            conn.execute(
                sa.text(
                    "SELECT 1 FROM ops.received_files WHERE feed_id = :f AND sha256 = :h AND state = ANY(:decided)"
                ),
                {"f": feed_id, "h": sha256, "decided": list(DECIDED)},
            ).first()
        )
