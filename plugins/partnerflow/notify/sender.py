"""The outbox sender: drains due ``ops.notifications`` rows through SendGrid, each exactly once.

Each row is claimed with ``FOR UPDATE SKIP LOCKED`` and handled in its own transaction, so several senders
can run at once without sending a message twice. Outcomes:

- 202: ``sent``, with SendGrid's ``X-Message-Id``;
- 429: retried at the time SendGrid gives (``X-RateLimit-Reset``, else ``Retry-After``); not counted as an
  attempt, and the drain stops there, since the limit applies to the whole account;
- 5xx, timeouts, dropped connections: retried with exponential backoff and jitter, ``dead`` after
  ``max_attempts``;
- 401/403: the API key is wrong for every message alike, so the row is left pending and
  ``SendgridCredentialsRejected`` is raised (the task fails loudly instead of dead-lettering everything);
- any other 4xx: ``dead``, with SendGrid's error message as the reason;
- outside production, a message with any recipient not on ``notifications.allow_list``: ``blocked``.

After each drain, dead-lettered and repeatedly failing messages (and a refused API key) are reported to the
officer and the engineers by the fallback route, SMTP (``partnerflow.notify.fallback``), when the settings
carry the partnership.

Pitfalls:
    - The lock is held while SendGrid is called (with a short timeout). If the process dies after SendGrid
      accepted a message but before the commit, the row is still pending and is sent again: delivery is
      at-least-once across crashes, exactly-once otherwise.
    - Recipient addresses and bodies are never logged at INFO; the reason stored for a blocked or dead row
      may name addresses, as the row already holds them.
"""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
import http.client
import json
import logging
import os
import random
import urllib.error
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import Attachment as SendgridAttachment
from sendgrid.helpers.mail import (
    Category,
    Cc,
    ClickTracking,
    Content,
    CustomArg,
    Disposition,
    FileContent,
    FileName,
    FileType,
    From,
    Mail,
    OpenTracking,
    Personalization,
    ReplyTo,
    Subject,
    To,
    TrackingSettings,
)
from sqlalchemy.engine import Connection, Engine

from partnerflow.core import metrics
from partnerflow.core.config import Notifications, Partnership
from partnerflow.core.config import partnership as configured_partnership
from partnerflow.core.errors import TerminalError
from partnerflow.notify.messages import unique_addresses
from partnerflow.notify.outbox import Message, message_from_row

log = logging.getLogger(__name__)

DEFAULT_HOST = "https://api.sendgrid.com"
PRODUCTION = "production"
MAX_RECIPIENTS_PER_REQUEST = 1000
_REASON_MAX = 500


class SenderNotConfigured(TerminalError):
    """PARTNERFLOW_SENDGRID_API_KEY is not set: someone must set it."""


class SendgridCredentialsRejected(TerminalError):
    """SendGrid answered 401 or 403: the API key is missing, wrong or lacks the mail.send permission.

    Terminal: retrying sends the same key; someone must replace it."""


@dataclass(frozen=True, kw_only=True)
class SenderSettings:
    """Where and how to send: the SendGrid endpoint, the environment, and the partnership's sender."""

    api_key: str
    notifications: Notifications
    host: str = DEFAULT_HOST
    environment: str = "development"
    reply_to: str | None = None
    timeout_seconds: float = 10.0
    max_attempts: int = 6
    backoff_base_seconds: float = 60.0
    backoff_cap_seconds: float = 3600.0
    max_messages: int = 500
    partnership: Partnership | None = None
    """Who to tell by the fallback route when SendGrid fails; None turns the fallback off."""

    @classmethod
    def from_env(cls, partnership: Partnership | None = None) -> SenderSettings:
        """Settings from ``PARTNERFLOW_SENDGRID_*``/``PARTNERFLOW_ENVIRONMENT`` and the partnership config."""
        partnership = partnership or configured_partnership()
        api_key = os.environ.get("PARTNERFLOW_SENDGRID_API_KEY")
        if not api_key:
            raise SenderNotConfigured(
                "PARTNERFLOW_SENDGRID_API_KEY is not set: give it a SendGrid API key with mail.send permission "
                "(the dev stack sets it for its local SendGrid sink)"
            )
        return cls(
            api_key=api_key,
            notifications=partnership.notifications,
            host=os.environ.get("PARTNERFLOW_SENDGRID_HOST", DEFAULT_HOST),
            environment=os.environ.get("PARTNERFLOW_ENVIRONMENT", "development"),
            reply_to=partnership.officer.email,
            partnership=partnership,
        )

    @property
    def production(self) -> bool:
        return self.environment == PRODUCTION


