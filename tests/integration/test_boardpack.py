"""KPI marts and the Board pack against a real PostgreSQL: values, RAG, named gaps, drafts, approval, and
one Board email per period and version, with a clearly marked revision when data changes after sending.

The partnership here is the demo's, cut down to its council referrals and police feeds (and the measures
built on them), with hand-made returns whose figures are worked out below.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
import yaml
from sqlalchemy.engine import Connection, Engine

from partnerflow.core import clock
from partnerflow.core.config import Partnership, config_path
from partnerflow.core.periods import Period, add_working_days, due_date
from partnerflow.report import approval, distribution
from partnerflow.report.boardpack import build_board_pack, spreadsheet_safe
from partnerflow.report.kpis import kpi_table
from partnerflow.report.prebrief import send_prebriefs
from partnerflow.warehouse import partitions

Q2, Q3 = Period.from_id("2026Q2"), Period.from_id("2026Q3")
POLICE = "Blanktown Police"
COUNCIL = "Blanktown Council Children's Services"


@pytest.fixture
def engine(warehouse_url: str) -> Iterator[Engine]:
    """The test's own migrated warehouse (tests/conftest.py)."""
    eng = sa.create_engine(warehouse_url)
    yield eng
    eng.dispose()


FEEDS = ("council_referrals", "police_ppn")


def two_feed_partnership(**board_pack: object) -> Partnership:
    """The demo partnership with only the council referrals and police feeds, and the measures on them."""
    raw = yaml.safe_load(config_path().read_text(encoding="utf-8"))
    raw["feeds"] = [f for f in raw["feeds"] if f["id"] in FEEDS]
    raw["kpis"] = [k for k in raw["kpis"] if k.get("ledger") or set(k.get("source_feeds", ())) <= set(FEEDS)]
    raw["board"]["pack"] = {**raw["board"].get("pack", {}), "auto_approve": False, **board_pack}
    return Partnership.model_validate(raw)


@pytest.fixture
def partnership() -> Partnership:
    return two_feed_partnership()


def _file(conn: Connection, feed_id: str, period: str, *, state: str = "published") -> tuple[int, str]:
    sha = hashlib.sha256(f"{feed_id}/{period}/{state}/{uuid.uuid4()}".encode()).hexdigest()
    file_id = conn.execute(
        sa.text(
            "INSERT INTO ops.received_files (feed_id, period_id, source_name, sha256, landed_path, state) "
            "VALUES (:f, :p, :n, :sha, :path, :state) RETURNING id"
        ),
        {"f": feed_id, "p": period, "n": f"{feed_id}_{period}", "sha": sha, "path": sha, "state": state},
    ).scalar_one()
    return file_id, sha


def _submission(
    conn: Connection,
    partnership: Partnership,
    feed_id: str,
    period: Period,
    *,
    state: str,
    received: dt.date,
    file_id: int | None,
) -> None:
    received_at = dt.datetime.combine(received, dt.time(10), tzinfo=dt.UTC)
    conn.execute(
        sa.text(
            "INSERT INTO ops.submissions (feed_id, period_id, due_date, state, first_received_at, published_at, "
            "published_file_id) VALUES (:f, :p, :due, :state, :received, :published, :file)"
        ),
        {
            "f": feed_id,
            "p": period.id,
            "due": due_date(partnership, partnership.feed(feed_id), period),
            "state": state,
            "received": received_at,
            "published": received_at if state == "published" else None,
            "file": file_id if state == "published" else None,
        },
    )
    if file_id is not None:
        conn.execute(
            sa.text("UPDATE ops.received_files SET received_at = :at WHERE id = :id"),
            {"at": received_at, "id": file_id},
        )


