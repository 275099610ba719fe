"""Incidents: something failing for good (a DAG for a period, or email delivery), told once, not per try.

A failure opens an incident for its name x period, or adds to the open one. The first failure alerts at
once; a later one alerts again only when the last alert for that name x period is at least the cool-down
old (``notifications.incidents.cooldown_hours``), so a DAG failing every half hour sends one message, not
dozens, and a flapping one no more than one per cool-down. An incident remembers what is failing (task ids);
when each of those has succeeded again it is resolved, and if anyone was alerted a recovery message goes.

``dag_task_failed`` and ``dag_task_succeeded`` are the DAGs' routes (``partnerflow.airflow.callbacks`` calls them from
Airflow's callbacks); ``notify.fallback`` uses the same bookkeeping for SendGrid.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from partnerflow.core import clock
from partnerflow.core.config import Partnership
from partnerflow.notify import messages
from partnerflow.notify.outbox import enqueue

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Incident:
    """One incident as stored in ``ops.incidents``."""

    id: int
    name: str
    period_id: str
    opened_at: dt.datetime
    last_failure_at: dt.datetime
    failures: int
    failing: tuple[str, ...]
    last_detail: str | None
    alerts: int
    last_alert_at: dt.datetime | None
    resolved_at: dt.datetime | None


@dataclass(frozen=True)
class Failure:
    """A failure recorded: the incident it belongs to, and whether to send alert number ``incident.alerts`` now."""

    incident: Incident
    alert_now: bool


_COLUMNS = (
    "id, name, period_id, opened_at, last_failure_at, failures, failing, last_detail, alerts, last_alert_at,"
    " resolved_at"
)

_OPEN = sa.text(
    f"SELECT {_COLUMNS} FROM ops.incidents WHERE name = :name AND period_id = :period_id AND resolved_at IS NULL"
    " FOR UPDATE"
)

_OPEN_INCIDENT = sa.text(
    f"""
    INSERT INTO ops.incidents (name, period_id, opened_at, last_failure_at, failing, last_detail)
    VALUES (:name, :period_id, :now, :now, CAST(:failing AS jsonb), :detail)
    RETURNING {_COLUMNS}
    """
)

_ADD_FAILURE = sa.text(
    f"""
    UPDATE ops.incidents
    SET failures = failures + 1, last_failure_at = :now, last_detail = :detail,
        failing = CASE WHEN jsonb_exists(failing, :part) THEN failing ELSE failing || CAST(:failing AS jsonb) END
    WHERE id = :id
    RETURNING {_COLUMNS}
    """
)

_LAST_ALERT = sa.text("SELECT max(last_alert_at) FROM ops.incidents WHERE name = :name AND period_id = :period_id")

_ALERTED = sa.text(
    f"UPDATE ops.incidents SET alerts = alerts + 1, last_alert_at = :now WHERE id = :id RETURNING {_COLUMNS}"
)

_SUCCEEDED = sa.text(
    f"""
    UPDATE ops.incidents
    SET failing = failing - CAST(:part AS text),
        resolved_at = CASE WHEN (failing - CAST(:part AS text)) = '[]'::jsonb THEN :now END
    WHERE name = :name AND resolved_at IS NULL AND jsonb_exists(failing, :part)
    RETURNING {_COLUMNS}
    """
)


def record_failure(
    conn: Connection,
    *,
    name: str,
    period_id: str,
    part: str,
    detail: str,
    now: dt.datetime,
    cooldown: dt.timedelta,
) -> Failure:
    """Add a failure of ``part`` (a task id) to the open incident of ``name`` x ``period_id``, opening one if
    needed; say whether an alert is due now (and count it as sent if so)."""
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"incident:{name}:{period_id}"})
    params = {"name": name, "period_id": period_id, "now": now, "detail": detail, "part": part}
    params["failing"] = json.dumps([part])
    row = conn.execute(_OPEN, params).mappings().first()
    if row is None:
        row = conn.execute(_OPEN_INCIDENT, params).mappings().one()
    else:
        row = conn.execute(_ADD_FAILURE, {**params, "id": row["id"]}).mappings().one()
    last_alert = conn.execute(_LAST_ALERT, params).scalar()
    alert_now = last_alert is None or now - last_alert >= cooldown
    if alert_now:
        row = conn.execute(_ALERTED, {"id": row["id"], "now": now}).mappings().one()
    return Failure(incident=_incident(row), alert_now=alert_now)


def record_success(conn: Connection, *, name: str, part: str, now: dt.datetime) -> list[Incident]:
    """``part`` works again: take it off every open incident of ``name``; return the incidents now resolved."""
    rows = conn.execute(_SUCCEEDED, {"name": name, "part": part, "now": now}).mappings().all()
    return [incident for incident in map(_incident, rows) if incident.resolved_at is not None]


def dag_task_failed(
    engine: Engine,
    partnership: Partnership,
    *,
    dag_id: str,
    task_id: str,
    period_id: str,
    error: str,
    run_url: str,
    must_act: str | None = None,
    error_message: str | None = None,
    retrying: messages.Retrying | None = None,
    partner_must_act: bool = False,
) -> str | None:
    """A task of ``dag_id`` failed after its retries, or at once when someone must act (``must_act``: the
    cause of a terminal failure): record it and, unless in the cool-down, put an alert to the engineers (cc
    the officer) in the outbox. Returns the alert's key when one was enqueued.

    ``error`` is the kind of error (an exception class name), never its message: that may carry values.
    ``must_act`` is the message of a partnerflow ``TerminalError``, which names things (a connection, a
    file, a setting), never personal data; so is ``error_message`` (a partnerflow error's, or none).
    ``retrying``: how the job goes on trying; ``partner_must_act``: the partner, not the data team, must act.
    """
    cooldown = dt.timedelta(hours=partnership.notifications.incidents.cooldown_hours)
    if must_act:
        detail = (
            f"Someone must act: {must_act} The task {task_id} failed at once, without retries: retrying "
            f"cannot help ({error})."
        )
    else:
        detail = f"The task {task_id} failed after all its retries ({error})."
    now = clock.now()
    with engine.begin() as conn:
        failure = record_failure(
            conn, name=dag_id, period_id=period_id, part=task_id, detail=detail, now=now, cooldown=cooldown
        )
        if not failure.alert_now:
            log.warning("%s failed at %s for %s; alerted within the cool-down already", dag_id, task_id, period_id)
            return None
        incident = failure.incident
        message = messages.incident_alert(
            partnership,
            name=dag_id,
            period_id=period_id,
            incident_id=incident.id,
            alert_number=incident.alerts,
            failing=incident.failing,
            detail=detail,
            opened_at=incident.opened_at,
            failures=incident.failures,
            run_url=run_url,
            cooldown_hours=partnership.notifications.incidents.cooldown_hours,
            must_act=must_act,
            error=error,
            error_message=error_message,
            retrying=retrying,
            partner_must_act=partner_must_act,
            as_of=clock.today(),
        )
        enqueue(conn, message)
    log.error("%s failed at %s for %s: alert %s enqueued", dag_id, task_id, period_id, message.key)
    return message.key


def dag_task_succeeded(engine: Engine, partnership: Partnership, *, dag_id: str, task_id: str) -> list[str]:
    """A task of ``dag_id`` succeeded: resolve what it was failing in; enqueue a recovery message for each
    resolved incident that had been alerted. Returns their keys."""
    keys = []
    with engine.begin() as conn:
        for incident in record_success(conn, name=dag_id, part=task_id, now=clock.now()):
            if not incident.alerts:
                continue
            message = messages.incident_recovery(
                partnership,
                name=dag_id,
                period_id=incident.period_id,
                incident_id=incident.id,
                opened_at=incident.opened_at,
                resolved_at=incident.resolved_at or clock.now(),
                failures=incident.failures,
            )
            if enqueue(conn, message):
                keys.append(message.key)
    if keys:
        log.info("%s works again: enqueued %s", dag_id, ", ".join(keys))
    return keys


def open_incidents(conn: Connection) -> list[Incident]:
    """Every unresolved incident, oldest first."""
    rows = conn.execute(
        sa.text(f"SELECT {_COLUMNS} FROM ops.incidents WHERE resolved_at IS NULL ORDER BY opened_at, id")
    ).mappings()
    return [_incident(row) for row in rows]


def _incident(row) -> Incident:
    return Incident(**{**row, "failing": tuple(row["failing"])})
