"""The failure route of every DAG: a task that fails after its retries puts one alert in the outbox.

Airflow's ``email_on_failure`` bypasses any configured email backend in Airflow 3, so partnerflow uses a
notifier that writes to its own outbox (sent once, through the same sender as every other message).
"""

from __future__ import annotations

import logging

from airflow.sdk import BaseNotifier

log = logging.getLogger(__name__)


class OutboxFailureAlert(BaseNotifier):
    """Tell the engineers and the officer that a task failed for good; one message per task per run."""

    template_fields = ()

    def notify(self, context) -> None:
        from partnerflow import warehouse
        from partnerflow.config import partnership
        from partnerflow.notify import messages
        from partnerflow.notify.outbox import enqueue
        from partnerflow.notify.sender import send_pending

        ti = context["ti"]
        dag_run = context["dag_run"]
        period_id = (dag_run.conf or {}).get("period", "")
        try:
            eng = warehouse.engine()
            with eng.begin() as conn:
                enqueue(
                    conn,
                    messages.failure_alert(
                        partnership(),
                        dag_id=ti.dag_id,
                        task_id=ti.task_id,
                        period_id=period_id,
                        run_url=f"/dags/{ti.dag_id}/runs/{dag_run.run_id}",
                    ),
                )
            send_pending(eng)
        except Exception:
            # The alert route itself failing must not hide the original failure; Airflow shows both.
            log.exception("could not record the failure alert for %s.%s", ti.dag_id, ti.task_id)