def _referrals(conn: Connection, feed_period: str, rows: list[dict]) -> int:
    file_id, sha = _file(conn, "council_referrals", feed_period)
    partitions.create(conn, "core.referrals", file_id)
    for number, row in enumerate(rows, start=1):
        conn.execute(
            sa.text(
                "INSERT INTO core.referrals (feed_id, period_id, file_id, file_sha256, row_number, referral_id, "
                "child_id, referral_date, referral_source, nfa, assessment_start_date, "
                "assessment_authorised_date) VALUES ('council_referrals', :period, :file, :sha, :n, :referral_id, "
                ":child_id, :referral_date, '6', :nfa, :start, :authorised)"
            ),
            {"period": feed_period, "file": file_id, "sha": sha, "n": number, "start": None, "authorised": None} | row,
        )
    return file_id


def police_return(conn: Connection, period: str, values: dict[tuple[str, str], int]) -> int:
    file_id, sha = _file(conn, "police_ppn", period)
    partitions.create(conn, "core.police_ppn", file_id)
    for number, ((measure, grade), value) in enumerate(values.items(), start=1):
        conn.execute(
            sa.text(
                "INSERT INTO core.police_ppn (feed_id, period_id, file_id, file_sha256, row_number, measure_code, "
                "grade, value) VALUES ('police_ppn', :p, :file, :sha, :n, :m, :g, :v)"
            ),
            {"p": period, "file": file_id, "sha": sha, "n": number, "m": measure, "g": grade, "v": value},
        )
    return file_id


def load_two_quarters(engine: Engine, partnership: Partnership) -> None:
    """Council returns for 2026Q2 (on time) and 2026Q3 (2 working days late); police 2026Q2 only, its Q3
    return rejected. 2026Q3 works out at: re-referrals 12/40 = 30% (red), assessments 24/30 within 45
    working days = 80% (amber), NFA 6/40 = 15% (green)."""
    q2_day, q3_day = dt.date(2026, 4, 1), dt.date(2026, 7, 1)
    q2 = [
        {
            "referral_id": f"q2r{i:02d}",
            "child_id": f"q2c{i:02d}",
            "referral_date": q2_day + dt.timedelta(days=3 * i),
            "nfa": "Y" if i < 2 else "N",
        }
        for i in range(20)
    ]
    q3 = []
    for i in range(40):
        start = q3_day + dt.timedelta(days=i)
        row = {
            "referral_id": f"q3r{i:02d}",
            "child_id": f"q2c{i:02d}" if i < 12 else ("old" if i == 12 else f"q3c{min(i, 38):02d}"),
            "referral_date": start if i != 39 else q3_day + dt.timedelta(days=38),
            "nfa": "Y" if 30 <= i < 36 else "N",
        }
        if i < 6:  # one working day too late
            row |= {"start": start, "authorised": add_working_days(start, 46)}
        elif i == 6:  # exactly 45 working days, only because the August bank holiday does not count
            row |= {"start": start, "authorised": dt.date(2026, 9, 9)}
        elif i < 29:
            row |= {"start": start, "authorised": start + dt.timedelta(days=14)}
        elif i == 36:  # authorised before it started: a data error, left out
            row |= {"start": dt.date(2026, 8, 10), "authorised": dt.date(2026, 8, 1)}
        q3.append(row)
    # A 2026Q2 referral whose assessment was authorised in 2026Q3, so the council sends it again.
    q3.append(q2[5] | {"start": dt.date(2026, 6, 20), "authorised": dt.date(2026, 7, 10)})
    q2_due, q3_due = (due_date(partnership, partnership.feed("council_referrals"), p) for p in (Q2, Q3))
    with engine.begin() as conn:
        _referrals(  # more than 12 months before the same child's 2026Q3 referral: not a re-referral
            conn,
            "2025Q2",
            [{"referral_id": "old1", "child_id": "old", "referral_date": dt.date(2025, 6, 30), "nfa": "N"}],
        )
        council_q2 = _referrals(conn, "2026Q2", q2)
        council_q3 = _referrals(conn, "2026Q3", q3)
        _submission(conn, partnership, "council_referrals", Q2, state="published", received=q2_due, file_id=council_q2)
        _submission(
            conn,
            partnership,
            "council_referrals",
            Q3,
            state="published",
            received=add_working_days(q3_due, 2),
            file_id=council_q3,
        )
        police_q2 = police_return(
            conn,
            "2026Q2",
            {
                ("PPN_CHILD", "H"): 14,
                ("PPN_CHILD", "M"): 20,
                ("DA_CHILD_PRESENT", "H"): 3,
                ("DA_CHILD_PRESENT", "M"): 9,
                ("DA_CHILD_PRESENT", "L"): 5,
            },
        )
        _submission(conn, partnership, "police_ppn", Q2, state="published", received=q2_due, file_id=police_q2)
        rejected, _ = _file(conn, "police_ppn", "2026Q3", state="rejected")
        _submission(conn, partnership, "police_ppn", Q3, state="rejected", received=q3_due, file_id=rejected)


