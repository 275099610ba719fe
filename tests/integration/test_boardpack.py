"""KPI marts and the Board pack against a real PostgreSQL: values, RAG, named gaps, one email per period."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from partnerflow.calendar import Period, add_working_days, due_date
from partnerflow.config import Partnership, load_config
from partnerflow.report.boardpack import build_board_pack, distribute
from partnerflow.report.kpis import kpi_table

Q2, Q3 = Period.from_id("2026Q2"), Period.from_id("2026Q3")
POLICE = "Blanktown Police"
COUNCIL = "Blanktown Council Children's Services"


@pytest.fixture
def engine(warehouse_url: str) -> Iterator[Engine]:
    """The test's own migrated warehouse (tests/conftest.py)."""
    eng = sa.create_engine(warehouse_url)
    yield eng
    eng.dispose()


@pytest.fixture
def partnership() -> Partnership:
    return load_config()


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
    for number, row in enumerate(rows, start=1):
        conn.execute(
            sa.text(
                "INSERT INTO core.referrals (feed_id, period_id, file_id, file_sha256, row_number, referral_id, "
                "child_id, referral_date, referral_source, nfa, assessment_start_date, "
                "assessment_authorised_date) VALUES ('council_referrals', :period, :file, :sha, :n, :referral_id, "
                ":child_id, :referral_date, 'POL', :nfa, :start, :authorised)"
            ),
            {"period": feed_period, "file": file_id, "sha": sha, "n": number, "start": None, "authorised": None} | row,
        )
    return file_id


def _police(conn: Connection, period: str, values: dict[tuple[str, str], int]) -> int:
    file_id, sha = _file(conn, "police_ppn", period)
    for number, ((measure, grade), value) in enumerate(values.items(), start=1):
        conn.execute(
            sa.text(
                "INSERT INTO core.police_ppn (feed_id, period_id, file_id, file_sha256, row_number, measure_code, "
                "grade, value) VALUES ('police_ppn', :p, :file, :sha, :n, :m, :g, :v)"
            ),
            {"p": period, "file": file_id, "sha": sha, "n": number, "m": measure, "g": grade, "v": value},
        )
    return file_id


def _load_two_quarters(engine: Engine, partnership: Partnership) -> None:
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
        police_q2 = _police(
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


def _as_of(partnership: Partnership) -> dt.date:
    return add_working_days(due_date(partnership, partnership.feed("police_ppn"), Q3), 7)


def test_marts_count_each_referral_once_and_only_re_referrals_within_twelve_months(engine, partnership):
    _load_two_quarters(engine, partnership)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT kpi_id, period_id, numerator, denominator FROM marts.kpi_values WHERE period_id LIKE '2026%'"
            )
        ).all()
    values = {(r.kpi_id, r.period_id): (r.numerator, r.denominator) for r in rows}
    assert values[("re_referrals_12m", "2026Q2")] == (0, 20)
    assert values[("re_referrals_12m", "2026Q3")] == (12, 40)
    assert values[("referrals_nfa", "2026Q2")] == (2, 20)
    assert values[("referrals_nfa", "2026Q3")] == (6, 40)
    assert values[("ppn_high_grade", "2026Q2")] == (14, None)
    assert values[("da_child_present", "2026Q2")] == (17, None)
    assert ("ppn_high_grade", "2026Q3") not in values


def test_kpi_table_gives_values_rag_trend_and_names_missing_partner(engine, partnership):
    _load_two_quarters(engine, partnership)
    rows = {row.id: row for row in kpi_table(engine, partnership, Q3, as_of=_as_of(partnership))}
    assert list(rows) == [k.id for k in partnership.kpis]

    re_referrals = rows["re_referrals_12m"]
    assert (re_referrals.display, re_referrals.rag) == ("30.0%", "red")
    assert (re_referrals.numerator.text, re_referrals.denominator.text) == ("12", "40")
    assert (re_referrals.direction, re_referrals.improving) == ("up", False)
    assert [p.cell.text if p.cell else None for p in re_referrals.trend[-2:]] == ["0.0%", "30.0%"]
    assert len(re_referrals.trend) == 8

    assessments = rows["assessments_45wd"]
    assert (assessments.display, assessments.rag) == ("80.0%", "amber")
    assert (assessments.numerator.text, assessments.denominator.text) == ("24", "30")

    nfa = rows["referrals_nfa"]
    assert (nfa.display, nfa.rag) == ("15.0%", "green")
    # 2 of 20 in 2026Q2 is a small number: suppressed, so no direction of travel can be read from it.
    assert nfa.trend[-2].cell.text == "c" and nfa.trend[-2].value is None
    assert nfa.direction == "none"

    for kpi_id in ("ppn_high_grade", "da_child_present"):
        police = rows[kpi_id]
        assert police.value is None
        assert police.display == "Data missing"
        assert police.rag == "none"
        assert police.missing_from == (POLICE,)
        assert police.note == f"Data missing from {POLICE}."
    assert rows["ppn_high_grade"].trend[-2].cell.text == "14"


