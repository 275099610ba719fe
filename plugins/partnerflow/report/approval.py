"""Approving a Board pack, and deciding when the waiting draft may go.

The officer approves the draft waiting for a period with ``partnerflow approve-pack PERIOD`` (or
``approve_pack``). Approval is of that draft: if the data changes and a new draft is built, it needs
approving again. With the board's ``auto_approve``, a draft nobody approved is approved automatically on
its ``distribute_on`` day. Either way it goes no earlier than that day, so the pre-briefs always come
first.

``check_ready`` is what the ``board_pack`` DAG's wait step asks on each poke. When the period's returns
have changed since the draft was built, it rebuilds first (queuing any new pre-briefs, which the wait step
then sends), so the Board never gets a pack that is out of date at the moment it is sent.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import sys
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from partnerflow.core import clock, paths, wording
from partnerflow.core.config import Partnership
from partnerflow.core.periods import Period
from partnerflow.report.boardpack import inputs_digest
from partnerflow.report.distribution import last_sent, lock_period, pending_pack, prepare

AUTO_APPROVER = "auto-approval at the deadline"


class NothingToApprove(Exception):
    """There is no draft pack waiting for the period (none built yet, or the latest was already sent)."""


@dataclass(frozen=True)
class Approval:
    """The draft approved, and when it goes."""

    period_id: str
    version: int
    record_id: int
    approved_by: str
    distribute_on: dt.date
    already: bool
    pdf: Path


@dataclass(frozen=True)
class Readiness:
    """The wait step's answer: ``ready`` (send now), ``waiting`` (poke again) or ``nothing`` (stop)."""

    state: str
    reason: str
    record_id: int | None = None
    prebriefs_queued: tuple[str, ...] = ()

    @property
    def done(self) -> bool:
        return self.state != "waiting"


def approve_pack(
    engine: Engine, partnership: Partnership, period: Period | str, *, approved_by: str, var_dir: Path | None = None
) -> Approval:
    """Approve the draft waiting for ``period``; raise NothingToApprove if there is none."""
    period = period if isinstance(period, Period) else Period.from_id(period)
    with engine.begin() as conn:
        lock_period(conn, period.id)
        record = pending_pack(conn, period.id)
        if record is None:
            sent = last_sent(conn, period.id)
            if sent is not None:
                sent_on = wording.short_date(sent.sent_on, missing="an unknown day")
                raise NothingToApprove(
                    f"no Board pack for {period.id} is waiting: version {sent.version} was sent on {sent_on}"
                )
            raise NothingToApprove(f"no Board pack for {period.id} has been built yet")
        already = record.approved_at is not None
        if not already:
            conn.execute(
                sa.text("UPDATE ops.board_packs SET approved_at = :at, approved_by = :by WHERE id = :i"),
                {"at": clock.now(), "by": approved_by, "i": record.id},
            )
    root = paths.var_dir() if var_dir is None else var_dir
    return Approval(
        period_id=period.id,
        version=record.version,
        record_id=record.id,
        approved_by=record.approved_by if already and record.approved_by else approved_by,
        distribute_on=record.distribute_on,
        already=already,
        pdf=root / record.path,
    )


def check_ready(
    engine: Engine, partnership: Partnership, period: Period | str, *, today: dt.date | None = None
) -> Readiness:
    """Whether the period's draft may go to the Board now, applying auto-approval on its day."""
    from partnerflow.report.prebrief import send_prebriefs

    period = period if isinstance(period, Period) else Period.from_id(period)
    today = today or clock.today()
    with engine.connect() as conn:
        record = pending_pack(conn, period.id)
        current_inputs = inputs_digest(conn, partnership, period) if record else None
    if record is None:
        return Readiness("nothing", "no pack is waiting for this period")
    queued: tuple[str, ...] = ()
    if current_inputs != record.inputs:
        prepared = prepare(engine, partnership, period, as_of=today)
        if not prepared.needs_sending:
            return Readiness("nothing", f"the data now matches version {prepared.record.version}, already sent")
        if prepared.new:
            queued = send_prebriefs(engine, partnership, prepared.record.id, today=today).queued
        with engine.connect() as conn:
            record = pending_pack(conn, period.id)
        if record is None:
            return Readiness("nothing", "no pack is waiting for this period", prebriefs_queued=queued)
    if today < record.distribute_on:
        reason = f"version {record.version} may go from {record.distribute_on}"
        return Readiness("waiting", reason, record.id, queued)
    if record.approved_at is None:
        if not partnership.board.pack.auto_approve:
            reason = f"version {record.version} is waiting for the officer's approval"
            return Readiness("waiting", reason, record.id, queued)
        approve_pack(engine, partnership, period, approved_by=AUTO_APPROVER)
    return Readiness("ready", f"version {record.version} is approved and due", record.id, queued)


def run(args: argparse.Namespace) -> int:
    """``partnerflow approve-pack PERIOD``: approve the waiting draft as the officer and say when it goes."""
    from partnerflow import warehouse
    from partnerflow.core.config import partnership

    config = partnership()
    try:
        period = Period.from_id(args.period)
        approved_by = f"{config.officer.name} (command line, {getpass.getuser()})"
        approval = approve_pack(warehouse.engine(), config, period, approved_by=approved_by)
    except (ValueError, NothingToApprove) as exc:
        print(f"approve-pack: {exc}", file=sys.stderr)
        return 1
    day = approval.distribute_on
    when = "now" if day <= clock.today() else f"on {day:%A} {day.day} {day:%B %Y}, after the partner leads' pre-briefs"
    done = "was already approved" if approval.already else "is approved"
    print(f"Version {approval.version} of the Board pack for {period.short_label} {done} by {approval.approved_by}.")
    print(f"The board_pack DAG sends it to the Board list {when}.")
    print(f"The pack: {approval.pdf}")
    return 0