def as_of(partnership: Partnership) -> dt.date:
    return add_working_days(due_date(partnership, partnership.feed("police_ppn"), Q3), 7)


def publish_police_q3(engine: Engine) -> None:
    """The police resubmit their 2026Q3 return and it is published."""
    with engine.begin() as conn:
        police_q3 = police_return(conn, "2026Q3", {("PPN_CHILD", "H"): 11, ("DA_CHILD_PRESENT", "A"): 8})
        conn.execute(
            sa.text(
                "UPDATE ops.submissions SET state = 'published', published_at = now(), published_file_id = :f "
                "WHERE feed_id = 'police_ppn' AND period_id = '2026Q3'"
            ),
            {"f": police_q3},
        )


def _rows(engine: Engine, sql: str, **params) -> list[sa.Row]:
    with engine.connect() as conn:
        return list(conn.execute(sa.text(sql), params))


def test_kpi_marts_count_each_referral_once_and_only_re_referrals_within_twelve_months(engine, partnership):
    load_two_quarters(engine, partnership)

    def figures(view: str) -> dict[str, tuple]:
        rows = _rows(engine, f"SELECT * FROM marts.{view} WHERE period_id LIKE '2026%'")
        return {r.period_id: tuple(r)[1:] for r in rows}

    assert figures("kpi_re_referrals_12m") == {"2026Q2": (0, 20), "2026Q3": (12, 40)}
    assert figures("kpi_referrals_nfa") == {"2026Q2": (2, 20), "2026Q3": (6, 40)}
    assert figures("kpi_da_child_present") == {"2026Q2": (17,)}
    grades = {(r.category, r.numerator) for r in _rows(engine, "SELECT * FROM marts.kpi_ppn_children")}
    assert grades == {("High", 14), ("Medium", 20)}
    sources = _rows(engine, "SELECT category, numerator FROM marts.kpi_referrals WHERE period_id = '2026Q3'")
    assert [(r.category, r.numerator) for r in sources] == [("Police", 40)]


