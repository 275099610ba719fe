"""One quarter of the demo partnership through a real Airflow stack (api-server, scheduler, dag-processor,
triggerer, LocalExecutor) against the embedded services: the same player ``make demo`` uses.

Asserts what the people involved would see: the warehouse rows, the ledger, and exactly which emails
went to whom — once each — and that no child's data appears in any email or task log.
"""

from __future__ import annotations

from collections import Counter

import pytest
import sqlalchemy as sa
from pypdf import PdfReader

from partnerflow import warehouse
from partnerflow_dev.quarter import DEMO_PERIOD, SEED, QuarterPlayer, airflow_for_the_quarter
from partnerflow_dev.synthetic import referrals_rows
from tests.e2e.services import running_stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def quarter(postgres, demo_config, tmp_path_factory):
    """Play the quarter once; the tests below read what it left."""
    var = tmp_path_factory.mktemp("e2e") / "var"
    var.mkdir()
    with running_stack(postgres, demo_config, var, "e2e") as stack:
        with airflow_for_the_quarter(stack, home=var / "airflow") as airflow:
            log = QuarterPlayer(stack=stack, airflow=airflow, partnership=demo_config, say=print).play()
        yield stack, log


def _rows(sql: str) -> list[tuple]:
    with warehouse.engine().connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(sql))]


def test_every_step_succeeded(quarter):
    _, log = quarter
    assert [outcome for _, _, outcome in log.steps] == ["success"] * len(log.steps)


def test_ledger_and_warehouse(quarter):
    assert _rows("SELECT feed_id, state FROM ops.received_files WHERE period_id = '2026Q3' ORDER BY id") == [
        ("health_icb", "published"),
        ("council_referrals", "rejected"),
        ("council_child_protection", "published"),
        ("council_referrals", "published"),
        ("council_children_in_care", "published"),
        ("youth_justice_kpis", "published"),
        ("police_ppn", "published"),
    ]
    assert _rows(
        "SELECT feed_id, state, rows_published FROM ops.submissions WHERE period_id = '2026Q3' ORDER BY feed_id"
    ) == [
        ("council_child_protection", "published", 250),
        ("council_children_in_care", "published", 300),
        ("council_referrals", "published", 400),
        ("education_exclusions", "expected", None),
        ("health_icb", "published", 9),
        ("police_ppn", "published", 4),
        ("youth_justice_kpis", "published", 11),
    ]
    assert _rows("SELECT count(*) FROM core.referrals WHERE period_id = '2026Q3'") == [(400,)]
    assert _rows("SELECT count(*) FROM core.police_ppn WHERE period_id = '2026Q3'") == [(4,)]
    assert _rows("SELECT count(*) FROM core.child_protection WHERE period_id = '2026Q3'") == [(250,)]
    assert _rows("SELECT count(*) FROM core.children_in_care WHERE period_id = '2026Q3'") == [(300,)]
    assert _rows("SELECT count(*) FROM core.health_icb WHERE period_id = '2026Q3'") == [(9,)]
    assert _rows("SELECT count(*) FROM core.yjb_kpis WHERE period_id = '2026Q3'") == [(11,)]
    assert _rows("SELECT count(*) FROM core.exclusions WHERE period_id = '2026Q3'") == [(0,)]


def test_eight_quarters_of_history_loaded_by_backfill_without_a_single_email(quarter, demo_config):
    """Every feed's returns for the eight quarters before, published through the real checks; none e-mailed."""
    assert _rows(
        "SELECT count(DISTINCT period_id), count(*), count(*) FILTER (WHERE state = 'published')"
        " FROM ops.submissions WHERE period_id < '2026Q3'"
    ) == [(8, 8 * len(demo_config.feeds), 8 * len(demo_config.feeds))]
    assert _rows("SELECT count(*) FROM ops.notifications WHERE period_id < '2026Q3'") == [(0,)]


def test_exactly_these_emails_once_each(quarter, demo_config):
    stack, log = quarter
    council, police, health, education, youth_justice = (
        demo_config.partner(p).contact.email for p in ("council", "police", "health", "education", "youth_justice")
    )
    board = tuple(sorted(p.email for p in demo_config.board.recipients))
    sent = Counter(
        (
            m["custom_args"]["partnerflow_kind"],
            tuple(sorted(to["email"] for p in m["personalizations"] for to in p["to"])),
        )
        for m in stack.sink.messages()
    )
    assert sent == Counter(
        {
            ("reminder-advance", (council,)): 3,  # one per council feed
            ("reminder-advance", (police,)): 1,
            ("reminder-advance", (health,)): 1,
            ("reminder-advance", (education,)): 1,
            ("reminder-advance", (youth_justice,)): 1,
            ("receipt", (health,)): 1,
            ("rejection", (council,)): 1,
            ("receipt", (council,)): 3,
            ("receipt", (youth_justice,)): 1,
            ("reminder-due", (police,)): 1,
            ("reminder-due", (education,)): 1,
            ("receipt", (police,)): 1,
            ("board-pack", board): 1,
            ("reminder-overdue", (education,)): 1,
            ("escalation", (demo_config.partner("education").senior_lead.email,)): 1,
            ("weekly-digest", (demo_config.officer.email,)): 1,
            # "No surprises": each partner lead hears privately of their red measures before the Board does.
            **{
                ("prebrief", (demo_config.partner(p).senior_lead.email,)): 1
                for p in ("council", "health", "youth_justice", "police", "education")
            },
        }
    )
    assert log.rerun_new_messages == 0


def test_rejection_report_is_specific_and_value_free(quarter):
    stack, _ = quarter
    (rejection,) = [m for m in stack.sink.messages() if m["custom_args"]["partnerflow_kind"] == "rejection"]
    text = next(c["value"] for c in rejection["content"] if c["type"] == "text/plain")
    assert "REF-" in text and "row" in text.lower()
    # No name, date of birth or postcode of any child in the defective file reaches an email or a log. (Short
    # numeric ids can match MIME boundaries or timestamps by chance: test_canary.py covers them with canaries.)
    personal = {
        value
        for row in referrals_rows(DEMO_PERIOD, seed=SEED, defects=True)
        for column, value in row.items()
        if column in {"child_name", "date_of_birth", "postcode"} and value
    }
    sent = [path for path in stack.sink.out_dir.iterdir() if path.suffix in {".json", ".html"}]
    files = [*sent, *(stack.var / "airflow" / "logs").rglob("*.log")]
    leaks = {path.name for path in files for value in personal if value in path.read_text(errors="replace")}
    assert leaks == set()


def test_board_pack_written_and_names_partners(quarter, demo_config):
    stack, _ = quarter
    pack = stack.var / "boardpack" / "2026Q3" / "board-pack.html"
    html = pack.read_text()
    assert "Blanktown" in html and "Q2 2026/27" in html
    # With eight quarters of history the tiles show direction of travel: only a measure with no figure this
    # quarter (education's, missing) or a hidden one has no comparison.
    glance = PdfReader(stack.var / "boardpack" / "2026Q3" / "board-pack.pdf").pages[1].extract_text()
    assert glance.count("No comparison with last quarter") <= 2
    assert glance.count("▲") + glance.count("▼") >= 15
    assert "Blanktown Police" in html
    # Education never sent its return: the pack names the partner and the missing feed.
    education = demo_config.feed("education_exclusions")
    assert demo_config.partner(education.partner).name in html and education.title in html