def test_board_pack_names_every_partner_with_missing_late_or_rejected_data(engine, partnership):
    _load_two_quarters(engine, partnership)
    pack = build_board_pack(engine, partnership, Q3, as_of=_as_of(partnership))
    html = pack.html
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert partnership.name in html and Q3.label in html
    assert f"Data missing from {POLICE}." in html
    assert "<script" not in html and "src=" not in html and "<link" not in html  # self-contained
    assert "<svg" in html
    attention = {s.partner_name: s for s in pack.attention}
    assert set(attention) == {POLICE, COUNCIL}
    assert (
        attention[POLICE].summary
        == "Rejected, waiting for a corrected return (due 21 Oct 2026, 7 working days late); 1 file rejected."
    )
    assert attention[COUNCIL].summary == "Published 23 Oct 2026, 2 working days late."
    for status in pack.attention:
        assert status.summary.replace("'", "&#39;") in html
    assert POLICE in pack.summary_html and "30.0%" in pack.summary_html
    assert "<html" not in pack.summary_html
    # The same data renders the same bytes, so versions only change when the figures do.
    assert build_board_pack(engine, partnership, Q3, as_of=_as_of(partnership)).sha256 == pack.sha256


def test_distribute_writes_the_pack_and_queues_one_board_email_per_period(engine, partnership, tmp_path):
    _load_two_quarters(engine, partnership)
    first = distribute(engine, partnership, Q3, var_dir=tmp_path, as_of=_as_of(partnership))
    second = distribute(engine, partnership, Q3, var_dir=tmp_path, as_of=_as_of(partnership))

    assert first.path == tmp_path / "boardpack" / "2026Q3" / "board-pack.html"
    assert hashlib.sha256(first.path.read_bytes()).hexdigest() == first.sha256
    assert (first.enqueued, second.enqueued) == (True, False)
    assert (first.version, second.version) == (1, 1)
    with engine.connect() as conn:
        emails = conn.execute(
            sa.text("SELECT recipients, subject, html_body FROM ops.notifications WHERE period_id = '2026Q3'")
        ).all()
        packs = conn.execute(sa.text("SELECT version, sha256, path, distributed_at FROM ops.board_packs")).all()
    assert len(emails) == 1
    assert set(emails[0].recipients) == {p.email for p in partnership.board.recipients}
    assert POLICE in emails[0].html_body
    assert [(p.version, p.sha256, p.path) for p in packs] == [(1, first.sha256, "boardpack/2026Q3/board-pack.html")]
    assert packs[0].distributed_at is not None

    # The police resubmit and publish: the pack changes and gets a new version, but the Board is not re-sent.
    with engine.begin() as conn:
        police_q3 = _police(conn, "2026Q3", {("PPN_CHILD", "H"): 11, ("DA_CHILD_PRESENT", "M"): 8})
        conn.execute(
            sa.text(
                "UPDATE ops.submissions SET state = 'published', published_at = now(), published_file_id = :f "
                "WHERE feed_id = 'police_ppn' AND period_id = '2026Q3'"
            ),
            {"f": police_q3},
        )
    third = distribute(engine, partnership, Q3, var_dir=tmp_path, as_of=_as_of(partnership))
    assert (third.version, third.enqueued) == (2, False)
    assert "Data missing from" not in third.path.read_text(encoding="utf-8")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM ops.notifications")).scalar_one() == 1
        assert conn.execute(sa.text("SELECT count(*) FROM ops.board_packs")).scalar_one() == 2