def test_kpi_table_gives_values_rag_trend_and_names_missing_partner(engine, partnership):
    load_two_quarters(engine, partnership)
    rows = {row.id: row for row in kpi_table(engine, partnership, Q3, as_of=as_of(partnership))}
    assert list(rows) == [k.id for k in partnership.kpis]

    re_referrals = rows["re_referrals_12m"]
    assert (re_referrals.display, re_referrals.rag) == ("30.0%", "red")
    assert (re_referrals.numerator.text, re_referrals.denominator.text) == ("12", "40")
    assert (re_referrals.direction, re_referrals.improving) == ("up", False)
    assert [p.text for p in re_referrals.trend[-2:]] == ["0.0%", "30.0%"]
    assert len(re_referrals.trend) == 8
    assert re_referrals.responsible == ("council",)

    assessments = rows["assessments_45wd"]
    assert (assessments.display, assessments.rag) == ("80.0%", "amber")
    assert (assessments.numerator.text, assessments.denominator.text) == ("24", "30")

    nfa = rows["referrals_nfa"]
    assert (nfa.display, nfa.rag) == ("15.0%", "green")
    # 2 of 20 in 2026Q2 is a small number: suppressed, so no direction of travel can be read from it.
    assert nfa.trend[-2].cell.text == "c" and nfa.trend[-2].value is None
    assert nfa.direction == "none"

    for kpi_id in ("ppn_children", "da_child_present"):
        police = rows[kpi_id]
        assert police.value is None
        assert police.display == "Data missing"
        assert police.rag == "none"
        assert police.missing_from == (POLICE,)
        assert police.note == f"Data missing from {POLICE}."
    assert rows["ppn_children"].trend[-2].text == "34"
    assert rows["ppn_children"].breakdown.categories == ("High", "Medium", "Low")

    # The partnership's own measure: council 2 working days late, police rejected and overdue.
    on_time = rows["returns_on_time"]
    assert (on_time.display, on_time.rag, on_time.parts_text) == ("0.0%", "red", "0 of 2")
    assert set(on_time.responsible) == {"council", "police"}
    assert rows["returns_on_time"].trend[-2].text == "100.0%"


def test_a_breakdown_hides_small_counts_and_enough_others_that_none_can_be_worked_out(engine, partnership):
    load_two_quarters(engine, partnership)
    rows = {row.id: row for row in kpi_table(engine, partnership, Q3, as_of=as_of(partnership))}
    referrals = rows["referrals"]
    q3 = referrals.breakdown.periods.index(Q3)
    column = [referrals.breakdown.table.cells[i][q3].text for i in range(len(referrals.breakdown.categories))]
    # Every 2026Q3 referral came from the police: one category, nothing small.
    assert column[referrals.breakdown.categories.index("Police")] == "40"
    assert referrals.display == "40"
    q2 = referrals.breakdown.periods.index(Q2)
    assert referrals.breakdown.table.column_totals[q2].text == "20"


def test_board_pack_names_every_partner_with_missing_late_or_rejected_data(engine, partnership):
    load_two_quarters(engine, partnership)
    pack = build_board_pack(engine, partnership, Q3, as_of=as_of(partnership))
    html = pack.html
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert partnership.name in html and Q3.label in html
    assert f"Data missing from {POLICE}." in html
    assert "<script" not in html and "src=" not in html and "<link" not in html  # self-contained
    assert "<svg" in html
    attention = {s.partner_name: s for s in pack.content.attention}
    assert set(attention) == {POLICE, COUNCIL}
    assert (
        attention[POLICE].summary
        == "Rejected, waiting for a corrected return (due 21 Oct 2026, 7 working days late); 1 file rejected."
    )
    assert attention[COUNCIL].summary == "Published 23 Oct 2026, 2 working days late."
    for status in pack.content.attention:
        assert status.summary.replace("'", "&#39;") in html
    assert POLICE in pack.summary_html and "30.0%" in pack.summary_html
    assert "<html" not in pack.summary_html
    assert pack.pdf.startswith(b"%PDF-") and pack.pages >= 6
    # The same data is the same pack, whatever day it is read.
    later = build_board_pack(engine, partnership, Q3, as_of=add_working_days(as_of(partnership), 3))
    assert later.content.fingerprint == pack.content.fingerprint


