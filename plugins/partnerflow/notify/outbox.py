"""The notification outbox: one ``ops.notifications`` row per message, keyed so it is sent once.

A message is enqueued inside the transaction of the state change that causes it (a file published, a
file rejected, a reminder stage reached), so either both happen or neither does. The sender drains the
outbox later; a second enqueue of the same key is a no-op.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

KEY_SEPARATOR = ":"


@dataclass(frozen=True)
class Attachment:
    """A file sent with a message."""

    filename: str
    content: bytes
    mime_type: str


@dataclass(frozen=True)
class Message:
    """One email, ready to enqueue. ``key`` makes it unique: the same key is only ever sent once."""

    key: str
    kind: str
    feed_id: str | None
    period_id: str | None
    recipients: tuple[str, ...]
    cc: tuple[str, ...]
    subject: str
    text: str
    html: str
    attachments: tuple[Attachment, ...] = ()


def message_key(kind: str, *parts: object, **named: object) -> str:
    """The deterministic key of a message: ``kind:part:part:name=value``.

    ``message_key("receipt", "council_referrals", "2026Q3", file=12)`` gives
    ``receipt:council_referrals:2026Q3:file=12``. Parts may not contain ``:`` so keys stay unambiguous.
    """
    pieces = [kind, *(str(p) for p in parts), *(f"{name}={value}" for name, value in named.items())]
    for piece in pieces:
        if not piece or KEY_SEPARATOR in piece:
            raise ValueError(f"message key parts must be non-empty and contain no {KEY_SEPARATOR!r}: {piece!r}")
    return KEY_SEPARATOR.join(pieces)


_INSERT = sa.text(
    """
    INSERT INTO ops.notifications
        (key, kind, feed_id, period_id, recipients, cc, subject, text_body, html_body, attachments)
    VALUES
        (:key, :kind, :feed_id, :period_id, CAST(:recipients AS jsonb), CAST(:cc AS jsonb),
         :subject, :text_body, :html_body, CAST(:attachments AS jsonb))
    ON CONFLICT (key) DO NOTHING
    RETURNING id
    """
)


def enqueue(conn: Connection, message: Message) -> bool:
    """Add ``message`` to the outbox in the caller's transaction; True if it was new, False if already there."""
    if not message.recipients:
        raise ValueError(f"message {message.key} has no recipients")
    row = conn.execute(
        _INSERT,
        {
            "key": message.key,
            "kind": message.kind,
            "feed_id": message.feed_id,
            "period_id": message.period_id,
            "recipients": json.dumps(list(message.recipients)),
            "cc": json.dumps(list(message.cc)),
            "subject": message.subject,
            "text_body": message.text,
            "html_body": message.html,
            "attachments": json.dumps([_attachment_to_json(a) for a in message.attachments]),
        },
    ).first()
    return row is not None


def message_from_row(row: Mapping[str, Any]) -> Message:
    """Rebuild a ``Message`` from an ``ops.notifications`` row (as a mapping)."""
    return Message(
        key=row["key"],
        kind=row["kind"],
        feed_id=row["feed_id"],
        period_id=row["period_id"],
        recipients=tuple(row["recipients"]),
        cc=tuple(row["cc"]),
        subject=row["subject"],
        text=row["text_body"],
        html=row["html_body"],
        attachments=tuple(
            Attachment(
                filename=a["filename"],
                content=base64.b64decode(a["content_base64"]),
                mime_type=a["mime_type"],
            )
            for a in row["attachments"]
        ),
    )


def _attachment_to_json(attachment: Attachment) -> dict[str, str]:
    return {
        "filename": attachment.filename,
        "mime_type": attachment.mime_type,
        "content_base64": base64.b64encode(attachment.content).decode("ascii"),
    }
