"""The failure and recovery routes of every DAG: incidents told once to the engineers and the officer.

A task that fails after its retries adds to the incident of its DAG x period (``partnerflow.incidents``):
the first failure puts one alert in the outbox, and further failures alert again only after the cool-down.
When every task that failed has succeeded again, one recovery message follows. Both are sent through the
outbox at once; if SendGrid itself is failing, the sender's fallback route (SMTP) tells the same people.

Airflow's ``email_on_failure`` bypasses any configured email backend in Airflow 3, so these are notifiers
(task-level callbacks, run in the task's own process) that write to partnerflow's outbox.

A task that raised a ``TerminalError`` (someone must act: a host key, a credential, a contract, the
configuration) fails at once without retries: the DAGs' tasks convert it at their boundary
(``fails_at_once_when_terminal``) into ``SomeoneMustAct``, Airflow's ``AirflowFailException``, and the alert
then says "someone must act" with the cause. Transient errors keep the retries with backoff.

The period of an incident is the run's ``period`` (conf), else the collecting period of its ``as_of``
(conf) or of today.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar

from airflow.sdk import BaseNotifier
from airflow.sdk.exceptions import AirflowFailException

from partnerflow.core.errors import TerminalError

F = TypeVar("F", bound=Callable[..., Any])
CAUSE_LIMIT = 1000

log = logging.getLogger(__name__)


class SomeoneMustAct(AirflowFailException):
    """A terminal failure at a task's boundary: Airflow fails the task at once, without its retries.

    ``cause`` is the partnerflow error's message (written by partnerflow, with names and paths, never
    personal data), kept for the alert.
    """

    def __init__(self, error: TerminalError):
        self.cause = " ".join(str(error).split())[:CAUSE_LIMIT] or type(error).__name__
        self.kind = type(error).__name__
        self.partner_must_act = error.partner_must_act
        super().__init__(f"someone must act: {self.cause}")


def fails_at_once_when_terminal(function: F) -> F:
    """Wrap a task's callable: a ``TerminalError`` becomes ``SomeoneMustAct`` (no retries); anything else
    (transient errors, bugs) goes on to Airflow's retries with backoff unchanged."""

    @functools.wraps(function)
    def task_boundary(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except TerminalError as error:
            raise SomeoneMustAct(error) from error

    return task_boundary  # type: ignore[return-value]


class OutboxFailureAlert(BaseNotifier):
    """A task failed for good: record it in its DAG x period incident, alert unless within the cool-down.

    ``runs`` says in words when the DAG runs (``every 30 minutes``), ``cron`` and ``timezone`` give its clock
    (none for a DAG started by assets only), so the alert can say when partnerflow tries again; the tries
    per run and the waits between them are the failed task's own (the DAG's ``default_args``).
    """

    template_fields = ()

    def __init__(self, *, runs: str = "", cron: str | None = None, timezone: str = "UTC"):
        super().__init__()
        self.runs = runs
        self.cron = cron
        self.timezone = timezone

    def notify(self, context) -> None:
        from partnerflow import warehouse
        from partnerflow.core.config import partnership
        from partnerflow.core.errors import PartnerflowError
        from partnerflow.notify import incidents
        from partnerflow.notify.sender import send_pending

        ti = context["ti"]
        dag_run = context["dag_run"]
        exception = context.get("exception")
        terminal = isinstance(exception, SomeoneMustAct)
        must_act = exception.cause if terminal else None
        error = exception.kind if terminal else type(exception).__name__
        error_message = None
        if not terminal and isinstance(exception, PartnerflowError):  # written by partnerflow: no values
            error_message = " ".join(str(exception).split())[:CAUSE_LIMIT] or None
        try:
            config = partnership()
            eng = warehouse.engine()
            key = incidents.dag_task_failed(
                eng,
                config,
                dag_id=ti.dag_id,
                task_id=ti.task_id,
                period_id=incident_period(dag_run.conf, config),
                error=error if exception else "no error recorded",
                run_url=run_url(ti.dag_id, dag_run.run_id),
                must_act=must_act,
                error_message=error_message,
                retrying=None if terminal else self.retrying(context.get("task") or getattr(ti, "task", None)),
                partner_must_act=terminal and exception.partner_must_act,
            )
            if key:
                send_pending(eng)
        except Exception:
            # The alert route itself failing must not hide the original failure; Airflow shows both.
            log.exception("could not record the failure of %s.%s", ti.dag_id, ti.task_id)

    def retrying(self, task: Any):
        """How partnerflow goes on trying: the task's retries and waits, the DAG's next run; None when the
        task's retry settings cannot be read."""
        from partnerflow.notify.messages import Retrying

        retries = getattr(task, "retries", None)
        first_wait = getattr(task, "retry_delay", None)
        if not isinstance(retries, int) or not isinstance(first_wait, dt.timedelta):
            return None
        longest = first_wait
        if getattr(task, "retry_exponential_backoff", False) and retries > 1:
            longest = first_wait * 2 ** (retries - 1)
            ceiling = getattr(task, "max_retry_delay", None)
            if isinstance(ceiling, dt.timedelta):
                longest = min(longest, ceiling)
        return Retrying(
            tries=retries + 1,
            first_wait=first_wait,
            longest_wait=longest,
            runs=self.runs or "on its schedule",
            next_run=next_run(self.cron, self.timezone),
        )


def next_run(cron: str | None, timezone: str) -> dt.datetime | None:
    """When a cron schedule next fires after partnerflow's clock (None without one, or if unreadable)."""
    if not cron:
        return None
    from airflow.timetables.trigger import CronTriggerTimetable
    from pendulum import instance

    from partnerflow.core import clock

    try:
        return CronTriggerTimetable(cron, timezone=timezone)._get_next(instance(clock.now()))
    except Exception:
        log.warning("cannot work out the next run of %r", cron)
        return None


class OutboxRecoveryNotice(BaseNotifier):
    """A task succeeded: if it was failing in an open incident, take it off; when nothing is left failing,
    tell the engineers and the officer that the DAG works again."""

    template_fields = ()

    def notify(self, context) -> None:
        from partnerflow import warehouse
        from partnerflow.core.config import partnership
        from partnerflow.notify import incidents
        from partnerflow.notify.sender import send_pending

        ti = context["ti"]
        try:
            eng = warehouse.engine()
            if incidents.dag_task_succeeded(eng, partnership(), dag_id=ti.dag_id, task_id=ti.task_id):
                send_pending(eng)
        except Exception:
            log.exception("could not record the success of %s.%s", ti.dag_id, ti.task_id)


def incident_period(conf: dict[str, Any] | None, config) -> str:
    """The period a run's incident is filed under: conf ``period``, else the collecting period of conf
    ``as_of``, else of today."""

    from partnerflow.core import clock
    from partnerflow.core.periods import Period, collecting_period, iso_day

    conf = conf or {}
    try:
        if conf.get("period"):
            return Period.from_id(str(conf["period"])).id
        day = iso_day(conf["as_of"]) if conf.get("as_of") else clock.today()
    except ValueError:
        day = clock.today()
    return collecting_period(day, config).id


def run_url(dag_id: str, run_id: str) -> str:
    """The run's page in the Airflow UI (absolute when ``AIRFLOW__API__BASE_URL`` is set)."""
    base = os.environ.get("AIRFLOW__API__BASE_URL", "").rstrip("/")
    return f"{base}/dags/{dag_id}/runs/{run_id}"
