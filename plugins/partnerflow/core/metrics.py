"""partnerflow's metrics, sent through Airflow's own metrics support, so they go where Airflow's go.

Airflow's ``[metrics]`` settings decide where (``statsd_on``/``statsd_host``/``statsd_port``/``statsd_prefix``,
or Datadog or OpenTelemetry; ``metrics_allow_list`` and ``metrics_block_list`` apply too). With nothing
configured nothing is sent. Names are ``<statsd_prefix>.partnerflow.<measure>.<feed_id>``, e.g.
``airflow.partnerflow.files_rejected.council_referrals``: the feed id sits in the name because plain StatsD
has no tags. Feed ids are configuration identifiers (``^[a-z][a-z0-9_]*$``); nothing about a person, a file
name or a value is ever part of a metric.

| measure | type | emitted when |
|---|---|---|
| ``files_received`` | counter | a file lands and is recorded in the ledger (``pipeline.collect``) |
| ``files_rejected`` | counter | a file is rejected, on arrival or after validation |
| ``files_published`` | counter | a file is published (``pipeline.ingest.decide``) |
| ``files_ignored`` | counter | a near-miss name is seen in a drop for the first time (``pipeline.collect``) |
| ``rows_published`` | counter | rows of a published file |
| ``validation`` | timer (ms) | the contract's checks of one staged file |
| ``outbox_backlog`` | gauge | after each outbox drain: messages still waiting (``notify.sender``) |
| ``outbox_dead_letters`` | gauge | after each outbox drain: messages given up on |
| ``working_days_to_due`` | gauge | each deadlines run: days to the oldest open return's due date (``chasing.ladder``) |

``working_days_to_due`` is negative when that return is overdue, and counts to the next period's due date once
every return is in. Messages that belong to no feed (the digest, the Board pack) count under ``partnership``.

Pitfalls:
    Airflow's stats module is imported on the first metric only, never at import time. In an Airflow task
    the task runner has already set it up from ``[metrics]``; elsewhere (tests, the CLI) it is set up here
    the same way, once per process (``reset()`` forgets that, for tests that change the settings).
    A metric that cannot be sent is logged once and dropped: metrics never fail a run.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from typing import Any

log = logging.getLogger(__name__)

NAMESPACE = "partnerflow"
NO_FEED = "partnership"


@functools.cache
def _stats() -> Any:
    from airflow.sdk.configuration import conf
    from airflow.sdk.observability import stats
    from airflow.sdk.observability.metrics import stats_utils

    # What Airflow's task runner does at start (airflow.sdk.execution_time.task_runner.main).
    stats.initialize(
        factory=stats_utils.get_stats_factory(),
        export_legacy_names=conf.getboolean("metrics", "legacy_names_on"),
    )
    return stats


def reset() -> None:
    """Read Airflow's ``[metrics]`` settings again on the next metric (tests)."""
    _stats.cache_clear()
    _warned.cache_clear()


def name(measure: str, feed_id: str | None) -> str:
    return f"{NAMESPACE}.{measure}.{feed_id or NO_FEED}"


def count(measure: str, feed_id: str | None, n: int = 1) -> None:
    """Add ``n`` to a per-feed counter."""
    if n:
        _send("incr", name(measure, feed_id), n)


def gauge(measure: str, feed_id: str | None, value: float) -> None:
    """Set a per-feed gauge."""
    _send("gauge", name(measure, feed_id), value)


def timing(measure: str, feed_id: str | None, seconds: float) -> None:
    """Record a per-feed duration (StatsD timers are in milliseconds)."""
    _send("timing", name(measure, feed_id), dt.timedelta(seconds=seconds))


def _send(kind: str, stat: str, value: Any) -> None:
    try:
        getattr(_stats(), kind)(stat, value)
    except Exception as exc:  # noqa: BLE001 - a metric must never fail the run that emits it
        _warned(type(exc).__name__)


@functools.cache
def _warned(error: str) -> None:
    log.warning("metrics: could not send partnerflow metrics (%s); carrying on without them", error)