@dataclass(frozen=True)
class SendSummary:
    """How many outbox rows one drain sent, put back for later, dead-lettered and blocked."""

    sent: int = 0
    retried: int = 0
    dead: int = 0
    blocked: int = 0


@dataclass
class _Outcome:
    state: str  # sent | pending | dead | blocked
    reason: str | None = None
    status_code: int | None = None
    next_attempt_at: dt.datetime | None = None
    counts_as_attempt: bool = True
    stop_draining: bool = False
    credentials_rejected: bool = False
    message_ids: list[str] = field(default_factory=list)
    chunks_sent: int = 0


_CLAIM = sa.text(
    """
    SELECT id, key, kind, feed_id, period_id, recipients, cc, subject, text_body, html_body, attachments,
           attempts, chunks_sent, provider_message_id
    FROM ops.notifications
    WHERE state = 'pending' AND next_attempt_at <= :now
    ORDER BY next_attempt_at, id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
    """
)

_UPDATE = sa.text(
    """
    UPDATE ops.notifications
    SET state = :state,
        attempts = attempts + :attempt,
        next_attempt_at = COALESCE(:next_attempt_at, next_attempt_at),
        sent_at = CASE WHEN :state = 'sent' THEN CAST(:now AS timestamptz) ELSE sent_at END,
        provider_message_id = :message_ids,
        chunks_sent = :chunks_sent,
        last_error = :reason
    WHERE id = :id
    """
)

_LOG_ATTEMPT = sa.text(
    """
    INSERT INTO ops.notification_attempts
        (notification_id, attempted_at, outcome, status_code, provider_message_id, detail)
    VALUES (:id, :now, :outcome, :status_code, :message_ids, :reason)
    """
)


def send_pending(
    engine: Engine, *, settings: SenderSettings | None = None, now: dt.datetime | None = None
) -> SendSummary:
    """Send every outbox row that is due (up to ``settings.max_messages``); return what happened.

    ``now`` fixes the clock (for tests); by default each row is judged at the current time.
    """
    settings = settings or SenderSettings.from_env()
    client = SendGridAPIClient(api_key=settings.api_key, host=settings.host)
    counts = {"sent": 0, "pending": 0, "dead": 0, "blocked": 0}
    for _ in range(settings.max_messages):
        at = now or dt.datetime.now(dt.UTC)
        with engine.begin() as conn:
            claimed = conn.execute(_CLAIM, {"now": at}).mappings().first()
            if claimed is None:
                break
            row = dict(claimed)  # _deliver notes the chunks it sent on it, for _record
            outcome = _deliver(client, row, settings, at)
            _record(conn, row, outcome, at)
        counts[outcome.state] += 1
        _log_outcome(row["key"], outcome)
        if outcome.credentials_rejected:
            _check_delivery(engine, settings, delivered=counts["sent"], credentials_rejected=True, now=now)
            report_outbox(engine)
            raise SendgridCredentialsRejected(
                f"SendGrid refused the API key ({outcome.reason}); nothing more was sent. "
                "Check PARTNERFLOW_SENDGRID_API_KEY and that it has the mail.send permission."
            )
        if outcome.stop_draining:
            break
    _check_delivery(engine, settings, delivered=counts["sent"], credentials_rejected=False, now=now)
    report_outbox(engine)
    return SendSummary(sent=counts["sent"], retried=counts["pending"], dead=counts["dead"], blocked=counts["blocked"])


_OUTBOX_BY_FEED = sa.text(
    "SELECT feed_id, count(*) FILTER (WHERE state = 'pending') AS backlog,"
    " count(*) FILTER (WHERE state = 'dead') AS dead FROM ops.notifications GROUP BY feed_id"
)


def report_outbox(engine: Engine) -> None:
    """Per feed, the messages still waiting and those given up on, as metrics (``core.metrics``)."""
    with engine.connect() as conn:
        for feed_id, backlog, dead in conn.execute(_OUTBOX_BY_FEED):
            metrics.gauge("outbox_backlog", feed_id, backlog)
            metrics.gauge("outbox_dead_letters", feed_id, dead)


def _check_delivery(
    engine: Engine, settings: SenderSettings, *, delivered: int, credentials_rejected: bool, now: dt.datetime | None
) -> None:
    """Tell the officer and the engineers by the fallback route if SendGrid is failing; never fails the drain."""
    if settings.partnership is None:
        return
    from partnerflow.notify import fallback

    try:
        fallback.check_delivery(
            engine,
            settings.partnership,
            production=settings.production,
            delivered=delivered,
            credentials_rejected=credentials_rejected,
            now=now or dt.datetime.now(dt.UTC),
        )
    except Exception:
        log.exception("the fallback route could not report the delivery problem; the next drain tries again")


