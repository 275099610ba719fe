"""One quarter of the demo partnership, played through a real Airflow against the embedded stack.

The clock (``partnerflow.clock``) is moved to each day of the story, so a quarter plays in minutes:
advance reminders, a defective council file and its correction, the due day with police missing, police
submitting late, the Board pack, and a rerun of the due day that must send nothing.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from partnerflow import clock
from partnerflow.calendar import Period, add_working_days, due_date
from partnerflow.config import Feed, Partnership, SftpTransport
from partnerflow.devstack.airflow_stack import AirflowStack
from partnerflow.devstack.stack import DevStack
from partnerflow.generator import police_ppn_records, referrals_csv

DEMO_PERIOD = Period.from_id("2026Q3")
SEED = 2026
RUN_TIMEOUT = 300.0
MORNING = dt.time(9, 0)


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

    def play(self) -> QuarterLog:
        council = self.partnership.feed("council_referrals")
        police = self.partnership.feed("police_ppn")
        due = due_date(self.partnership, council, self.period)
        self.say(f"Playing {self.period.label}; returns due {due:%a %d %b %Y}")

        advance = add_working_days(due, -self.partnership.calendar.ladder.advance_working_days)
        self._on(advance, "deadlines: advance reminders", lambda: self._trigger("deadlines", {"as_of": str(advance)}))
        self._on(
            add_working_days(due, -3),
            "council uploads its referrals file (with defects)",
            lambda: self._upload_and_wait(council, referrals_csv(self.period, seed=SEED, defects=True)),
        )
        self._on(
            add_working_days(due, -2),
            "council uploads a corrected file under the same name",
            lambda: self._upload_and_wait(council, referrals_csv(self.period, seed=SEED)),
        )
        board_runs = self._run_ids("board_pack")
        self._on(due, "deadlines: due day", lambda: self._trigger("deadlines", {"as_of": str(due)}))
        self._on(
            add_working_days(due, 2),
            "police publish their return late; the API feed polls",
            lambda: self._police(police),
        )
        self._on(
            add_working_days(due, 2),
            "Board pack, started by the published assets",
            lambda: self._wait_new("board_pack", board_runs),
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

    def _run_ids(self, dag_id: str) -> set[str]:
        return {run["dag_run_id"] for run in self.client.runs(dag_id)}

    def _wait_new(self, dag_id: str, known: set[str]) -> str:
        run = self.client.wait_new_run(dag_id, known, timeout=RUN_TIMEOUT)
        return self.client.wait_run(dag_id, run["dag_run_id"], timeout=RUN_TIMEOUT)

    def _upload_and_wait(self, feed: Feed, content: bytes) -> str:
        """Upload the way partners are asked to: write under a temporary name, then rename into place."""
        transport = feed.transport
        assert isinstance(transport, SftpTransport)
        known = self._run_ids(f"ingest_{feed.id}")
        drop = self.stack.drop_dir(transport.directory)
        final = drop / transport.pattern.format(period=self.period.id)
        partial = drop / f"{final.name}.part"
        partial.write_bytes(content)
        os.replace(partial, final)
        return self._wait_new(f"ingest_{feed.id}", known)

    def _police(self, feed: Feed) -> str:
        self.stack.partner_api.submit("ppn", self.period.id, police_ppn_records(self.period, seed=SEED))
        return self._trigger(f"ingest_{feed.id}", {"period": self.period.id})
