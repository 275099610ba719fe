"""The emails as people receive them: subjects, both parts, recipients, and never a row value."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re

import pytest

from partnerflow.core.config import Partnership, load_config
from partnerflow.core.periods import Period, due_date
from partnerflow.notify import messages
from partnerflow.notify.outbox import Attachment, Message, message_key

CANARY = "CANARY-7731"
PERIOD = Period.from_id("2026Q3")


@pytest.fixture(scope="module")
def partnership() -> Partnership:
    return load_config()


def failing_report() -> dict:
    """A rejection report with a canary in every field an email must not show."""
    return {
        "passed": False,
        "rules_checked": 14,
        "rows_checked": 400,
        "observed_value": CANARY,
        "failures": [
            {
                "code": "referral_date_in_period",
                "message": "Referral date must fall within the quarter",
                "columns": ["referral_date"],
                "severity": "error",
                "failing_rows": 45,
                "row_numbers": list(range(2, 47)),
                "observed_value": CANARY,
                "partial_unexpected_list": [CANARY, "2019-01-01"],
                "unexpected_values": {CANARY: 3},
                "details": {"sample": CANARY},
            },
            {
                "code": "nfa_is_y_or_n",
                "message": "NFA flag must be Y or N",
                "columns": ["nfa"],
                "severity": "error",
                "failing_rows": 2,
                "row_numbers": [7, CANARY, "9", True, 311],
                "value": CANARY,
            },
            {
                "code": "postcode_sector_shape",
                "message": "Postcode sector has an unexpected shape",
                "columns": ["postcode"],
                "severity": "warning",
                "failing_rows": 1,
                "row_numbers": [12],
                "unexpected": CANARY,
            },
        ],
    }


def all_text(message: Message) -> str:
    parts = [message.subject, message.text, message.html, *message.recipients, *message.cc]
    parts += [a.filename + a.content.decode("utf-8", "replace") for a in message.attachments]
    return "\n".join(parts)


def assert_well_formed(message: Message) -> None:
    assert message.subject.startswith("Blanktown SCP: ")
    assert "\n" not in message.subject and len(message.subject) < 120
    assert message.text.strip() and "<" not in message.text.replace("<http", "")
    assert '<html lang="en-GB">' in message.html
    assert '<meta name="viewport"' in message.html
    assert message.html.count("<h1>") == 1
    assert "<img" not in message.html
    assert message.key in message.text and message.key in message.html


def test_receipt(partnership: Partnership) -> None:
    feed = partnership.feed("council_referrals")
    message = messages.receipt(
        partnership,
        feed,
        PERIOD,
        file_id=12,
        source_name="referrals_2026Q3.csv",
        rows=400,
        warnings=[failing_report()["failures"][2]],
    )

    assert_well_formed(message)
    assert message.key == "receipt:council_referrals:2026Q3:file=12"
    assert message.kind == "receipt" and message.feed_id == "council_referrals" and message.period_id == "2026Q3"
    assert message.subject == "Blanktown SCP: Council referrals and assessments for Q2 2026/27 received – 400 rows"
    assert message.recipients == ("csc.performance@council.blanktown.example.org",)
    assert message.cc == ()
    for part in (message.text, message.html):
        assert "referrals_2026Q3.csv" in part
        assert "Postcode sector has an unexpected shape" in part
    assert CANARY not in all_text(message)


def test_receipt_says_one_row(partnership: Partnership) -> None:
    message = messages.receipt(
        partnership, partnership.feed("police_ppn"), PERIOD, file_id=3, source_name="ppn", rows=1, warnings=()
    )
    assert message.subject.endswith("received – 1 row")


def test_rejection_lists_rules_columns_counts_and_rows_but_no_values(partnership: Partnership) -> None:
    feed = partnership.feed("council_referrals")
    due = due_date(partnership, feed, PERIOD)

    message = messages.rejection(
        partnership, feed, PERIOD, file_id=13, source_name="referrals_2026Q3.csv", report=failing_report(), due=due
    )

    assert_well_formed(message)
    assert message.key == "rejection:council_referrals:2026Q3:file=13"
    assert message.subject == (
        "Blanktown SCP: Council referrals and assessments for Q2 2026/27 not accepted – 2 of 14 checks failed"
    )
    assert message.recipients == ("csc.performance@council.blanktown.example.org",)
    assert message.cc == ("performance.officer@blanktown.example.org",)
    assert CANARY not in all_text(message)
    for part in (message.text, message.html):
        assert "Referral date must fall within the quarter" in part
        assert "referral_date_in_period" in part and "referral_date" in part
        assert "45 of 400" in part
        assert "Wednesday 21 October 2026" in part
        assert "referrals_2026Q3.csv" in part and "/council/referrals" in part  # how to resubmit
        assert "and 25 more" in part  # 45 failing rows, 20 shown
        assert "7, 311" in part  # only real row numbers survive
    shown = re.search(r"Row numbers: ([\d, ]+)", message.text)
    assert shown is not None and shown.group(1).strip().split(", ") == [str(n) for n in range(2, 22)]


def test_rejection_csv_has_every_row_number_and_rule(partnership: Partnership) -> None:
    feed = partnership.feed("council_referrals")
    message = messages.rejection(
        partnership, feed, PERIOD, file_id=13, source_name="r.csv", report=failing_report(), due=dt.date(2026, 10, 21)
    )

    (attachment,) = message.attachments
    assert attachment.filename == "rejection-council_referrals-2026Q3.csv"
    assert attachment.mime_type == "text/csv"
    rows = list(csv.reader(io.StringIO(attachment.content.decode("utf-8"))))
    assert rows[0] == ["row_number", "rule_code"]
    pairs = {(int(n), code) for n, code in rows[1:]}
    expected = {(n, "referral_date_in_period") for n in range(2, 47)}
    expected |= {(7, "nfa_is_y_or_n"), (311, "nfa_is_y_or_n"), (12, "postcode_sector_shape")}
    assert pairs == expected
    assert [int(n) for n, _ in rows[1:]] == sorted(int(n) for n, _ in rows[1:])


def test_rejection_escapes_a_hostile_file_name(partnership: Partnership) -> None:
    message = messages.rejection(
        partnership,
        partnership.feed("council_referrals"),
        PERIOD,
        file_id=1,
        source_name="<script>alert(1)</script>.csv",
        report={"passed": False, "rules_checked": 1, "rows_checked": 0, "failures": [{"code": "x", "columns": []}]},
        due=dt.date(2026, 10, 21),
    )
    assert "<script>" not in message.html
    assert "&lt;script&gt;" in message.html
    assert "applies to the file as a whole" in message.text


def test_reminders_and_escalation(partnership: Partnership) -> None:
    feed = partnership.feed("police_ppn")
    due = due_date(partnership, feed, PERIOD)
    assert due == dt.date(2026, 10, 21)
    police = partnership.partner("police")

    advance = messages.advance_reminder(partnership, feed, PERIOD, due=due)
    on_the_day = messages.due_reminder(partnership, feed, PERIOD, due=due)
    overdue = messages.overdue_reminder(partnership, feed, PERIOD, due=due)
    escalation = messages.escalation(partnership, feed, PERIOD, due=due)

    for message in (advance, on_the_day, overdue, escalation):
        assert_well_formed(message)
        assert "Q2 2026/27" in message.subject
        assert "Police PPNs" in message.subject
    assert advance.key == "reminder-advance:police_ppn:2026Q3"
    assert on_the_day.key == "reminder-due:police_ppn:2026Q3"
    assert overdue.key == "reminder-overdue:police_ppn:2026Q3"
    assert escalation.key == "escalation:police_ppn:2026Q3"
    assert advance.subject.endswith("due Wed 21 Oct")
    assert "in 5 working days" in advance.text
    assert on_the_day.subject.endswith("is due today")
    assert overdue.subject.endswith("is overdue – 3 working days late")
    assert escalation.subject.endswith("is 5 working days late")
    assert "/v1/returns/ppn/2026Q3" in advance.text  # how to send, for an API feed
    for reminder in (advance, on_the_day):
        assert reminder.recipients == (police.contact.email,) and reminder.cc == ()
    assert overdue.recipients == (police.contact.email,)
    assert overdue.cc == (partnership.officer.email,)
    assert escalation.recipients == (police.senior_lead.email,)
    assert escalation.cc == (partnership.officer.email,)


def test_reminders_sent_late_say_how_late(partnership: Partnership) -> None:
    feed = partnership.feed("council_referrals")
    due = dt.date(2026, 10, 21)
    overdue = messages.overdue_reminder(partnership, feed, PERIOD, due=due, as_of=dt.date(2026, 11, 2))
    assert overdue.subject.endswith("8 working days late")
    advance = messages.advance_reminder(partnership, feed, PERIOD, due=due, as_of=dt.date(2026, 10, 19))
    assert "in 2 working days" in advance.text


def test_board_pack(partnership: Partnership) -> None:
    pdf = Attachment(filename="board-pack-2026Q3.pdf", content=b"%PDF-1.7 test", mime_type="application/pdf")
    summary = (
        "<h2>Headlines</h2><p>Re-referrals <strong>rose</strong> to 24%.</p>"
        "<table><tr><th>Measure</th><th>Value</th></tr><tr><td>Re-referrals</td><td>24%</td></tr></table>"
    )

    message = messages.board_pack(partnership, PERIOD, html_summary=summary, attachments=[pdf])

    assert_well_formed(message)
    assert message.key == "board-pack:2026Q3"
    assert message.subject == "Blanktown SCP: Board performance pack for Q2 2026/27"
    assert message.recipients == tuple(p.email for p in partnership.board.recipients)
    assert message.attachments == (pdf,)
    assert "<strong>rose</strong>" in message.html
    assert "Re-referrals rose to 24%." in message.text
    assert "Re-referrals | 24%" in message.text
    assert "board-pack-2026Q3.pdf" in message.text


def test_failure_alert(partnership: Partnership) -> None:
    url = "http://localhost:8080/dags/ingest_police_ppn/runs/manual__2026-10-21T09:00:00"

    message = messages.failure_alert(
        partnership, dag_id="ingest_police_ppn", task_id="publish", period_id="2026Q3", run_url=url
    )
    again = messages.failure_alert(
        partnership, dag_id="ingest_police_ppn", task_id="publish", period_id="2026Q3", run_url=url
    )
    other_run = messages.failure_alert(
        partnership, dag_id="ingest_police_ppn", task_id="publish", period_id="2026Q3", run_url=url + "x"
    )

    assert_well_formed(message)
    assert message.subject == "Blanktown SCP: ingest_police_ppn failed at publish for Q2 2026/27"
    assert message.recipients == tuple(p.email for p in partnership.engineers)
    assert message.cc == (partnership.officer.email,)
    assert url in message.text and f'href="{url}"' in message.html
    assert message.key == again.key != other_run.key
    assert message.key.startswith("failure:ingest_police_ppn:publish:2026Q3:run=")


def test_message_key() -> None:
    assert message_key("receipt", "council_referrals", "2026Q3", file=12) == "receipt:council_referrals:2026Q3:file=12"
    assert message_key("reminder-due", "police_ppn", "2026Q3") == "reminder-due:police_ppn:2026Q3"
    with pytest.raises(ValueError):
        message_key("receipt", "a:b")
    with pytest.raises(ValueError):
        message_key("receipt", "")


def test_html_to_text() -> None:
    html = "<style>p {color: red}</style><h2>Title</h2><p>One <em>two</em>\n three</p><ul><li>a</li><li>b</li></ul>"
    assert messages.html_to_text(html) == "Title\n\nOne two three\n\n- a\n- b"


# --- incident alerts, as the officer (copied) reads them -----------------------------------------------

OPENED = dt.datetime(2026, 10, 21, 9, 0, tzinfo=dt.UTC)
RETRYING = messages.Retrying(
    tries=4,
    first_wait=dt.timedelta(seconds=30),
    longest_wait=dt.timedelta(minutes=30),
    runs="every morning at 07:00",
    next_run=dt.datetime(2026, 10, 22, 6, 0, tzinfo=dt.UTC),
)


def incident(partnership: Partnership, name: str, task: str, **extra) -> Message:
    values = {"error": "OperationalError", "retrying": RETRYING, **extra}
    return messages.incident_alert(
        partnership,
        name=name,
        period_id="2026Q3",
        incident_id=1,
        alert_number=1,
        failing=[task],
        detail="",
        opened_at=OPENED,
        failures=1,
        run_url=f"https://airflow.example.org/dags/{name}/runs/r1",
        cooldown_hours=6,
        as_of=OPENED.date(),
        **values,
    )


def test_an_ingest_alert_names_the_partner_the_return_its_due_date_and_the_pack_at_risk(
    partnership: Partnership,
) -> None:
    message = incident(partnership, "ingest_council_referrals", "fetch", error="TransportError")
    assert message.subject == (
        "Blanktown SCP: Council referrals and assessments from Blanktown Council Children's Services"
        " — we can't collect the Q2 2026/27 return"
    )
    for part in (message.text, message.html):
        officer_reads = part.split("For the data team" if part is message.html else "FOR THE DATA TEAM")[0]
        assert "Q2 2026/27 (Jul–Sep 2026)" in officer_reads
        assert "Wednesday 21 October 2026" in officer_reads  # due (core.periods), written by core.wording
        assert "Board pack at risk" in officer_reads and "Thursday 3 December 2026" in officer_reads
        assert "Retrying until it works: it runs every morning at 07:00 (next at Thu 22 Oct 07:00)" in officer_reads
        assert "TransportError" not in officer_reads and "ingest_council_referrals" not in officer_reads
    assert "Error: TransportError (the message is in the task log)" in message.text.split("FOR THE DATA TEAM")[1]


def test_the_deadlines_board_pack_and_digest_alerts_say_what_did_not_happen(partnership: Partnership) -> None:
    deadlines = incident(partnership, "deadlines", "run_ladder")
    assert deadlines.subject == "Blanktown SCP: Reminders to partners not sent"
    assert "Youth justice KPIs from Blanktown Youth Justice Service, Q2 2026/27 (Jul–Sep 2026): due" in deadlines.text
    assert "Board pack: not directly at risk" in deadlines.text
    built = incident(partnership, "board_pack", "build")
    sent = incident(partnership, "board_pack", "distribute")
    assert built.subject == "Blanktown SCP: Board pack for Q2 2026/27 not built"
    assert sent.subject == "Blanktown SCP: Board pack for Q2 2026/27 not sent"
    assert "Board pack at risk: the pack for the Board meeting on Thursday 10 December 2026" in built.text
    digest = incident(partnership, "weekly_digest", "build_digest")
    assert digest.subject == "Blanktown SCP: The weekly digest was not sent"
    assert "Board pack: not affected." in digest.text
    for message in (deadlines, built, sent, digest):
        assert not any(dag in message.subject for dag in ("deadlines", "board_pack", "weekly_digest"))


def test_a_terminal_alert_is_not_retrying_and_names_who_must_act(partnership: Partnership) -> None:
    cause = "police_ppn: partner API forbids us this return (HTTP 403)"
    message = incident(
        partnership, "ingest_police_ppn", "fetch", error="PartnerRefused", must_act=cause, partner_must_act=True
    )
    assert message.subject.endswith("we can't collect the Q2 2026/27 return: someone must act")
    assert message.text.split("\n\n")[2] == f"Someone must act: {cause}"
    assert "Not retrying: someone must act." in message.text and "Retrying until" not in message.text
    assert "Blanktown Police must act: please ask Public protection analyst (ppu.analyst@police" in message.text
    data_team = incident(partnership, "ingest_police_ppn", "fetch", must_act="a setting", error="ConfigError")
    assert "WHO MUST ACT\nThe data team (data.team@blanktown.example.org)" in data_team.text
    assert "ppu.analyst" not in data_team.text


def test_an_incident_footer_never_tells_the_officer_to_contact_herself(partnership: Partnership) -> None:
    alert = incident(partnership, "deadlines", "run_ladder")
    recovery = messages.incident_recovery(
        partnership,
        name="ingest_police_ppn",
        period_id="2026Q3",
        incident_id=1,
        opened_at=OPENED,
        resolved_at=OPENED,
        failures=2,
    )
    assert partnership.officer.email in alert.cc
    for message in (alert, recovery):
        footer = message.text.split("\n--\n")[1]
        assert partnership.officer.email not in footer and "Contact Data team (data.team@" in footer
        assert partnership.officer.email not in message.html.split("<footer>")[1]
    alone = partnership.model_copy(update={"engineers": (partnership.officer,)})
    footer = incident(alone, "deadlines", "run_ladder").text.split("\n--\n")[1]
    assert footer.startswith("Sent by partnerflow for Blanktown SCP.\n") and "Contact" not in footer
    assert recovery.subject == (
        "Blanktown SCP: Police PPNs and DA incidents with a child present from Blanktown Police"
        " — we can collect the Q2 2026/27 return again"
    )
    assert "Nobody needs to do anything." in recovery.text


def test_a_period_id_in_a_file_name_is_explained_beside_it(partnership: Partnership) -> None:
    """File names count calendar quarters (2026Q3) and the text financial-year quarters (Q2 2026/27): wherever a
    partner reads the id, they read what it means, so nobody sends "Q3" for Q2."""
    council = partnership.feed("council_referrals")
    due = due_date(partnership, council, PERIOD)
    receipt = messages.receipt(
        partnership, council, PERIOD, file_id=12, source_name="referrals_2026Q3.csv", rows=400, warnings=()
    )
    rejection = messages.rejection(
        partnership, council, PERIOD, file_id=13, source_name="referrals_2026Q3.csv", report=failing_report(), due=due
    )
    reminder = messages.advance_reminder(partnership, council, PERIOD, due=due)
    api = messages.advance_reminder(partnership, partnership.feed("police_ppn"), PERIOD, due=due)
    for message in (receipt, rejection, reminder, api):
        text = " ".join(message.text.split())
        assert "Q2 2026/27 (Jul–Sep 2026)" in text
        assert "2026Q3 means Jul–Sep 2026" in text
        ids = re.findall(r"[0-9]{4}Q[1-4]", text)
        assert text.count("2026Q3 means Jul–Sep 2026") >= 1 and set(ids) == {"2026Q3"}
    assert "referrals_2026Q3.csv — 2026Q3 means Jul–Sep 2026" in " ".join(receipt.text.split())
    assert "referrals_2026Q3.csv (2026Q3 means Jul–Sep 2026)" in " ".join(reminder.text.split())