def build_mail(message: Message, settings: SenderSettings, to: tuple[str, ...], cc: tuple[str, ...]) -> Mail:
    """The SendGrid request for ``message`` to one chunk of its recipients."""
    mail = Mail()
    sender = settings.notifications.sender
    mail.from_email = From(sender.email, sender.name)
    if settings.reply_to:
        mail.reply_to = ReplyTo(settings.reply_to)
    mail.subject = Subject(message.subject)
    personalization = Personalization()
    for address in to:
        personalization.add_to(To(address))
    for address in cc:
        personalization.add_cc(Cc(address))
    mail.add_personalization(personalization)
    mail.add_content(Content("text/plain", message.text))
    mail.add_content(Content("text/html", message.html))
    for attachment in message.attachments:
        mail.add_attachment(
            SendgridAttachment(
                FileContent(base64.b64encode(attachment.content).decode("ascii")),
                FileName(attachment.filename),
                FileType(attachment.mime_type),
                Disposition("attachment"),
            )
        )
    # Only non-personal values: SendGrid keeps these in its activity feed and event webhooks.
    mail.add_category(Category("partnerflow"))
    mail.add_category(Category(message.kind))
    mail.add_custom_arg(CustomArg("partnerflow_key", message.key))
    mail.add_custom_arg(CustomArg("partnerflow_kind", message.kind))
    # No tracking pixels or rewritten links: the recipients are partner staff, not a marketing list.
    mail.tracking_settings = TrackingSettings(
        click_tracking=ClickTracking(enable=False, enable_text=False), open_tracking=OpenTracking(enable=False)
    )
    return mail


def recipient_chunks(
    recipients: tuple[str, ...], cc: tuple[str, ...], limit: int = MAX_RECIPIENTS_PER_REQUEST
) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """Split recipients into requests of at most ``limit`` addresses (to + cc), each with at least one "to".

    Addresses are de-duplicated case-insensitively (SendGrid rejects a repeat within a request); the cc
    list goes with the first chunks, so nobody gets two copies.
    """
    to = unique_addresses(recipients)
    copies = [a for a in unique_addresses(cc) if a not in to]
    everyone = [(a, "to") for a in to] + [(a, "cc") for a in copies]
    chunks = []
    for start in range(0, len(everyone), limit):
        part = everyone[start : start + limit]
        chunk_to = tuple(a for a, role in part if role == "to")
        chunk_cc = tuple(a for a, role in part if role == "cc")
        chunks.append((chunk_to, chunk_cc) if chunk_to else (chunk_cc, ()))
    return chunks


def _deliver(client: SendGridAPIClient, row: Mapping[str, Any], settings: SenderSettings, now: dt.datetime) -> _Outcome:
    message = message_from_row(row)
    message_ids = [i for i in (row["provider_message_id"] or "").split() if i]
    if not settings.production:
        refused = [a for a in (*message.recipients, *message.cc) if not settings.notifications.allowed(a)]
        if refused:
            return _Outcome(
                state="blocked",
                reason=(
                    f"not sent: PARTNERFLOW_ENVIRONMENT is {settings.environment!r} and "
                    f"{len(refused)} recipient(s) are not on notifications.allow_list: {', '.join(refused)}"
                ),
                counts_as_attempt=False,
            )
    chunks = recipient_chunks(message.recipients, message.cc)
    done = row["chunks_sent"]
    for to, cc in chunks[done:]:
        try:
            body = build_mail(message, settings, to, cc).get()
        except Exception as error:  # the sendgrid helpers refuse some content (e.g. text that looks like a key)
            reason = f"could not build the SendGrid request: {type(error).__name__}"
            return _Outcome(state="dead", reason=reason, message_ids=message_ids, chunks_sent=done)
        try:
            response = client.client.mail.send.post(request_body=body, timeout=settings.timeout_seconds)
        except HTTPError as error:
            outcome = _outcome_for_http_error(error, row["attempts"] + 1, settings, now)
            outcome.message_ids, outcome.chunks_sent = message_ids, done
            return outcome
        except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as error:
            outcome = _transient(
                f"no answer from SendGrid: {_describe(error)}", None, row["attempts"] + 1, settings, now
            )
            outcome.message_ids, outcome.chunks_sent = message_ids, done
            return outcome
        done += 1
        message_id = response.headers.get("X-Message-Id")
        if message_id:
            message_ids.append(message_id)
    return _Outcome(state="sent", status_code=202, message_ids=message_ids, chunks_sent=done)


