"""Every email template, rendered: both parts, a short specific subject, accessible markup, the partnership's
name and the period, what to do and by when, and nothing that is not in the whitelist of what an email shows."""

from __future__ import annotations

import datetime as dt
import re
from html.parser import HTMLParser
from types import SimpleNamespace

import pytest

from partnerflow.core.config import Partnership, load_config
from partnerflow.core.periods import Period
from partnerflow.notify import messages
from partnerflow.notify.outbox import Attachment, Message

PERIOD = Period.from_id("2026Q3")
DUE = dt.date(2026, 10, 21)
AT = dt.datetime(2026, 10, 21, 8, 5, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def partnership() -> Partnership:
    return load_config()


def every_message(partnership: Partnership) -> dict[str, Message]:
    """One of each email partnerflow sends."""
    feed = partnership.feed("council_referrals")
    report = {
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
    cell = SimpleNamespace(
        period=PERIOD,
        status_text="Overdue by 3 working days",
        published_on=None,
        ret=SimpleNamespace(ignored=[]),
        versions_rejected=0,
        chased=[SimpleNamespace(what="advance reminder", to="data contact", on=dt.date(2026, 10, 14), delivery="sent")],
    )
    row = SimpleNamespace(feed=feed, partner="Blanktown Council", current=cell, previous=cell, cells=(cell, cell))
    problem = SimpleNamespace(
        subject="A receipt",
        recipients=("a@example.org",),
        state_text="not delivered",
        attempts=1,
        reason="SendGrid 400: Bad Request",
    )
    return {
        "receipt": messages.receipt(partnership, feed, PERIOD, file_id=1, source_name="referrals_2026Q3.csv", rows=4),
        "rejection": messages.rejection(
            partnership, feed, PERIOD, file_id=2, source_name="referrals_2026Q3.csv", report=report, due=DUE
        ),
        "near_miss": messages.near_miss(
            partnership,
            feed,
            PERIOD,
            source_name="referrals_2026Q3.CSV",
            reason="the name is in a different case from the one agreed (for example an upper-case extension)",
            expected_name="referrals_2026Q3.csv",
            name_digest="0123456789abcdef",
        ),
        "reminder_advance": messages.advance_reminder(partnership, feed, PERIOD, due=DUE),
        "reminder_due": messages.due_reminder(partnership, feed, PERIOD, due=DUE),
        "reminder_overdue": messages.overdue_reminder(partnership, feed, PERIOD, due=DUE),
        "escalation": messages.escalation(partnership, feed, PERIOD, due=DUE, reminded_on=[dt.date(2026, 10, 14)]),
        "still_failing": messages.still_failing(
            partnership,
            feed,
            PERIOD,
            due=DUE,
            as_of=dt.date(2026, 10, 19),
            source_name="referrals_2026Q3.csv",
            received_on=dt.date(2026, 10, 16),
            versions_rejected=1,
            checks_failed=2,
        ),
        "board_pack": messages.board_pack(
            partnership,
            PERIOD,
            html_summary="<h2>Headlines</h2><p>All in.</p>",
            attachments=[Attachment(filename="pack.pdf", content=b"%PDF", mime_type="application/pdf")],
        ),
        "failure_alert": messages.failure_alert(
            partnership, dag_id="deadlines", task_id="run_ladder", period_id="2026Q3", run_url="/dags/deadlines"
        ),
        "weekly_digest": messages.weekly_digest(
            partnership,
            week_of=dt.date(2026, 10, 26),
            as_of=dt.date(2026, 10, 26),
            rows=[row],
            attention=[(row, cell)],
            coming_up=[SimpleNamespace(on=dt.date(2026, 10, 28), what="escalation")],
            returns_in=0,
            returns_expected=1,
        ),
        "incident": messages.incident_alert(
            partnership,
            name="ingest_council_referrals",
            period_id="2026Q3",
            incident_id=1,
            alert_number=1,
            failing=["fetch"],
            detail="The task fetch failed after all its retries (TransportError).",
            opened_at=AT,
            failures=1,
            run_url="/dags/ingest_council_referrals/runs/x",
            error="TransportError",
            cooldown_hours=6,
        ),
        "incident_recovery": messages.incident_recovery(
            partnership,
            name="ingest_council_referrals",
            period_id="2026Q3",
            incident_id=1,
            opened_at=AT,
            resolved_at=AT,
            failures=2,
        ),
        "delivery_problem": messages.delivery_problem(
            partnership, incident_id=1, alert_number=1, problems=[problem], credentials_rejected=False
        ),
    }


class _Markup(HTMLParser):
    """Collects what the accessibility checks need: the tags, th scopes, link texts and the title."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.th_scopes: list[str | None] = []
        self.link_texts: list[str] = []
        self._in_link = False
        self._in_title = False
        self.title = ""

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "th":
            self.th_scopes.append(dict(attrs).get("scope"))
        self._in_link = tag == "a" or self._in_link
        self._in_title = tag == "title"
        if tag == "a":
            self.link_texts.append("")

    def handle_endtag(self, tag):
        if tag == "a":
            self._in_link = False
        if tag == "title":
            self._in_title = False

    def handle_data(self, data):
        if self._in_link:
            self.link_texts[-1] += data
        if self._in_title:
            self.title += data


def test_every_template_is_rendered_by_a_builder(partnership: Partnership) -> None:
    names = {path.stem for path in messages.TEMPLATES_DIR.glob("*.html") if not path.stem.startswith(("_", "base"))}
    # The partner leads' pre-brief is built and tested with the Board pack (tests of partnerflow.report).
    assert names - set(every_message(partnership)) <= {name for name in names if "brief" in name}
    assert set(every_message(partnership)) <= names
    for name in names:
        assert (messages.TEMPLATES_DIR / f"{name}.txt").exists(), name


@pytest.mark.parametrize("name", sorted(every_message(load_config())))
def test_each_email_is_well_formed_and_accessible(partnership: Partnership, name: str) -> None:
    message = every_message(partnership)[name]

    assert message.subject.startswith(f"{partnership.short_name}: ")
    # an incident names the partner and the return in full, as the configuration does
    limit = 160 if name.startswith("incident") else 110
    assert "\n" not in message.subject and len(message.subject) <= limit, message.subject
    assert partnership.name in message.text and partnership.name in message.html
    assert message.key in message.text and message.key in message.html
    assert not re.search(r"<[a-z/][^>]*>", message.text), "the plain-text part has HTML in it"
    assert "{{" not in message.text + message.html and "{%" not in message.text + message.html

    markup = _Markup()
    markup.feed(message.html)
    assert '<html lang="en-GB">' in message.html and '<meta name="viewport"' in message.html
    assert markup.title == message.subject
    assert markup.tags.count("h1") == 1 and "main" in markup.tags
    assert "img" not in markup.tags
    assert all(scope in ("col", "row") for scope in markup.th_scopes), markup.th_scopes
    if "table" in markup.tags and name != "board_pack":
        assert "caption" in markup.tags
    assert all(text.strip() and text.strip().lower() not in ("here", "click here") for text in markup.link_texts)


@pytest.mark.parametrize(
    "name", ["reminder_advance", "reminder_due", "reminder_overdue", "escalation", "still_failing", "rejection"]
)
def test_partner_emails_name_the_period_and_say_what_to_do_by_when(partnership: Partnership, name: str) -> None:
    message = every_message(partnership)[name]
    assert "Q2 2026/27" in message.subject
    for part in (message.text, message.html):
        assert PERIOD.label in part
        assert "21 October 2026" in part  # by when
    if name != "escalation":
        assert "/council/referrals" in message.text  # how to send it
    else:
        assert "WHAT WE ASK" in message.text


def test_periods_of_every_kind_read_well_in_subjects(partnership: Partnership) -> None:
    feed = partnership.feed("police_ppn")
    for period_id, words in (("2026M10", "October 2026"), ("2026T3", "Autumn term 2026"), ("2026Q4", "Q3 2026/27")):
        message = messages.advance_reminder(partnership, feed, Period.from_id(period_id), due=DUE)
        assert f"for {words} due Wed 21 Oct" in message.subject
        assert Period.from_id(period_id).label in message.text


@pytest.mark.parametrize("name", ["incident", "incident_recovery"])
def test_incident_emails_name_the_partner_and_return_not_the_dag(partnership: Partnership, name: str) -> None:
    message = every_message(partnership)[name]
    assert "Council referrals and assessments from Blanktown Council Children's Services" in message.subject
    assert "Q2 2026/27" in message.subject and "ingest_" not in message.subject
    assert "ingest_council_referrals" in message.text.split("FOR THE DATA TEAM")[1]
    assert "ingest_council_referrals" not in message.text.split("FOR THE DATA TEAM")[0]
    if name == "incident":
        assert "Due: Wednesday 21 October 2026" in message.text and "Board pack at risk" in message.text
        assert "<h2>For the data team</h2>" in message.html
