"""HTTP intake against the real partner API misbehaving: each fault ends in the state docs/invariants.md requires.

A fault either heals within the retry budget (and the return is published as if nothing happened) or fails
the fetch with a message naming the feed and the fault, with nothing landed in the ledger.
"""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from partnerflow.core.periods import Period
from partnerflow.pipeline import ingest
from partnerflow.transport.errors import TransportError, TransportRefused
from partnerflow_dev.partner_api import ApiFault
from partnerflow_dev.synthetic import police_ppn_records
from tests.integration.transport_stack import (
    HTTP_FEED,
    assert_every_file_accounted_for,
    ledger_rows,
    scalar,
    stack_fixture,  # noqa: F401 (the ``stack`` fixture)
    with_transport,
)

PERIOD = Period.from_id("2026Q3")
RECORDS = police_ppn_records(PERIOD, seed=21)


@pytest.fixture
def submitted(stack):
    """The police return is on the API, one record per page, so every fault can land mid-return."""
    stack.partner_api.submit("ppn", PERIOD.id, RECORDS)
    stack.partner_api.page_size = 1
    return stack


def _fetch(config) -> list[int]:
    return ingest.fetch(HTTP_FEED, period_id=PERIOD.id, config=config)


def _publish(config) -> list[tuple[str, int]]:
    return [(o["state"], o["rows"]) for o in ingest.decide(HTTP_FEED, _fetch(config), config=config)]


def _fast(config, **changes):
    """Small budgets so faults that never heal fail quickly."""
    return with_transport(config, HTTP_FEED, **{"timeout_seconds": 2, "retry_budget_seconds": 4, **changes})


# --- healed within the budget ---------------------------------------------------------------------


def test_429_with_retry_after_is_waited_out(submitted, demo_config):
    submitted.partner_api.faults.add(ApiFault.RATE_LIMITED, times=2)
    assert _publish(demo_config) == [("published", len(RECORDS))]
    assert submitted.partner_api.faults.pending() == []


def test_5xx_is_retried_with_backoff(submitted, demo_config):
    submitted.partner_api.faults.add(ApiFault.SERVER_ERROR, times=3)
    assert _publish(demo_config) == [("published", len(RECORDS))]


def test_expired_bearer_token_is_refreshed_once(submitted, demo_config):
    submitted.partner_api.faults.add(ApiFault.TOKEN_EXPIRED)
    assert _publish(demo_config) == [("published", len(RECORDS))]


def test_a_server_that_hangs_once_is_retried(submitted, demo_config):
    submitted.partner_api.faults.add(ApiFault.HANG)
    assert _publish(_fast(demo_config, timeout_seconds=1, retry_budget_seconds=30)) == [("published", len(RECORDS))]


# --- failing clearly, nothing loaded --------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "times", "message"),
    [
        (ApiFault.SERVER_ERROR, 50, "still answered HTTP 500"),
        (ApiFault.HANG, 50, "did not answer"),
        (ApiFault.TRUNCATED_JSON, 1, "malformed or truncated JSON on page 1"),
        (ApiFault.LOGIN_PAGE, 1, "HTML page instead of JSON"),
        (ApiFault.ERROR_OBJECT, 1, "error object instead of records"),
    ],
)
def test_faults_that_do_not_heal_fail_the_fetch_and_record_nothing(submitted, demo_config, fault, times, message):
    submitted.partner_api.faults.add(fault, times=times)
    with pytest.raises(TransportError, match=message) as failure:
        _fetch(_fast(demo_config, timeout_seconds=1))
    assert ledger_rows(HTTP_FEED) == []
    assert "PPN_CHILD" not in str(failure.value)  # nothing of the body in the message
    submitted.partner_api.faults.clear()
    assert _publish(demo_config) == [("published", len(RECORDS))]  # the next run simply works


def test_retry_after_beyond_the_budget_gives_up_at_once(submitted, demo_config):
    submitted.partner_api.retry_after_seconds = 3600
    submitted.partner_api.faults.add(ApiFault.RATE_LIMITED)
    with pytest.raises(TransportError, match="still answered HTTP 429"):
        _fetch(_fast(demo_config))
    assert ledger_rows(HTTP_FEED) == []