def _outcome_for_http_error(error: HTTPError, attempt: int, settings: SenderSettings, now: dt.datetime) -> _Outcome:
    status = int(error.status_code)
    reason = f"SendGrid {status}: {_sendgrid_error_message(error)}"
    if status == 429:
        return _Outcome(
            state="pending",
            reason=reason,
            status_code=status,
            next_attempt_at=_rate_limit_reset(error.headers, now),
            counts_as_attempt=False,
            stop_draining=True,
        )
    if status >= 500:
        return _transient(reason, status, attempt, settings, now)
    if status in (401, 403):
        return _Outcome(
            state="pending",
            reason=reason,
            status_code=status,
            counts_as_attempt=False,
            stop_draining=True,
            credentials_rejected=True,
        )
    return _Outcome(state="dead", reason=reason, status_code=status)


def _transient(reason: str, status: int | None, attempt: int, settings: SenderSettings, now: dt.datetime) -> _Outcome:
    if attempt >= settings.max_attempts:
        return _Outcome(state="dead", reason=f"gave up after {attempt} attempts; last: {reason}", status_code=status)
    delay = min(settings.backoff_cap_seconds, settings.backoff_base_seconds * 2 ** (attempt - 1))
    delay *= random.uniform(0.5, 1.0)  # jitter, so many senders don't retry in lockstep
    return _Outcome(
        state="pending",
        reason=reason,
        status_code=status,
        next_attempt_at=now + dt.timedelta(seconds=max(1.0, delay)),
    )


def _rate_limit_reset(headers: Any, now: dt.datetime) -> dt.datetime:
    """When SendGrid says to come back: ``X-RateLimit-Reset`` (epoch seconds), else ``Retry-After``."""
    earliest, latest = now + dt.timedelta(seconds=1), now + dt.timedelta(days=1)
    reset = _header(headers, "X-RateLimit-Reset")
    retry_after = _header(headers, "Retry-After")
    when = now + dt.timedelta(seconds=60)
    if reset and reset.strip().isdigit():
        when = dt.datetime.fromtimestamp(int(reset.strip()), dt.UTC)
    elif retry_after and retry_after.strip().isdigit():
        when = now + dt.timedelta(seconds=int(retry_after.strip()))
    elif retry_after:
        try:
            when = email.utils.parsedate_to_datetime(retry_after)
        except (TypeError, ValueError):
            pass
    return min(max(when, earliest), latest)


def _header(headers: Any, name: str) -> str | None:
    if headers is None:
        return None
    value = headers.get(name)
    return str(value) if value is not None else None


def _sendgrid_error_message(error: HTTPError) -> str:
    """SendGrid's ``{"errors": [{"message", "field"}]}`` as one line, or the start of the raw body."""
    body = error.body.decode("utf-8", "replace") if isinstance(error.body, bytes) else str(error.body or "")
    try:
        errors = json.loads(body).get("errors") or []
        parts = [
            f"{e.get('message', '')}" + (f" (field {e['field']})" if e.get("field") else "")
            for e in errors
            if isinstance(e, dict)
        ]
        text = "; ".join(p for p in parts if p) or body
    except (ValueError, AttributeError):
        text = body or str(error.reason or "")
    text = " ".join(text.split())
    return text[:_REASON_MAX] if text else "(no error message)"


def _describe(error: BaseException) -> str:
    inner = getattr(error, "reason", None)
    return f"{type(error).__name__}: {inner if inner is not None else error}"


def _record(conn: Connection, row: Mapping[str, Any], outcome: _Outcome, now: dt.datetime) -> None:
    message_ids = " ".join(outcome.message_ids) or None
    conn.execute(
        _UPDATE,
        {
            "id": row["id"],
            "state": outcome.state,
            "attempt": 1 if outcome.counts_as_attempt else 0,
            "next_attempt_at": outcome.next_attempt_at,
            "now": now,
            "message_ids": message_ids,
            "chunks_sent": outcome.chunks_sent,
            "reason": outcome.reason,
        },
    )
    conn.execute(
        _LOG_ATTEMPT,
        {
            "id": row["id"],
            "now": now,
            "outcome": "retry" if outcome.state == "pending" else outcome.state,
            "status_code": outcome.status_code,
            "message_ids": message_ids,
            "reason": outcome.reason,
        },
    )


def _log_outcome(key: str, outcome: _Outcome) -> None:
    if outcome.state == "sent":
        log.info("sent %s (SendGrid message id %s)", key, " ".join(outcome.message_ids) or "not given")
    elif outcome.state == "pending":
        log.warning("will retry %s at %s (status %s)", key, outcome.next_attempt_at, outcome.status_code)
    elif outcome.state == "dead":
        log.error("gave up on %s (status %s); the reason is in ops.notifications", key, outcome.status_code)
    else:
        log.warning("blocked %s: a recipient is not on the allow-list outside production", key)
