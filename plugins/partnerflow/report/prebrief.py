"""The "no surprises" pre-brief: each partner's senior lead hears privately about their red measures
before the Board does.

For a draft pack, every red measure is attributed to the partner(s) responsible for it (the KPI's
``lead_partner``, else the partner of its source feeds; for the partnership's own measures, the partners
whose returns were late or rejected). Each partner's lead gets one private email listing their red
measures with the figures, trend and target the Board will see, and the day the pack goes.

A pre-brief's outbox key is the period, the partner and the set of red measures, so a rebuilt draft
showing the same red items sends nothing again, while a new red item sends a fresh pre-brief and pushes
the pack's distribution back to ``prebrief_working_days`` after it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from partnerflow.core import clock
from partnerflow.core.config import Partner, Partnership
from partnerflow.core.periods import Period, add_working_days
from partnerflow.notify import outbox
from partnerflow.report import mail
from partnerflow.report.distribution import figures_of, lock_period, pack_record

PREBRIEF = "prebrief"


@dataclass(frozen=True)
class PrebriefResult:
    """What ``send_prebriefs`` did for a draft: pre-briefs newly queued, and the day the pack may go."""

    queued: tuple[str, ...]
    distribute_on: dt.date


def send_prebriefs(
    engine: Engine, partnership: Partnership, record_id: int, *, today: dt.date | None = None
) -> PrebriefResult:
    """Queue the pre-briefs for a draft's red measures (those not already sent), in one transaction with
    any later distribution date they require."""
    today = today or clock.today()
    with engine.begin() as conn:
        record = pack_record(conn, record_id)
        lock_period(conn, record.period_id)
        record = pack_record(conn, record_id)
        if record.state in ("sent", "superseded"):
            return PrebriefResult((), record.distribute_on)
        later = max(record.distribute_on, add_working_days(today, partnership.board.pack.prebrief_working_days))
        messages = prebrief_messages(
            partnership, Period.from_id(record.period_id), figures_of(conn, record_id), distribute_on=later
        )
        queued = tuple(m.key for m in messages if outbox.enqueue(conn, m))
        if queued and later != record.distribute_on:
            conn.execute(
                sa.text("UPDATE ops.board_packs SET distribute_on = :d WHERE id = :i"), {"d": later, "i": record_id}
            )
        return PrebriefResult(queued, later if queued else record.distribute_on)


def prebrief_messages(
    partnership: Partnership, period: Period, figures: dict[str, Any], *, distribute_on: dt.date
) -> list[outbox.Message]:
    """One private message per partner with red measures in ``figures`` (a pack's recorded figures)."""
    by_partner: dict[str, list[dict[str, Any]]] = {}
    for kpi in figures.get("kpis", []):
        if kpi["rag"] == "red":
            for partner_id in kpi["responsible"]:
                by_partner.setdefault(partner_id, []).append(kpi)
    returns = figures.get("returns", [])
    return [
        prebrief(
            partnership, period, partnership.partner(partner_id), kpis, returns=returns, distribute_on=distribute_on
        )
        for partner_id, kpis in by_partner.items()
    ]


def prebrief(
    partnership: Partnership,
    period: Period,
    partner: Partner,
    measures: Sequence[dict[str, Any]],
    *,
    returns: Sequence[dict[str, Any]] = (),
    distribute_on: dt.date,
) -> outbox.Message:
    """The pre-brief to ``partner``'s senior lead about ``measures`` (their red ones, as the pack shows them)."""
    ids = sorted(m["id"] for m in measures)
    digest = hashlib.sha256(",".join(ids).encode("utf-8")).hexdigest()[:12]
    key = outbox.message_key(PREBRIEF, period.id, partner.id, red=digest)
    count = len(measures)
    subject = (
        f"{partnership.short_name}: private pre-brief – {count} red measure{'s' if count != 1 else ''} for "
        f"{partner.name} in the Board pack for {period.short_label}"
    )
    own_returns = [r for r in returns if r.get("partner_id") == partner.id]
    ledger = {k.id for k in partnership.kpis if k.ledger}
    shown = [{**m, "returns": own_returns if m["id"] in ledger else []} for m in measures]
    text, html = mail.render_email(
        "prebrief",
        {
            "partnership": partnership,
            "subject": subject,
            "key": key,
            "period": period,
            "board": partnership.board,
            "partner": partner,
            "measures": shown,
            "distribute_on": distribute_on,
        },
    )
    return outbox.Message(
        key=key,
        kind=PREBRIEF,
        feed_id=None,
        period_id=period.id,
        recipients=(partner.senior_lead.email,),
        cc=(),
        subject=subject,
        text=text,
        html=html,
    )


def prebriefs_sent(conn: Connection, period_id: str) -> list[tuple[str, tuple[str, ...]]]:
    """Every pre-brief queued for a period: (key, recipients), oldest first."""
    rows = conn.execute(
        sa.text("SELECT key, recipients FROM ops.notifications WHERE kind = :k AND period_id = :p ORDER BY id"),
        {"k": PREBRIEF, "p": period_id},
    )
    return [(r.key, tuple(r.recipients)) for r in rows]
