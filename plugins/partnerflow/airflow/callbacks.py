"""The failure and recovery routes of every DAG: incidents told once to the engineers and the officer.

A task that fails after its retries adds to the incident of its DAG x period (``partnerflow.incidents``):
the first failure puts one alert in the outbox, and further failures alert again only after the cool-down.
When every task that failed has succeeded again, one recovery message follows. Both are sent through the
outbox at once; if SendGrid itself is failing, the sender's fallback route (SMTP) tells the same people.

Airflow's ``email_on_failure`` bypasses any configured email backend in Airflow 3, so these are notifiers
(task-level callbacks, run in the task's own process) that write to partnerflow's outbox.

The period of an incident is the run's ``period`` (conf), else the collecting period of its ``as_of``
(conf) or of today.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from airflow.sdk import BaseNotifier

log = logging.getLogger(__name__)


class OutboxFailureAlert(BaseNotifier):
    """A task failed for good: record it in its DAG x period incident, alert unless within the cool-down."""

    template_fields = ()

    def notify(self, context) -> None:
        from partnerflow import warehouse
        from partnerflow.core.config import partnership
        from partnerflow.notify import incidents
        from partnerflow.notify.sender import send_pending

        ti = context["ti"]
        dag_run = context["dag_run"]
        try:
            config = partnership()
            eng = warehouse.engine()
            key = incidents.dag_task_failed(
                eng,
                config,
                dag_id=ti.dag_id,
                task_id=ti.task_id,
                period_id=incident_period(dag_run.conf, config),
                error=type(context.get("exception")).__name__ if context.get("exception") else "no error recorded",
                run_url=run_url(ti.dag_id, dag_run.run_id),
            )
            if key:
                send_pending(eng)
        except Exception:
            # The alert route itself failing must not hide the original failure; Airflow shows both.
            log.exception("could not record the failure of %s.%s", ti.dag_id, ti.task_id)


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