def test_a_draft_goes_once_approved_on_its_day_and_never_twice(engine, partnership, var):
    load_two_quarters(engine, partnership)
    built = as_of(partnership)
    draft = distribution.prepare(engine, partnership, Q3, as_of=built)
    assert (draft.new, draft.record.version, draft.record.state) == (True, 1, "waiting")
    assert draft.record.distribute_on == add_working_days(built, partnership.board.pack.prebrief_working_days)
    assert (var / "boardpack" / "2026Q3" / "v1" / "board-pack.pdf").read_bytes().startswith(b"%PDF-")
    assert distribution.prepare(engine, partnership, Q3, as_of=built).new is False

    send_day = draft.record.distribute_on
    assert distribution.distribute(engine, partnership, Q3, today=send_day).reason == "not approved yet"
    approved = approval.approve_pack(engine, partnership, Q3, approved_by="Priya Shah")
    assert (approved.version, approved.already) == (1, False)
    early = distribution.distribute(engine, partnership, Q3, today=add_working_days(send_day, -1))
    assert early.enqueued is False and early.reason.startswith("not before")

    sent = distribution.distribute(engine, partnership, Q3, today=send_day)
    assert (sent.version, sent.enqueued, sent.reason) == (1, True, "sent")
    again = distribution.distribute(engine, partnership, Q3, today=send_day)
    assert again.enqueued is False and "version 1 was sent" in again.reason
    with pytest.raises(approval.NothingToApprove):
        approval.approve_pack(engine, partnership, Q3, approved_by="Priya Shah")

    (email,) = _rows(engine, "SELECT * FROM ops.notifications WHERE kind = 'board-pack'")
    assert email.key == "board-pack:2026Q3:v=1"
    assert set(email.recipients) == {p.email for p in partnership.board.recipients}
    assert email.subject == "Blanktown SCP: Board performance pack for Q2 2026/27"
    assert POLICE in email.html_body and "Revised" not in email.html_body
    names = [a["filename"] for a in email.attachments]
    assert names == ["board-pack-2026Q3-v1.pdf", "board-pack-2026Q3-v1-figures.csv"]
    stored = _rows(engine, "SELECT pdf_sha256, pdf FROM ops.board_packs WHERE distributed_at IS NOT NULL")
    assert hashlib.sha256(bytes(stored[0].pdf)).hexdigest() == stored[0].pdf_sha256
    assert (var / "boardpack" / "2026Q3" / "v1" / "board-pack.pdf").read_bytes() == bytes(stored[0].pdf)

    # Nothing changed: a later run finds the version sent and builds nothing.
    assert distribution.prepare(engine, partnership, Q3, as_of=send_day).record.state == "sent"


def test_data_changing_after_sending_makes_a_clearly_marked_revised_version(engine, partnership, var):
    load_two_quarters(engine, partnership)
    built = as_of(partnership)
    first = distribution.prepare(engine, partnership, Q3, as_of=built)
    approval.approve_pack(engine, partnership, Q3, approved_by="Priya Shah")
    send_day = first.record.distribute_on
    clock.set_now(dt.datetime.combine(send_day, dt.time(9), tzinfo=clock.LONDON))
    distribution.distribute(engine, partnership, Q3, today=send_day)

    publish_police_q3(engine)
    revised = distribution.prepare(engine, partnership, Q3, as_of=send_day)
    assert (revised.new, revised.record.version, revised.record.state) == (True, 2, "waiting")
    html = (var / "boardpack" / "2026Q3" / "v2" / "board-pack.html").read_text(encoding="utf-8")
    sent_on = f"{first.record.distribute_on.day} {first.record.distribute_on:%b %Y}"
    assert f"Revised: supersedes version 1 sent on {sent_on}" in html
    assert "Public protection notices about children: now 11 (was Data missing)." in html
    assert "Data missing from Blanktown Police" not in html
    assert (var / "boardpack" / "2026Q3" / "v1" / "board-pack.pdf").exists()  # version 1 stays archived

    approval.approve_pack(engine, partnership, Q3, approved_by="Priya Shah")
    second = distribution.distribute(engine, partnership, Q3, today=revised.record.distribute_on)
    assert (second.version, second.enqueued) == (2, True)
    emails = _rows(
        engine, "SELECT key, subject, html_body FROM ops.notifications WHERE kind = 'board-pack' ORDER BY id"
    )
    assert [e.key for e in emails] == ["board-pack:2026Q3:v=1", "board-pack:2026Q3:v=2"]
    assert emails[1].subject == "Blanktown SCP: REVISED Board performance pack for Q2 2026/27 (version 2)"
    assert f"Revised: supersedes version 1 sent on {sent_on}" in emails[1].html_body
    packs = _rows(engine, "SELECT version, distributed_at FROM ops.board_packs ORDER BY id")
    assert [(p.version, p.distributed_at is not None) for p in packs] == [(1, True), (2, True)]


