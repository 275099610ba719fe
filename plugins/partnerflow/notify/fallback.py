"""The second route: when SendGrid itself is failing, the officer and the engineers hear of it by SMTP.

After each drain of the outbox the sender calls :func:`check_delivery`. A message that was dead-lettered,
or has failed ``notifications.fallback.after_attempts`` times and is still waiting, or a SendGrid refusal of
the API key, is a delivery problem. Problems open (or add to) the ``sendgrid`` incident, so the officer
(cc the engineers) gets one email through the SMTP server of the Airflow connection
``notifications.fallback.smtp_connection``, and another only after the incidents' cool-down if problems
persist. Each dead message is reported once. When a later drain delivers again with nothing stuck, the
incident is resolved and a recovery message goes through the outbox (SendGrid works again by then).

Pitfalls:
    - The SMTP provider's hook sends one HTML part; this route's email has no plain-text alternative.
    - Outside production the allow-list applies here too: addresses not on it are left out.
    - If the SMTP server fails as well, nothing is recorded and the next drain tries again.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from partnerflow.core.config import Partnership
from partnerflow.notify import messages
from partnerflow.notify.incidents import record_failure, record_success
from partnerflow.notify.outbox import Message, enqueue

log = logging.getLogger(__name__)

SENDGRID = "sendgrid"
DELIVERY = "delivery"
MAX_LISTED = 50


class FallbackRouteFailed(RuntimeError):
    """The fallback SMTP route could not send (not configured, or the server refused)."""


@dataclass(frozen=True)
class Undelivered:
    """A message SendGrid has not taken: what it is, for whom, and why (SendGrid's reason)."""

    key: str
    kind: str
    subject: str
    recipients: tuple[str, ...]
    state: str
    attempts: int
    reason: str

    @property
    def state_text(self) -> str:
        return "not delivered" if self.state == "dead" else "will retry"


_PROBLEMS = sa.text(
    """
    SELECT id, key, kind, subject, recipients, cc, state, attempts, coalesce(last_error, '') AS reason
    FROM ops.notifications
    WHERE (state = 'dead' AND problem_reported_at IS NULL)
       OR (state = 'pending' AND (attempts >= :after_attempts OR :credentials_rejected))
    ORDER BY id
    LIMIT :limit
    """
)

_MARK_REPORTED = sa.text(
    "UPDATE ops.notifications SET problem_reported_at = :now WHERE id = ANY(:ids) AND state = 'dead'"
)


def check_delivery(
    engine: Engine,
    partnership: Partnership,
    *,
    production: bool,
    delivered: int,
    credentials_rejected: bool,
    now: dt.datetime,
) -> str | None:
    """Report delivery problems by SMTP (at most once per cool-down), or resolve the incident once SendGrid
    delivers again. Returns the key of the email sent by SMTP, if one was."""
    notifications = partnership.notifications
    cooldown = dt.timedelta(hours=notifications.incidents.cooldown_hours)
    with engine.begin() as conn:
        rows = (
            conn.execute(
                _PROBLEMS,
                {
                    "after_attempts": notifications.fallback.after_attempts,
                    "credentials_rejected": credentials_rejected,
                    "limit": MAX_LISTED,
                },
            )
            .mappings()
            .all()
        )
        if not rows and not credentials_rejected:
            if delivered:
                for incident in record_success(conn, name=SENDGRID, part=DELIVERY, now=now):
                    enqueue(
                        conn,
                        messages.incident_recovery(
                            partnership,
                            name=SENDGRID,
                            title="Email delivery through SendGrid",
                            period_id="",
                            incident_id=incident.id,
                            opened_at=incident.opened_at,
                            resolved_at=now,
                            failures=incident.failures,
                        ),
                    )
            return None
        problems = [
            Undelivered(
                key=row["key"],
                kind=row["kind"],
                subject=row["subject"],
                recipients=tuple(row["recipients"]) + tuple(row["cc"]),
                state=row["state"],
                attempts=row["attempts"],
                reason=row["reason"],
            )
            for row in rows
        ]
        detail = "SendGrid refused the API key" if credentials_rejected else f"{len(problems)} message(s) not delivered"
        failure = record_failure(
            conn, name=SENDGRID, period_id="", part=DELIVERY, detail=detail, now=now, cooldown=cooldown
        )
        if not failure.alert_now:
            return None
        message = messages.delivery_problem(
            partnership,
            incident_id=failure.incident.id,
            alert_number=failure.incident.alerts,
            problems=problems,
            credentials_rejected=credentials_rejected,
        )
        send_by_smtp(message, partnership, production=production)
        conn.execute(_MARK_REPORTED, {"now": now, "ids": [row["id"] for row in rows]})
    log.error("email delivery problem reported by the fallback route: %s", message.key)
    return message.key


def send_by_smtp(message: Message, partnership: Partnership, *, production: bool) -> None:
    """Send ``message`` (its HTML part) through the fallback SMTP connection; raise FallbackRouteFailed."""
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    notifications = partnership.notifications
    allowed = [a for a in message.recipients if production or notifications.allowed(a)]
    copies = [a for a in message.cc if production or notifications.allowed(a)]
    if len(allowed) + len(copies) < len(message.recipients) + len(message.cc):
        log.warning("fallback route: left out recipients not on notifications.allow_list (not production)")
    if not allowed and not copies:
        return
    to, cc = (allowed, copies) if allowed else (copies, [])
    connection = notifications.fallback.smtp_connection
    try:
        with SmtpHook(smtp_conn_id=connection) as hook:
            hook.send_email_smtp(
                to=to,
                cc=cc or None,
                subject=message.subject,
                html_content=message.html,
                from_email=notifications.sender.email,
                mime_subtype="alternative",
                custom_headers={"X-Partnerflow-Key": message.key},
            )
    except Exception as error:
        raise FallbackRouteFailed(
            f"the fallback route (SMTP connection {connection!r}) could not send: {type(error).__name__}: {error}"
        ) from error
