"""partnerflow's metrics reach a StatsD server through Airflow's metrics support, for a real ingest run.

The StatsD server is a UDP socket of the test's own; Airflow is pointed at it the way a deployment is, with
``AIRFLOW__METRICS__STATSD_*``. The run is the package's own path (as in test_ingest.py): a rejected file, a
near-miss name, the corrected file published, the outbox drained to the SendGrid sink, the deadlines run.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from collections.abc import Iterator

import pytest

from partnerflow import warehouse
from partnerflow.chasing import ladder
from partnerflow.core import clock, metrics
from partnerflow.core.periods import Period
from partnerflow.notify import sender
from partnerflow.pipeline import ingest
from partnerflow_dev.synthetic import referrals_csv

PERIOD = Period.from_id("2026Q3")
PREFIX = "pftest"
AS_OF = dt.date(2026, 10, 26)  # Monday: council's and police's 2026Q3 returns were due Wednesday 21 October


class StatsdListener:
    """A StatsD server in miniature: every datagram received on a loopback UDP port, line by line."""

    def __init__(self) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.settimeout(5.0)  # a bound on waiting for a datagram that never comes, not a sleep
        self.port = self.socket.getsockname()[1]
        self.lines: list[str] = []

    def received(self, until: set[str]) -> dict[str, list[str]]:
        """Read datagrams until every metric name or whole line (``name:value|type``) in ``until`` has arrived;
        return the values by metric name."""
        while not until <= set(self._by_name()) | set(self.lines):
            try:
                data = self.socket.recv(65535)
            except TimeoutError:
                break
            self.lines += data.decode().splitlines()
        return self._by_name()

    def _by_name(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for line in self.lines:
            stat, _, value = line.partition(":")
            found.setdefault(stat, []).append(value)
        return found


@pytest.fixture
def statsd(monkeypatch: pytest.MonkeyPatch) -> Iterator[StatsdListener]:
    listener = StatsdListener()
    for key, value in {
        "STATSD_ON": "True",
        "STATSD_HOST": "127.0.0.1",
        "STATSD_PORT": str(listener.port),
        "STATSD_PREFIX": PREFIX,
    }.items():
        monkeypatch.setenv(f"AIRFLOW__METRICS__{key}", value)
    metrics.reset()
    yield listener
    listener.socket.close()
    metrics.reset()


def _upload(devstack, demo_config, content: bytes, name: str = "referrals_2026Q3.csv") -> None:
    drop = devstack.drop_dir(demo_config.feed("council_referrals").transport.directory)
    (drop / f"{name}.part").write_bytes(content)
    os.replace(drop / f"{name}.part", drop / name)


def test_an_ingest_run_reports_per_feed_metrics_to_statsd(statsd, devstack, demo_config) -> None:
    feed = "council_referrals"

    def run() -> list[str]:
        ids = ingest.fetch(feed, config=demo_config)
        return [outcome["state"] for outcome in ingest.decide(feed, ids, config=demo_config)]

    _upload(devstack, demo_config, referrals_csv(PERIOD, seed=1, defects=True))
    _upload(devstack, demo_config, b"referral_id\n", name="referrals_2026Q3.CSV")  # a near miss: upper case
    assert run() == ["rejected"]
    _upload(devstack, demo_config, referrals_csv(PERIOD, seed=1, n=120))
    assert run() == ["published"]
    sender.send_pending(warehouse.engine())
    clock.set_now(dt.datetime(2026, 10, 26, 9, 0, tzinfo=dt.UTC))
    ladder.run_ladder(warehouse.engine(), demo_config, as_of=AS_OF, today=AS_OF)

    def stat(measure: str, feed_id: str = feed) -> str:
        return f"{PREFIX}.partnerflow.{measure}.{feed_id}"

    got = statsd.received(
        until={
            stat("files_received"),
            stat("files_rejected"),
            stat("files_published"),
            stat("files_ignored"),
            stat("rows_published"),
            stat("validation"),
            stat("outbox_backlog"),
            stat("outbox_dead_letters"),
            stat("working_days_to_due"),
            f"{stat('working_days_to_due', 'police_ppn')}:-3|g",  # StatsD sets a negative gauge in two steps
        }
    )

    assert got[stat("files_received")] == ["1|c", "1|c"]
    assert got[stat("files_rejected")] == ["1|c"]
    assert got[stat("files_published")] == ["1|c"]
    assert got[stat("rows_published")] == ["120|c"]
    assert got[stat("files_ignored")] == ["1|c"]  # seen by both runs' listings, counted once
    timings = got[stat("validation")]
    assert len(timings) == 2 and all(value.endswith("|ms") for value in timings)
    assert got[stat("outbox_backlog")][-1] == "0|g"  # every message went to the SendGrid sink
    assert got[stat("outbox_dead_letters")][-1] == "0|g"
    # Council's return is in: the next one (2026Q4) is due in January. Police's is three working days late.
    assert int(got[stat("working_days_to_due")][-1].removesuffix("|g")) > 40
    assert got[stat("working_days_to_due", "police_ppn")][-1] == "-3|g"
    # Feed ids only: no file name, period or person in any metric's name.
    names = {line.partition(":")[0] for line in statsd.lines if line.startswith(f"{PREFIX}.partnerflow.")}
    assert {name.split(".")[-1] for name in names} <= {feed.id for feed in demo_config.feeds} | {metrics.NO_FEED}
    assert not [name for name in names if "2026" in name or "csv" in name.lower()]
