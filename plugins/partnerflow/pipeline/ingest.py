"""The steps of one ingest run, as the ingest DAG's tasks call them: fetch, then decide each file.

Every step returns ids, states and counts only, so nothing personal reaches XCom or the logs.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from typing import Any

from partnerflow import warehouse
from partnerflow.contracts import suites
from partnerflow.core import clock, metrics
from partnerflow.core.config import Partnership, partnership
from partnerflow.core.periods import Period, collecting_period, iso_day
from partnerflow.intake import reader
from partnerflow.intake.minimise import pseudonym_key
from partnerflow.pipeline import collect
from partnerflow.transport.landing import landing_dir
from partnerflow.warehouse import ledger
from partnerflow.warehouse.publish import Outcome, deciding, publish, quarantine

log = logging.getLogger(__name__)


def fetch(feed_id: str, *, period_id: str | None = None, config: Partnership | None = None) -> list[int]:
    """Pull what is new for a feed; return the ids of files waiting for a decision (new and left over)."""
    config = config or partnership()
    feed = config.feed(feed_id)
    requested = Period.from_id(period_id) if period_id else None  # a bad conf fails here, for any transport
    agreement = config.partner(feed.partner).agreement
    today = clock.today()
    if not agreement.in_force(today):
        log.warning(
            "%s: data-sharing agreement %s is not in force on %s; not pulling",
            feed_id,
            agreement.reference,
            today,
        )
        return []
    eng = warehouse.engine()
    if feed.transport.kind == "sftp":
        collect.fetch_sftp(eng, config, feed)
    else:
        period = requested or collecting_period(today, config, feed)
        collect.fetch_http(eng, config, feed, period)
    with eng.connect() as conn:
        return ledger.pending(conn, feed_id)


def decide(
    feed_id: str, file_ids: list[int], *, config: Partnership | None = None, history: bool = False
) -> list[dict[str, Any]]:
    """Stage, check and publish or quarantine each file, oldest first; return each file's outcome.

    A file intake can't read as a whole is quarantined with intake's report; one with problems in some rows
    only is checked against its contract as well, and quarantined with both in one report.
    ``history`` is for past periods replayed by ``partnerflow backfill``: the same checks and publish, but
    no receipt or rejection e-mail, and nothing moved on the partner's server (the files came from a folder).
    """
    config = config or partnership()
    feed = config.feed(feed_id)
    dataset = config.dataset(feed.dataset)
    eng = warehouse.engine()
    key = pseudonym_key()
    notify = not history
    outcomes = []
    for file_id in sorted(file_ids):
        with deciding(eng, file_id) as received:  # a concurrent run of the same file waits, then skips it
            if received.state != ledger.RECEIVED:
                outcomes.append(Outcome(file_id, feed_id, received.period_id, received.state).as_dict())
                continue
            period = Period.from_id(received.period_id)
            try:
                staged = reader.stage(
                    eng,
                    path=landing_dir() / received.landed_path,
                    file_id=file_id,
                    feed=feed,
                    dataset=dataset,
                    key=key,
                    declared_rows=received.declared_rows,
                )
            except reader.FileRejected as rejected:
                outcome = quarantine(
                    eng, config, file_id=file_id, feed=feed, dataset=dataset, report=rejected.report, notify=notify
                )
            else:
                with eng.connect() as conn:
                    baseline = volume_baseline(conn, feed.id, dataset)
                started = time.monotonic()
                checked = suites.validate_staged(
                    warehouse_url=warehouse.warehouse_url(),
                    table=staged.table,
                    dataset=dataset,
                    period=period,
                    volume_baseline=baseline,
                )
                metrics.timing("validation", feed_id, time.monotonic() - started)
                # Intake's row problems (the file is rejected, but its other rows were staged) and notes join
                # the contract's failures: the partner hears of everything in one report.
                report = staged.with_contract(json.loads(checked.to_json()))
                decide_with = publish if report["passed"] else quarantine
                outcome = decide_with(
                    eng, config, file_id=file_id, feed=feed, dataset=dataset, report=report, notify=notify
                )
            _count_outcome(outcome)
            moves = not history and getattr(feed.transport, "processed_directory", None)
            if moves and outcome.state == ledger.PUBLISHED:
                collect.move_to_processed(feed, [file_id])
            outcomes.append(outcome.as_dict())
    with eng.connect() as conn:
        for line in decision_lines(conn, outcomes):
            log.info("%s", line)
    return outcomes


def _count_outcome(outcome: Outcome) -> None:
    if outcome.state == ledger.PUBLISHED:
        metrics.count("files_published", outcome.feed_id)
        metrics.count("rows_published", outcome.feed_id, outcome.rows)
    elif outcome.state == ledger.REJECTED:
        metrics.count("files_rejected", outcome.feed_id)


def decision_lines(conn: Any, outcomes: list[dict[str, Any]]) -> list[str]:
    """One line per file decided: its id, period, state and rule codes with row counts (never a value)."""
    lines = []
    for outcome in outcomes:
        found = ledger.file_with_report(conn, outcome["file_id"])
        failures = ((found.report if found else None) or {}).get("failures") or []
        errors = _codes(f for f in failures if (f.get("severity") or "error") == "error")
        warnings = _codes(f for f in failures if f.get("severity") == "warning")
        line = f"{outcome['feed_id']}: file {outcome['file_id']} for {outcome['period_id']} is {outcome['state']}"
        if outcome["state"] == ledger.PUBLISHED:
            line += f", {outcome.get('rows', 0):,} rows"
        if outcome["state"] == ledger.REJECTED and errors:
            line += f": {errors}"
        if warnings:
            line += f" (warnings: {warnings})"
        lines.append(line)
    return lines


def _codes(failures: Any) -> str:
    return ", ".join(
        f"{f.get('code')} × {int(f['failing_rows']):,}" if f.get("failing_rows") else str(f.get("code"))
        for f in failures
    )


def volume_baseline(conn: Any, feed_id: str, dataset: Any, contracts_dir: Any = None) -> float | None:
    """The volume of the feed's last published return, as its contract measures it; None if there is none."""
    last = ledger.last_published(conn, feed_id)
    if last is None:
        return None
    return suites.accepted_volume(
        conn, file_id=last.id, row_count=last.row_count, dataset=dataset, directory=contracts_dir
    )


def as_of_date(conf: dict[str, Any] | None) -> dt.date:
    """The day a run acts for: ``conf["as_of"]`` when given (reruns, the demo), else today.

    ``as_of`` is YYYY-MM-DD in ASCII digits; anything else is a ValueError naming the conf key (never a
    guess), as a period id in ``conf["period"]`` is refused by ``Period.from_id``.
    """
    if conf and conf.get("as_of"):
        return iso_day(conf["as_of"], 'the DAG run conf "as_of"')
    return clock.today()