def test_a_draft_rebuilt_before_it_goes_replaces_the_waiting_one_and_needs_approving_again(engine, partnership):
    load_two_quarters(engine, partnership)
    built = as_of(partnership)
    first = distribution.prepare(engine, partnership, Q3, as_of=built)
    send_prebriefs(engine, partnership, first.record.id, today=built)
    approval.approve_pack(engine, partnership, Q3, approved_by="Priya Shah")
    publish_police_q3(engine)

    # The wait step notices the returns changed, rebuilds, and waits for approval of the new draft. The
    # same measures are red for the same partners, so no new pre-brief goes and the day stays the same.
    readiness = approval.check_ready(engine, partnership, Q3, today=first.record.distribute_on)
    assert readiness.state == "waiting" and "approval" in readiness.reason
    assert readiness.prebriefs_queued == ()
    packs = _rows(engine, "SELECT id, version, superseded_at, approved_at FROM ops.board_packs ORDER BY id")
    assert [(p.version, p.superseded_at is not None, p.approved_at is not None) for p in packs] == [
        (1, True, True),
        (1, False, False),
    ]
    assert readiness.record_id == packs[1].id


def test_auto_approval_applies_on_the_day_the_pack_may_go(engine):
    partnership = two_feed_partnership(auto_approve=True)
    load_two_quarters(engine, partnership)
    draft = distribution.prepare(engine, partnership, Q3, as_of=as_of(partnership))
    day = draft.record.distribute_on
    assert approval.check_ready(engine, partnership, Q3, today=add_working_days(day, -1)).state == "waiting"
    ready = approval.check_ready(engine, partnership, Q3, today=day)
    assert ready.state == "ready"
    (record,) = _rows(engine, "SELECT approved_by FROM ops.board_packs")
    assert record.approved_by == approval.AUTO_APPROVER
    assert distribution.distribute(engine, partnership, Q3, today=day).enqueued is True


def test_a_pack_is_built_when_every_return_is_in_or_the_build_deadline_passes(engine, partnership):
    load_two_quarters(engine, partnership)
    day = as_of(partnership)
    build_now, reason = distribution.should_build(engine, partnership, Q3, as_of=day)
    assert build_now is False and "waiting for 1 return" in reason
    deadline = distribution.build_deadline(partnership, Q3)
    assert distribution.should_build(engine, partnership, Q3, as_of=deadline)[0] is True
    publish_police_q3(engine)
    assert distribution.should_build(engine, partnership, Q3, as_of=day) == (True, "every expected return is published")


def test_figures_csv_is_safe_to_open_in_a_spreadsheet(engine):
    raw_partnership = two_feed_partnership()
    kpis = [
        k.model_copy(update={"title": '=HYPERLINK("http://x")'}) if k.id == "referrals_nfa" else k
        for k in raw_partnership.kpis
    ]
    partnership = raw_partnership.model_copy(update={"kpis": tuple(kpis)})
    load_two_quarters(engine, partnership)
    pack = build_board_pack(engine, partnership, Q3, as_of=as_of(partnership))
    text = pack.csv.decode("utf-8-sig")
    assert "'=HYPERLINK" in text and ",=HYPERLINK" not in text
    assert [spreadsheet_safe(v) for v in ("=1+1", "+1", "-1", "@SUM(A1)", "1", "")] == [
        "'=1+1",
        "'+1",
        "'-1",
        "'@SUM(A1)",
        "1",
        "",
    ]