def test_a_token_refused_after_refresh_is_a_clear_refusal(submitted, demo_config, monkeypatch):
    connection = json.loads(os.environ["AIRFLOW_CONN_PARTNERFLOW_API_POLICE"])
    monkeypatch.setenv("AIRFLOW_CONN_PARTNERFLOW_API_POLICE", json.dumps({**connection, "password": "revoked"}))
    with pytest.raises(TransportRefused, match="even after a refresh"):
        _fetch(demo_config)
    assert ledger_rows(HTTP_FEED) == []


def test_a_repeated_page_is_detected(submitted, demo_config):
    _queue_on_page(submitted, 2, ApiFault.REPEATED_PAGE)
    with pytest.raises(TransportError, match="page 2 repeats page 1"):
        _fetch(demo_config)
    assert ledger_rows(HTTP_FEED) == []


def test_a_skipped_page_is_detected(submitted, demo_config):
    _queue_on_page(submitted, 2, ApiFault.SKIPPED_PAGE)
    with pytest.raises(TransportError, match="page 3 repeats page 2"):
        _fetch(demo_config)
    assert ledger_rows(HTTP_FEED) == []


@pytest.mark.parametrize("pagination", ["page", "cursor", "link"])
def test_pages_that_stop_short_of_the_reported_total_are_detected(submitted, demo_config, pagination):
    _queue_on_page(submitted, 2, ApiFault.EARLY_END)
    with pytest.raises(TransportError, match="reported 4 records but sent 2"):
        _fetch(with_transport(demo_config, HTTP_FEED, pagination=pagination))
    assert ledger_rows(HTTP_FEED) == []


def _queue_on_page(stack, page: int, fault: ApiFault) -> None:
    """Let ``page - 1`` responses through, then show ``fault`` (the queue holds one fault per response)."""
    original_take = stack.partner_api.faults.take
    served = {"n": 0}

    def take():
        served["n"] += 1
        return fault if served["n"] == page else original_take()

    stack.partner_api.faults.take = take


# --- pagination and auth modes --------------------------------------------------------------------


@pytest.mark.parametrize("pagination", ["page", "cursor", "link"])
def test_every_pagination_mode_reads_every_record(submitted, demo_config, pagination):
    config = with_transport(demo_config, HTTP_FEED, pagination=pagination)
    assert _publish(config) == [("published", len(RECORDS))]
    assert scalar("SELECT count(*) FROM core.police_ppn") == len(RECORDS)


def test_oauth2_client_credentials_with_one_refresh_on_expiry(submitted, demo_config, monkeypatch):
    api = submitted.partner_api
    api.client_id, api.client_secret = "blanktown-scp", "client-secret-for-tests"
    monkeypatch.setenv(
        "AIRFLOW_CONN_PARTNERFLOW_API_POLICE",
        json.dumps(
            {"conn_type": "http", "schema": "http", "host": api.host, "port": api.port}
            | {"login": api.client_id, "password": api.client_secret}
        ),
    )
    config = with_transport(demo_config, HTTP_FEED, auth="oauth2")
    api.faults.add(ApiFault.TOKEN_EXPIRED)
    assert _publish(config) == [("published", len(RECORDS))]
    assert api.tokens_issued == 2  # the first token, and one refresh

    api.client_secret = "rotated"
    with pytest.raises(TransportRefused, match="refused our client credentials"):
        _fetch(config)


# --- what is kept ---------------------------------------------------------------------------------


def test_raw_responses_are_landed_like_files(submitted, demo_config):
    assert _publish(demo_config) == [("published", len(RECORDS))]
    landing = submitted.var / "landing"
    with_landing = scalar("SELECT landed_path FROM ops.received_files")
    document = json.loads((landing / with_landing).read_bytes())
    assert [p["page"] for p in document["pages"]] == [1, 2, 3, 4]
    for page in document["pages"]:
        raw = (landing / page["response_sha256"][:2] / page["response_sha256"]).read_bytes()
        assert hashlib.sha256(raw).hexdigest() == page["response_sha256"]
        assert json.loads(raw)["records"] == page["records"]
    # Polling an unchanged return adds nothing; a changed one is a new file that replaces it.
    assert _fetch(demo_config) == []
    assert [state for _, state in ledger_rows(HTTP_FEED)] == ["published"]
    submitted.partner_api.submit("ppn", PERIOD.id, police_ppn_records(PERIOD, seed=22))
    assert _publish(demo_config) == [("published", len(RECORDS))]
    assert [state for _, state in ledger_rows(HTTP_FEED)] == ["superseded", "published"]
    assert_every_file_accounted_for()
