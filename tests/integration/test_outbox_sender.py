"""The outbox and the sender against a real PostgreSQL and the SendGrid sink, with the real sendgrid client."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from html import escape
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from partnerflow.core.config import Partnership, Person, load_config
from partnerflow.core.periods import Period
from partnerflow.notify import messages
from partnerflow.notify.outbox import Message, enqueue
from partnerflow.notify.sender import SenderSettings, SendgridCredentialsRejected, SendSummary, send_pending
from partnerflow_dev.sendgrid_sink import MailFault, SendgridSink
from partnerflow_dev.smtp_sink import SmtpSink

API_KEY = "SG.test-key.partnerflow"
PERIOD = Period.from_id("2026Q3")


@pytest.fixture(autouse=True)
def empty_outbox(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE ops.notification_attempts, ops.notifications, ops.incidents"))


@pytest.fixture(scope="module")
def partnership() -> Partnership:
    return load_config()


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[SendgridSink]:
    with SendgridSink(out_dir=tmp_path / "sink", api_key=API_KEY, rate_limit_reset_seconds=3600) as server:
        yield server


@pytest.fixture
def settings(sink: SendgridSink, partnership: Partnership) -> SenderSettings:
    # Every fictional domain the demo partnership uses, listed exactly (an "@domain" entry does not cover
    # its subdomains).
    domains = {p.email.split("@")[1] for p in everyone(partnership)} | {"board.example.org", "example.org"}
    notifications = partnership.notifications.model_copy(update={"allow_list": tuple(f"@{d}" for d in domains)})
    return SenderSettings(
        api_key=API_KEY,
        host=sink.url,
        environment="development",
        notifications=notifications,
        reply_to=partnership.officer.email,
        timeout_seconds=10.0,  # a loaded CI machine can take seconds for 1,000 recipients
        max_attempts=3,
    )


def everyone(partnership: Partnership) -> list[Person]:
    people = [partnership.officer, *partnership.engineers, *partnership.board.recipients]
    return people + [person for partner in partnership.partners for person in (partner.contact, partner.senior_lead)]


def receipt(partnership: Partnership, file_id: int = 12) -> Message:
    return messages.receipt(
        partnership,
        partnership.feed("council_referrals"),
        PERIOD,
        file_id=file_id,
        source_name="referrals_2026Q3.csv",
        rows=400,
        warnings=(),
    )


def rejection(partnership: Partnership) -> Message:
    report = {
        "passed": False,
        "rules_checked": 14,
        "rows_checked": 400,
        "failures": [
            {
                "code": "nfa_is_y_or_n",
                "message": "NFA flag must be Y or N",
                "columns": ["nfa"],
                "severity": "error",
                "failing_rows": 2,
                "row_numbers": [7, 9],
            }
        ],
    }
    return messages.rejection(
        partnership,
        partnership.feed("council_referrals"),
        PERIOD,
        file_id=13,
        source_name="referrals_2026Q3.csv",
        report=report,
        due=dt.date(2026, 10, 21),
    )


def put(engine: Engine, *items: Message) -> None:
    with engine.begin() as conn:
        for message in items:
            assert enqueue(conn, message)


def row(engine: Engine, key: str) -> dict[str, Any]:
    with engine.connect() as conn:
        found = conn.execute(sa.text("SELECT * FROM ops.notifications WHERE key = :k"), {"k": key}).mappings().one()
    return dict(found)


def sink_message_ids(sink: SendgridSink) -> list[str]:
    return [path.stem.split("-", 1)[1] for path in sink.message_files()]


def test_enqueue_is_once_per_key_and_part_of_the_callers_transaction(engine: Engine, partnership: Partnership) -> None:
    message = receipt(partnership)
    with engine.begin() as conn:
        assert enqueue(conn, message) is True
        assert enqueue(conn, message) is False

    with pytest.raises(RuntimeError), engine.begin() as conn:
        assert enqueue(conn, receipt(partnership, file_id=99))
        raise RuntimeError("the state change failed")

    with engine.connect() as conn:
        keys = conn.execute(sa.text("SELECT key FROM ops.notifications")).scalars().all()
    assert keys == [message.key]


def test_accepted_message_is_sent_once_with_its_message_id(
    engine: Engine, sink: SendgridSink, settings: SenderSettings, partnership: Partnership
) -> None:
    message = rejection(partnership)
    put(engine, message)

    assert send_pending(engine, settings=settings) == SendSummary(sent=1, retried=0, dead=0, blocked=0)
    assert send_pending(engine, settings=settings) == SendSummary()

    stored = row(engine, message.key)
    assert stored["state"] == "sent" and stored["attempts"] == 1 and stored["sent_at"] is not None
    assert [stored["provider_message_id"]] == sink_message_ids(sink)
    (body,) = sink.messages()
    assert body["subject"] == message.subject
    assert body["personalizations"] == [
        {"to": [{"email": message.recipients[0]}], "cc": [{"email": partnership.officer.email}]}
    ]
    assert body["from"]["email"] == partnership.notifications.sender.email
    assert body["reply_to"] == {"email": partnership.officer.email}
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
    assert body["content"][0]["value"] == message.text and body["content"][1]["value"] == message.html
    (attachment,) = body["attachments"]
    assert attachment["filename"] == "rejection-council_referrals-2026Q3.csv"
    assert base64.b64decode(attachment["content"]) == message.attachments[0].content
    assert body["custom_args"] == {"partnerflow_key": message.key, "partnerflow_kind": "rejection"}
    assert sorted(body["categories"]) == ["partnerflow", "rejection"]


def test_bad_request_is_dead_lettered_with_sendgrids_reason(
    engine: Engine, sink: SendgridSink, settings: SenderSettings, partnership: Partnership
) -> None:
    message = replace(receipt(partnership), recipients=("not..an address@example.org",))
    put(engine, message)

    assert send_pending(engine, settings=settings) == SendSummary(dead=1)

    stored = row(engine, message.key)
    assert stored["state"] == "dead"
    assert stored["last_error"].startswith("SendGrid 400: Does not contain a valid address.")
    assert "personalizations.0.to.0.email" in stored["last_error"]
    assert sink.messages() == []


def test_a_message_the_client_refuses_to_build_is_dead_lettered_not_stuck(
    engine: Engine, sink: SendgridSink, settings: SenderSettings, partnership: Partnership
) -> None:
    unbuildable = replace(receipt(partnership, file_id=1), text="SG.abc.def looks like an API key")
    fine = receipt(partnership, file_id=2)
    put(engine, unbuildable, fine)

    assert send_pending(engine, settings=settings) == SendSummary(sent=1, dead=1)
    assert row(engine, unbuildable.key)["last_error"] == "could not build the SendGrid request: ApiKeyIncludedException"


def test_rate_limited_message_waits_for_the_reset_and_the_drain_stops(
    engine: Engine, sink: SendgridSink, settings: SenderSettings, partnership: Partnership
) -> None:
    first, second = receipt(partnership, file_id=1), receipt(partnership, file_id=2)
    put(engine, first, second)
    sink.faults.add(MailFault.RATE_LIMITED)
    before = dt.datetime.now(dt.UTC)

    assert send_pending(engine, settings=settings) == SendSummary(retried=1)

    limited, untouched = row(engine, first.key), row(engine, second.key)
    assert limited["state"] == "pending" and limited["attempts"] == 0
    assert limited["next_attempt_at"] >= before + dt.timedelta(seconds=3000)  # the sink's reset is an hour away
    assert limited["last_error"].startswith("SendGrid 429")
    assert untouched["state"] == "pending" and untouched["last_error"] is None
    assert sink.messages() == []

    # Once the reset has passed, both go.
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    assert send_pending(engine, settings=settings, now=later) == SendSummary(sent=2)
    assert len(sink.messages()) == 2


def test_server_errors_back_off_then_dead_letter(
    engine: Engine, sink: SendgridSink, settings: SenderSettings, partnership: Partnership
) -> None:
    message = receipt(partnership)
    put(engine, message)
    sink.faults.add(MailFault.SERVER_ERROR, times=3)
    now = dt.datetime.now(dt.UTC)

    assert send_pending(engine, settings=settings, now=now) == SendSummary(retried=1)
    first_retry = row(engine, message.key)
    assert first_retry["attempts"] == 1 and first_retry["state"] == "pending"
    assert first_retry["next_attempt_at"] > now
    assert send_pending(engine, settings=settings, now=now) == SendSummary()  # not due yet

    now = first_retry["next_attempt_at"]
    assert send_pending(engine, settings=settings, now=now) == SendSummary(retried=1)
    second_retry = row(engine, message.key)
    assert second_retry["next_attempt_at"] - now > dt.timedelta(0)

    now = second_retry["next_attempt_at"]
    assert send_pending(engine, settings=settings, now=now) == SendSummary(dead=1)
    stored = row(engine, message.key)
    assert stored["state"] == "dead" and stored["attempts"] == 3
    assert stored["last_error"].startswith("gave up after 3 attempts; last: SendGrid 500")
    with engine.connect() as conn:
        outcomes = conn.execute(sa.text("SELECT outcome FROM ops.notification_attempts ORDER BY id")).scalars().all()
    assert outcomes == ["retry", "retry", "dead"]


def test_a_timeout_is_retried(
    engine: Engine, tmp_path: Path, settings: SenderSettings, partnership: Partnership
) -> None:
    message = receipt(partnership)
    put(engine, message)
    with SendgridSink(out_dir=tmp_path / "slow", api_key=API_KEY, reply_delay_seconds=60) as slow:
        slow.faults.add(MailFault.ACCEPT_THEN_TIMEOUT)
        summary = send_pending(engine, settings=replace(settings, host=slow.url, timeout_seconds=0.5))

    assert summary == SendSummary(retried=1)
    stored = row(engine, message.key)
    assert stored["state"] == "pending" and stored["attempts"] == 1
    assert stored["last_error"].startswith("no answer from SendGrid")


def test_a_rejected_api_key_stops_the_drain_and_leaves_messages_pending(
    engine: Engine, sink: SendgridSink, settings: SenderSettings, partnership: Partnership
) -> None:
    message = receipt(partnership)
    put(engine, message)

    with pytest.raises(SendgridCredentialsRejected, match="401"):
        send_pending(engine, settings=replace(settings, api_key="SG.wrong.key"))

    stored = row(engine, message.key)
    assert stored["state"] == "pending" and stored["attempts"] == 0
    assert send_pending(engine, settings=settings) == SendSummary(sent=1)


def test_allow_list_blocks_real_addresses_outside_production(
    engine: Engine, sink: SendgridSink, settings: SenderSettings, partnership: Partnership
) -> None:
    real = replace(receipt(partnership, file_id=1), cc=("someone@nhs.net",))
    fictional = receipt(partnership, file_id=2)
    put(engine, real, fictional)

    assert send_pending(engine, settings=settings) == SendSummary(sent=1, blocked=1)

    blocked = row(engine, real.key)
    assert blocked["state"] == "blocked"
    assert "not on notifications.allow_list" in blocked["last_error"] and "someone@nhs.net" in blocked["last_error"]
    (body,) = sink.messages()
    assert body["custom_args"]["partnerflow_key"] == fictional.key


def test_production_sends_to_anyone(
    engine: Engine, sink: SendgridSink, settings: SenderSettings, partnership: Partnership
) -> None:
    message = replace(receipt(partnership), recipients=("someone@nhs.net",))
    put(engine, message)

    assert send_pending(engine, settings=replace(settings, environment="production")) == SendSummary(sent=1)
    assert sink.messages()[0]["personalizations"][0]["to"] == [{"email": "someone@nhs.net"}]


def test_many_recipients_are_split_into_requests_of_at_most_1000(
    engine: Engine, sink: SendgridSink, settings: SenderSettings, partnership: Partnership
) -> None:
    board = tuple(f"member{i:04d}@board.example.org" for i in range(1500))
    message = replace(receipt(partnership), recipients=board, cc=(partnership.officer.email,))
    put(engine, message)

    assert send_pending(engine, settings=settings) == SendSummary(sent=1)

    stored = row(engine, message.key)
    assert stored["state"] == "sent" and stored["chunks_sent"] == 2
    assert stored["provider_message_id"].split() == sink_message_ids(sink)
    delivered = [
        entry["email"]
        for body in sink.messages()
        for personalization in body["personalizations"]
        for kind in ("to", "cc")
        for entry in personalization.get(kind, [])
    ]
    assert len(sink.messages()) == 2
    assert sorted(delivered) == sorted((*board, partnership.officer.email))
    assert all(
        sum(len(p.get(k, [])) for p in b["personalizations"] for k in ("to", "cc")) <= 1000 for b in sink.messages()
    )


def test_a_partial_send_resumes_after_the_accepted_chunk(
    engine: Engine,
    sink: SendgridSink,
    settings: SenderSettings,
    partnership: Partnership,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    board = tuple(f"member{i:04d}@board.example.org" for i in range(1200))
    message = replace(receipt(partnership), recipients=board, cc=())
    put(engine, message)
    requests = {"n": 0}

    def second_request_fails() -> MailFault | None:
        requests["n"] += 1
        return MailFault.SERVER_ERROR if requests["n"] == 2 else None

    monkeypatch.setattr(sink.faults, "take", second_request_fails)

    assert send_pending(engine, settings=settings) == SendSummary(retried=1)
    assert row(engine, message.key)["chunks_sent"] == 1
    assert len(sink.messages()) == 1

    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    assert send_pending(engine, settings=settings, now=later) == SendSummary(sent=1)
    assert len(sink.messages()) == 2
    assert row(engine, message.key)["provider_message_id"].split() == sink_message_ids(sink)


def test_concurrent_senders_send_each_message_once(
    engine: Engine, sink: SendgridSink, settings: SenderSettings, partnership: Partnership
) -> None:
    put(engine, *(receipt(partnership, file_id=i) for i in range(30)))

    with ThreadPoolExecutor(max_workers=3) as pool:
        summaries = list(pool.map(lambda _: send_pending(engine, settings=settings), range(3)))

    assert sum(s.sent for s in summaries) == 30
    keys = [body["custom_args"]["partnerflow_key"] for body in sink.messages()]
    assert sorted(keys) == sorted(f"receipt:council_referrals:2026Q3:file={i}" for i in range(30))


# --- the fallback route: when SendGrid itself fails, the officer and the engineers hear of it by SMTP ---------


@pytest.fixture
def smtp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpSink]:
    """A real SMTP server on loopback, reached through the Airflow connection the fallback route names."""
    with SmtpSink(out_dir=tmp_path / "smtp") as server:
        monkeypatch.setenv("AIRFLOW_CONN_PARTNERFLOW_SMTP", json.dumps(server.connection()))
        yield server


@pytest.fixture
def with_fallback(settings: SenderSettings, partnership: Partnership) -> SenderSettings:
    return replace(settings, partnership=partnership)


def bad_address(partnership: Partnership, file_id: int) -> Message:
    """A message SendGrid refuses with 400 (the client cannot make an address of it)."""
    return replace(receipt(partnership, file_id=file_id), recipients=(f"no[pe]{file_id}@example.org",))


def test_a_dead_letter_reaches_the_officer_by_smtp_once_per_cool_down(
    engine: Engine, sink: SendgridSink, smtp: SmtpSink, with_fallback: SenderSettings, partnership: Partnership
) -> None:
    first = bad_address(partnership, 1)
    put(engine, first)
    t0 = dt.datetime.now(dt.UTC)

    assert send_pending(engine, settings=with_fallback, now=t0) == SendSummary(dead=1)

    (report,) = smtp.messages()
    assert report.rcpt_tos == (partnership.officer.email, *(p.email for p in partnership.engineers))
    assert report.message["To"] == partnership.officer.email
    assert report.message["Subject"] == "Blanktown SCP: emails not delivered – 1 message held or failed"
    assert report.message["X-Partnerflow-Key"].startswith("delivery-problem:sendgrid:incident=")
    html = report.message.get_body(("html",)).get_content()
    reason = row(engine, first.key)["last_error"]
    assert first.subject in html and "no[pe]1@example.org" in html
    assert "not delivered" in html and escape(reason) in html

    # Another dead letter within the cool-down: recorded, not mailed again.
    put(engine, bad_address(partnership, 2))
    assert send_pending(engine, settings=with_fallback, now=t0 + dt.timedelta(hours=1)) == SendSummary(dead=1)
    assert len(smtp.messages()) == 1

    # After the cool-down, the next one is mailed, with the earlier one nobody was told of yet.
    put(engine, bad_address(partnership, 3))
    assert send_pending(engine, settings=with_fallback, now=t0 + dt.timedelta(hours=7)) == SendSummary(dead=1)
    second = smtp.messages()[1].message
    listed = second.get_body(("html",)).get_content()
    assert second["Subject"] == "Blanktown SCP: emails not delivered – 2 messages held or failed"
    assert "no[pe]2" in listed and "no[pe]3" in listed and "no[pe]1" not in listed

    # SendGrid delivers again: the incident is resolved and a recovery message goes, through SendGrid.
    put(engine, receipt(partnership, file_id=4))
    assert send_pending(engine, settings=with_fallback, now=t0 + dt.timedelta(hours=8)).sent == 1
    assert send_pending(engine, settings=with_fallback, now=t0 + dt.timedelta(hours=8)).sent == 1
    recovery = sink.messages()[-1]
    assert recovery["subject"] == "Blanktown SCP: Email delivery through SendGrid working again"
    assert recovery["custom_args"]["partnerflow_kind"] == "incident-recovery"
    assert len(smtp.messages()) == 2


def test_messages_retried_again_and_again_are_reported_while_they_wait(
    engine: Engine, sink: SendgridSink, smtp: SmtpSink, settings: SenderSettings, partnership: Partnership
) -> None:
    fallback = partnership.notifications.fallback.model_copy(update={"after_attempts": 2})
    impatient = partnership.model_copy(
        update={"notifications": partnership.notifications.model_copy(update={"fallback": fallback})}
    )
    message = receipt(partnership)
    put(engine, message)
    sink.faults.add(MailFault.SERVER_ERROR, times=2)
    now = dt.datetime.now(dt.UTC)
    settings = replace(settings, partnership=impatient, max_attempts=6)

    assert send_pending(engine, settings=settings, now=now) == SendSummary(retried=1)
    assert smtp.messages() == []
    now = row(engine, message.key)["next_attempt_at"]
    assert send_pending(engine, settings=settings, now=now) == SendSummary(retried=1)

    (report,) = smtp.messages()
    html = report.message.get_body(("html",)).get_content()
    assert message.subject in html and "will retry (tried 2 times)" in html and "SendGrid 500" in html
    assert row(engine, message.key)["state"] == "pending"  # it still goes once SendGrid recovers
    assert send_pending(engine, settings=settings, now=row(engine, message.key)["next_attempt_at"]).sent == 1


def test_a_refused_api_key_is_reported_by_smtp_and_still_fails_loudly(
    engine: Engine, sink: SendgridSink, smtp: SmtpSink, with_fallback: SenderSettings, partnership: Partnership
) -> None:
    message = receipt(partnership)
    put(engine, message)

    with pytest.raises(SendgridCredentialsRejected):
        send_pending(engine, settings=replace(with_fallback, api_key="SG.wrong.key"))

    (report,) = smtp.messages()
    assert report.message["Subject"] == "Blanktown SCP: emails not delivered – SendGrid refused the API key"
    html = report.message.get_body(("html",)).get_content()
    assert "PARTNERFLOW_SENDGRID_API_KEY" in html and message.subject in html
    assert row(engine, message.key)["state"] == "pending"


def test_when_smtp_fails_too_the_next_drain_tries_again(
    engine: Engine, sink: SendgridSink, smtp: SmtpSink, with_fallback: SenderSettings, partnership: Partnership
) -> None:
    put(engine, bad_address(partnership, 1))
    smtp.refuse_next()

    assert send_pending(engine, settings=with_fallback) == SendSummary(dead=1)  # the drain itself carries on
    assert smtp.messages() == []

    assert send_pending(engine, settings=with_fallback) == SendSummary()
    (report,) = smtp.messages()
    assert "no[pe]1" in report.message.get_body(("html",)).get_content()


def test_the_fallback_route_keeps_to_the_allow_list_outside_production(
    engine: Engine, sink: SendgridSink, smtp: SmtpSink, with_fallback: SenderSettings, partnership: Partnership
) -> None:
    real_officer = partnership.model_copy(
        update={"officer": partnership.officer.model_copy(update={"email": "someone@nhs.net"})}
    )
    put(engine, bad_address(partnership, 1))

    send_pending(engine, settings=replace(with_fallback, partnership=real_officer))

    (report,) = smtp.messages()
    assert report.rcpt_tos == tuple(p.email for p in partnership.engineers)
