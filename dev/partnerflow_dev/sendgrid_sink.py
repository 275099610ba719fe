"""A SendGrid-compatible `POST /v3/mail/send` endpoint that keeps each email as files instead of sending.

The real `sendgrid` client talks to it with `SendGridAPIClient(api_key, host=sink.url)`. It answers as
SendGrid's v3 Mail Send does: 202 with an empty body and an `X-Message-Id` header for an accepted
request; 401 with SendGrid's error body for a missing or wrong key; 400 with
`{"errors": [{"message", "field", "help"}]}` listing what SendGrid would refuse; 200 without storing
when `mail_settings.sandbox_mode.enable` is true.

Every accepted request is kept in `out_dir` as `<seq>-<message-id>.json` (the body exactly as
received), `.eml` (an RFC 5322 rendering with text, HTML and attachments) and `.html` (the HTML part,
to open in a browser). The `.json` file is written last, so its presence means the set is complete.

Pitfalls:
    - This is a development double: it checks the common rules, not every rule SendGrid has
      (templates, categories, send_at windows and the like are accepted as given).
    - `MailFault.ACCEPT_THEN_TIMEOUT` stores the message and then holds the reply back for
      `reply_delay_seconds`, so a client that times out and retries sends the email twice.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import html
import json
import re
import secrets
import threading
import time
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate
from enum import Enum
from pathlib import Path
from typing import Any

from partnerflow_dev._http import BackgroundHttpServer, FaultQueue, JsonRequestHandler

MAIL_SEND_PATH = "/v3/mail/send"
HELP_BASE = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html"
MAX_PERSONALIZATIONS = 1000
MAX_RECIPIENTS = 1000
RATE_LIMIT = 600

EMAIL_ADDRESS = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$"
)

AUTHORIZATION_REQUIRED = {"message": "authorization required", "field": None, "help": None}
INVALID_GRANT = {
    "message": "The provided authorization grant is invalid, expired, or revoked",
    "field": None,
    "help": None,
}
BAD_REQUEST = {"message": "Bad Request", "field": None, "help": None}


class MailFault(Enum):
    """Ways the sink can misbehave on one valid request (queue them on `SendgridSink.faults`)."""

    RATE_LIMITED = "rate_limited"
    """429 with `X-RateLimit-Reset` `rate_limit_reset_seconds` from now; nothing stored."""
    SERVER_ERROR = "server_error"
    """500; nothing stored."""
    BAD_REQUEST = "bad_request"
    """400 with a SendGrid error body; nothing stored."""
    UNAUTHORIZED = "unauthorized"
    """401 as for a revoked key; nothing stored."""
    ACCEPT_THEN_TIMEOUT = "accept_then_timeout"
    """Stored, but the 202 is held back for `reply_delay_seconds` (past the client's timeout)."""


def sendgrid_error(message: str, field: str | None, anchor: str | None) -> dict[str, Any]:
    """One entry of a SendGrid error body."""
    return {"message": message, "field": field, "help": f"{HELP_BASE}#{anchor}" if anchor else None}


def validate_mail(mail: Any) -> list[dict[str, Any]]:
    """The errors SendGrid's v3 Mail Send would return for this request body (empty when valid)."""
    if not isinstance(mail, dict):
        return [BAD_REQUEST]
    errors = _personalization_errors(mail.get("personalizations"))
    errors += _from_errors(mail.get("from"))
    errors += _reply_to_errors(mail.get("reply_to"))
    has_template = bool(mail.get("template_id"))
    if not has_template and not _has_subject(mail):
        errors.append(
            sendgrid_error(
                "The subject is required. You can get around this requirement if you use a template "
                "with a subject defined or if every personalization has a subject defined.",
                "subject",
                "message.subject",
            )
        )
    if not has_template:
        errors += _content_errors(mail.get("content"))
    errors += _attachment_errors(mail.get("attachments"))
    return errors


def _personalization_errors(personalizations: Any) -> list[dict[str, Any]]:
    if not isinstance(personalizations, list) or not personalizations:
        return [
            sendgrid_error(
                "The personalizations field is required and must have at least one personalization.",
                "personalizations",
                "-Personalizations-Errors",
            )
        ]
    if len(personalizations) > MAX_PERSONALIZATIONS:
        return [
            sendgrid_error(
                f"The personalization block is limited to {MAX_PERSONALIZATIONS} personalizations per "
                f"API request. You have provided {len(personalizations)} personalizations. Please consider "
                "splitting this into multiple requests and resending your request.",
                "personalizations",
                "message.personalizations",
            )
        ]
    errors: list[dict[str, Any]] = []
    total_recipients = 0
    for index, personalization in enumerate(personalizations):
        field = f"personalizations.{index}"
        if not isinstance(personalization, dict):
            errors.append(sendgrid_error("Invalid type. Expected: object.", field, "message.personalizations"))
            continue
        to = personalization.get("to")
        if not isinstance(to, list) or not to:
            errors.append(
                sendgrid_error(
                    "The to array is required for all personalization objects, and must have at least "
                    "one email object with a valid email address.",
                    f"{field}.to",
                    "message.personalizations.to",
                )
            )
        seen: set[str] = set()
        for kind in ("to", "cc", "bcc"):
            addresses = personalization.get(kind)
            if addresses is None or (kind == "to" and not isinstance(addresses, list)):
                continue
            if not isinstance(addresses, list):
                errors.append(
                    sendgrid_error(
                        "Invalid type. Expected: array.", f"{field}.{kind}", f"message.personalizations.{kind}"
                    )
                )
                continue
            total_recipients += len(addresses)
            for position, address in enumerate(addresses):
                email = address.get("email") if isinstance(address, dict) else None
                email_field = f"{field}.{kind}.{position}.email"
                anchor = f"message.personalizations.{kind}"
                if not isinstance(email, str) or not email:
                    errors.append(sendgrid_error(f"The {kind} email parameter is required.", email_field, anchor))
                elif not EMAIL_ADDRESS.match(email):
                    errors.append(sendgrid_error("Does not contain a valid address.", email_field, anchor))
                elif email.lower() in seen:
                    errors.append(
                        sendgrid_error(
                            "Each email address in the personalization block should be unique between to, "
                            f"cc, and bcc. We found the first duplicate instance of [{email}] in the "
                            f"{field}.{kind} field.",
                            field,
                            "message.personalizations",
                        )
                    )
                else:
                    seen.add(email.lower())
    if total_recipients > MAX_RECIPIENTS:
        errors.append(
            sendgrid_error(
                f"There is a limit of {MAX_RECIPIENTS} total recipients (to + cc + bcc) per request.",
                "personalizations",
                "message.personalizations",
            )
        )
    return errors


def _from_errors(sender: Any) -> list[dict[str, Any]]:
    email = sender.get("email") if isinstance(sender, dict) else None
    if not isinstance(email, str) or not email:
        return [
            sendgrid_error(
                "The from object must be provided for every email send. It is an object that requires "
                'the email parameter, but may also contain a name parameter.  e.g. {"email" : '
                '"example@example.com"}  or {"email" : "example@example.com", "name" : "Example '
                'Recipient"}.',
                "from.email",
                "message.from",
            )
        ]
    if not EMAIL_ADDRESS.match(email):
        return [sendgrid_error("The from email does not contain a valid address.", "from.email", "message.from")]
    return []


def _reply_to_errors(reply_to: Any) -> list[dict[str, Any]]:
    if reply_to is None:
        return []
    email = reply_to.get("email") if isinstance(reply_to, dict) else None
    if not isinstance(email, str) or not EMAIL_ADDRESS.match(email):
        return [
            sendgrid_error("The reply_to email does not contain a valid address.", "reply_to.email", "message.reply_to")
        ]
    return []


def _has_subject(mail: dict[str, Any]) -> bool:
    subject = mail.get("subject")
    if isinstance(subject, str) and subject:
        return True
    personalizations = mail.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        return False
    return all(isinstance(p, dict) and isinstance(p.get("subject"), str) and p["subject"] for p in personalizations)


def _content_errors(content: Any) -> list[dict[str, Any]]:
    if not isinstance(content, list) or not content:
        return [
            sendgrid_error(
                "Unless a valid template_id is provided, the content parameter is required. There must be "
                "at least one defined content block. We typically suggest both text/plain and text/html "
                "blocks are included, but only one block is required.",
                "content",
                "message.content",
            )
        ]
    errors: list[dict[str, Any]] = []
    types: list[str] = []
    for index, block in enumerate(content):
        block = block if isinstance(block, dict) else {}
        content_type = block.get("type")
        value = block.get("value")
        if not isinstance(content_type, str) or not content_type:
            errors.append(
                sendgrid_error(
                    "The content type must be a string at least one character in length.",
                    f"content.{index}.type",
                    "message.content.type",
                )
            )
        else:
            types.append(content_type.lower())
        if not isinstance(value, str) or not value:
            errors.append(
                sendgrid_error(
                    "The content value must be a string at least one character in length.",
                    f"content.{index}.value",
                    "message.content.value",
                )
            )
    expected_prefix = [t for t in ("text/plain", "text/html") if t in types]
    if types[: len(expected_prefix)] != expected_prefix:
        errors.append(
            sendgrid_error(
                "If present, text/plain and text/html may only be provided in this order: text/plain, "
                "text/html, and then any other content types.",
                "content",
                "message.content",
            )
        )
    return errors


def _attachment_errors(attachments: Any) -> list[dict[str, Any]]:
    if attachments is None:
        return []
    if not isinstance(attachments, list):
        return [sendgrid_error("Invalid type. Expected: array.", "attachments", "message.attachments")]
    errors: list[dict[str, Any]] = []
    for index, attachment in enumerate(attachments):
        attachment = attachment if isinstance(attachment, dict) else {}
        content = attachment.get("content")
        if not isinstance(content, str) or not content:
            errors.append(
                sendgrid_error(
                    "The attachment content is required.",
                    f"attachments.{index}.content",
                    "message.attachments.content",
                )
            )
        elif not _is_base64(content):
            errors.append(
                sendgrid_error(
                    "The attachment content must be base64 encoded.",
                    f"attachments.{index}.content",
                    "message.attachments.content",
                )
            )
        filename = attachment.get("filename")
        if not isinstance(filename, str) or not filename:
            errors.append(
                sendgrid_error(
                    "The attachment filename parameter is required.",
                    f"attachments.{index}.filename",
                    "message.attachments.filename",
                )
            )
    return errors


def _is_base64(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def render_eml(mail: dict[str, Any], message_id: str) -> EmailMessage:
    """An RFC 5322 message for a valid Mail Send body, as the first personalization would receive it."""
    personalizations: list[dict[str, Any]] = mail["personalizations"]
    first = personalizations[0]
    eml = EmailMessage()
    eml["From"] = _address(first.get("from") or mail["from"])
    for header, kind in (("To", "to"), ("Cc", "cc"), ("Bcc", "bcc")):
        addresses = [_address(a) for p in personalizations for a in p.get(kind) or []]
        if addresses:
            eml[header] = addresses
    reply_to = mail.get("reply_to_list") or ([mail["reply_to"]] if mail.get("reply_to") else [])
    if reply_to:
        eml["Reply-To"] = [_address(a) for a in reply_to]
    eml["Subject"] = _one_line(first.get("subject") or mail.get("subject") or "")
    eml["Date"] = formatdate(usegmt=True)
    eml["Message-ID"] = f"<{message_id}@sendgrid-sink.invalid>"
    eml["X-Message-Id"] = message_id
    for name, value in {**(mail.get("headers") or {}), **(first.get("headers") or {})}.items():
        if _one_line(str(name)) and name.lower() not in {"from", "to", "cc", "bcc", "subject"}:
            eml[_one_line(str(name))] = _one_line(str(value))

    blocks = [b for b in mail.get("content") or [] if str(b.get("type", "")).startswith("text/")]
    if not blocks:
        blocks = [{"type": "text/plain", "value": f"(SendGrid template {mail.get('template_id')})"}]
    for position, block in enumerate(blocks):
        subtype = block["type"].split("/", 1)[1].split(";")[0].strip() or "plain"
        if position == 0:
            eml.set_content(block["value"], subtype=subtype)
        else:
            eml.add_alternative(block["value"], subtype=subtype)

    for attachment in mail.get("attachments") or []:
        maintype, _, subtype = str(attachment.get("type") or "application/octet-stream").partition("/")
        content_id = attachment.get("content_id")
        eml.add_attachment(
            base64.b64decode(attachment["content"]),
            maintype=maintype or "application",
            subtype=subtype or "octet-stream",
            filename=_one_line(attachment["filename"]),
            disposition=attachment.get("disposition") or "attachment",
            cid=f"<{content_id}>" if content_id else None,
        )
    return eml


def html_part(mail: dict[str, Any]) -> str:
    """The HTML body of a Mail Send body, or its plain text wrapped in a page when it has none."""
    blocks = mail.get("content") or []
    for block in blocks:
        if str(block.get("type", "")).lower().startswith("text/html"):
            return str(block["value"])
    text = next((str(b["value"]) for b in blocks if "value" in b), "")
    subject = html.escape(str(mail.get("subject") or ""))
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{subject}</title></head>'
        f"<body><pre>{html.escape(text)}</pre></body></html>\n"
    )


def _address(address: dict[str, Any]) -> Address:
    return Address(display_name=_one_line(str(address.get("name") or "")), addr_spec=address["email"])


def _one_line(text: str) -> str:
    return " ".join(text.splitlines()).strip()


class _SendgridHandler(JsonRequestHandler):
    server_version = "nginx"

    @property
    def sink(self) -> SendgridSink:
        return self.server.service

    def do_POST(self) -> None:
        if self.path.split("?", 1)[0] != MAIL_SEND_PATH:
            self.read_body()
            self._errors(404, [{"message": "not found", "field": None, "help": None}])
            return
        raw = self.read_body()
        authorization = self.headers.get("Authorization")
        if not authorization:
            self._errors(401, [AUTHORIZATION_REQUIRED])
            return
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(key.strip().encode(), self.sink.api_key.encode()):
            self._errors(401, [INVALID_GRANT])
            return
        try:
            mail = json.loads(raw)
        except ValueError:
            self._errors(400, [BAD_REQUEST])
            return
        errors = validate_mail(mail)
        if errors:
            self._errors(400, errors)
            return
        fault = self.sink.faults.take()
        if fault is MailFault.RATE_LIMITED:
            reset = int(time.time()) + self.sink.rate_limit_reset_seconds
            self._errors(
                429,
                [{"message": "too many requests", "field": None, "help": None}],
                {"X-RateLimit-Limit": str(RATE_LIMIT), "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)},
            )
            return
        if fault is MailFault.SERVER_ERROR:
            self._errors(500, [{"message": "internal server error", "field": None, "help": None}])
            return
        if fault is MailFault.BAD_REQUEST:
            self._errors(400, [BAD_REQUEST])
            return
        if fault is MailFault.UNAUTHORIZED:
            self._errors(401, [INVALID_GRANT])
            return
        if _sandbox_mode(mail):
            self.send_bytes(200, b"", "application/json")
            return
        try:
            message_id = self.sink._store(raw, mail)
        except Exception:
            self._errors(500, [{"message": "internal server error", "field": None, "help": None}])
            raise
        if fault is MailFault.ACCEPT_THEN_TIMEOUT:
            self.sink.stopping.wait(self.sink.reply_delay_seconds)
        self.send_bytes(202, b"", "application/json", {"X-Message-Id": message_id})

    def do_GET(self) -> None:
        self._errors(405, [{"message": "method not allowed", "field": None, "help": None}])

    def _errors(self, status: int, errors: list[dict[str, Any]], headers: dict[str, str] | None = None) -> None:
        self.send_json(status, {"errors": errors}, headers)


def _sandbox_mode(mail: dict[str, Any]) -> bool:
    settings = mail.get("mail_settings") or {}
    sandbox = settings.get("sandbox_mode") if isinstance(settings, dict) else None
    return isinstance(sandbox, dict) and sandbox.get("enable") is True


class SendgridSink(BackgroundHttpServer):
    """A local SendGrid v3 Mail Send endpoint that writes each accepted email under `out_dir`.

    Usage::

        with SendgridSink(out_dir=Path("var/outbox"), api_key="SG.dev") as sink:
            SendGridAPIClient("SG.dev", host=sink.url).send(mail)
            sink.messages()  # [the request body as sent]
    """

    handler_class = _SendgridHandler

    def __init__(
        self,
        *,
        out_dir: Path,
        api_key: str,
        port: int | None = None,
        reply_delay_seconds: float = 30.0,
        rate_limit_reset_seconds: int = 1,
    ) -> None:
        super().__init__(port=port)
        self.out_dir = Path(out_dir)
        self.api_key = api_key
        self.reply_delay_seconds = reply_delay_seconds
        self.rate_limit_reset_seconds = rate_limit_reset_seconds
        self.faults: FaultQueue[MailFault] = FaultQueue()
        self._lock = threading.Lock()
        self._last_seq = 0

    def start(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._last_seq = max((_seq(path) for path in self.out_dir.glob("*.json")), default=0)
        super().start()

    def message_files(self) -> list[Path]:
        """The `.json` file of every accepted message, in arrival order."""
        return sorted(self.out_dir.glob("*.json"), key=_seq)

    def messages(self) -> list[dict[str, Any]]:
        """Every accepted request body, parsed, in arrival order."""
        return [json.loads(path.read_bytes()) for path in self.message_files()]

    def _store(self, raw: bytes, mail: dict[str, Any]) -> str:
        message_id = secrets.token_urlsafe(16)[:22]
        eml = render_eml(mail, message_id).as_bytes(policy=policy.SMTP)
        with self._lock:
            self._last_seq += 1
            stem = f"{self._last_seq:06d}-{message_id}"
            (self.out_dir / f"{stem}.eml").write_bytes(eml)
            (self.out_dir / f"{stem}.html").write_text(html_part(mail), encoding="utf-8")
            partial = self.out_dir / f".{stem}.json.partial"
            partial.write_bytes(raw)
            partial.replace(self.out_dir / f"{stem}.json")
        return message_id


def _seq(path: Path) -> int:
    prefix = path.name.split("-", 1)[0]
    return int(prefix) if prefix.isdigit() else 0
