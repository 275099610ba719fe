"""Which errors skip the retries: every cause that needs a person is a TerminalError, the DAGs' task boundary
turns it into Airflow's AirflowFailException (the task runner fails such a task without retrying), and the
alert says "someone must act" with the cause.

Under a real Airflow with partnerflow's DAGs: tests/e2e/test_terminal_failures.py.
"""

from __future__ import annotations

import datetime as dt

import pytest
from airflow.sdk.exceptions import AirflowFailException

from partnerflow.airflow.callbacks import SomeoneMustAct, fails_at_once_when_terminal
from partnerflow.contracts.suites import ContractConfigurationError, ContractError
from partnerflow.core.config import ConfigError, load_config
from partnerflow.core.errors import TerminalError, TransientError
from partnerflow.core.paths import repo_path
from partnerflow.intake.minimise import PseudonymKeyMissing
from partnerflow.notify import messages
from partnerflow.notify.sender import SenderNotConfigured, SendgridCredentialsRejected
from partnerflow.transport.errors import TransportError, TransportRefused
from partnerflow.transport.pinning import HostKeyNotPinned
from partnerflow.warehouse import WarehouseNotConfigured

TERMINAL = (
    TransportRefused,
    HostKeyNotPinned,
    SendgridCredentialsRejected,
    SenderNotConfigured,
    ContractError,
    ContractConfigurationError,
    ConfigError,
    PseudonymKeyMissing,
    WarehouseNotConfigured,
)


@pytest.mark.parametrize("kind", TERMINAL, ids=lambda k: k.__name__)
def test_a_terminal_error_fails_the_task_without_retries(kind):
    @fails_at_once_when_terminal
    def task_body(**context):
        raise kind("SFTP connection partnerflow_sftp_council: the server refused the password")

    with pytest.raises(AirflowFailException) as failed:
        task_body(params={})
    assert issubclass(kind, TerminalError)
    assert isinstance(failed.value, SomeoneMustAct)
    assert str(failed.value) == (
        "someone must act: SFTP connection partnerflow_sftp_council: the server refused the password"
    )
    assert isinstance(failed.value.__cause__, kind)


@pytest.mark.parametrize("error", [TransportError("timed out"), TransientError("busy"), RuntimeError("a bug")])
def test_other_errors_keep_the_retries(error):
    @fails_at_once_when_terminal
    def task_body():
        raise error

    with pytest.raises(type(error)) as raised:
        task_body()
    assert raised.value is error and not isinstance(raised.value, AirflowFailException)


def test_the_boundary_keeps_the_signature_airflow_reads():
    import inspect

    @fails_at_once_when_terminal
    def task_body(draft: dict, *, outlet_events=None, **context) -> int:
        return 1

    assert list(inspect.signature(task_body).parameters) == ["draft", "outlet_events", "context"]
    assert task_body({}) == 1


def test_the_incident_alert_says_someone_must_act_and_why():
    config = load_config(repo_path("config", "partnership.yaml"))
    cause = "council_referrals: SFTP connection partnerflow_sftp_council: the server refused the password"
    message = messages.incident_alert(
        config,
        name="ingest_council_referrals",
        period_id="2026Q3",
        incident_id=1,
        alert_number=1,
        failing=["fetch"],
        detail="The task fetch failed at once",
        opened_at=dt.datetime(2026, 10, 1, 9, tzinfo=dt.UTC),
        failures=1,
        run_url="http://airflow/dags/ingest_council_referrals/runs/r1",
        cooldown_hours=6,
        must_act=cause,
    )
    assert message.subject.endswith(": someone must act")
    assert f"Someone must act: {cause}" in message.text
    assert "without retries" in message.text and "after all its retries" not in message.text
    assert "Someone must act:" in message.html
