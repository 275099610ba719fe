"""What the transport and load tests share: the partners' real servers on loopback, and ways to look at
the ledger and the warehouse the way an engineer would."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from partnerflow import warehouse
from partnerflow.core.config import Feed, Partnership
from partnerflow_dev.stack import DevStack

SFTP_FEED = "council_referrals"
HTTP_FEED = "police_ppn"


@pytest.fixture(name="stack")
def stack_fixture(var, demo_config, warehouse_url, postgres, monkeypatch) -> Iterator[DevStack]:
    """SFTP, partner API and sink on loopback, with the Airflow connections in the environment.

    HOME points at an empty folder, so no known_hosts file of the machine's can vouch for a host key.
    """
    home = var.parent / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    dev = DevStack(var=var, partnership=demo_config, postgres=postgres)
    services = [s for s in (dev.sftp, dev.partner_api, dev.sink, getattr(dev, "smtp", None)) if s is not None]
    for service in services:
        service.start()
    for name, value in dev.environment().items():
        if name.startswith("AIRFLOW_CONN_") or name.startswith("PARTNERFLOW_SENDGRID"):
            monkeypatch.setenv(name, value)
    for feed in demo_config.feeds:
        if feed.transport.kind == "sftp":
            dev.drop_dir(feed.transport.directory).mkdir(parents=True, exist_ok=True)
    yield dev
    dev.sftp.faults.reset()
    dev.partner_api.faults.clear()
    for service in reversed(services):
        service.stop()


def with_transport(config: Partnership, feed_id: str, **changes: Any) -> Partnership:
    """The configuration with one feed's transport settings changed (as if its YAML said so)."""
    feeds = tuple(
        f.model_copy(update={"transport": f.transport.model_copy(update=changes)}) if f.id == feed_id else f
        for f in config.feeds
    )
    return config.model_copy(update={"feeds": feeds})


def drop(stack: DevStack, feed: Feed) -> Path:
    return stack.drop_dir(feed.transport.directory)


def upload(stack: DevStack, feed: Feed, name: str, content: bytes) -> Path:
    """Upload as partners should: to a temporary name, then rename into place."""
    folder = drop(stack, feed)
    partial = folder / f"{name}.part"
    partial.write_bytes(content)
    os.replace(partial, folder / name)
    return folder / name


def ledger_rows(feed_id: str) -> list[tuple[int, str]]:
    with warehouse.engine().connect() as conn:
        return [
            (i, s)
            for i, s in conn.execute(
                sa.text("SELECT id, state FROM ops.received_files WHERE feed_id = :f ORDER BY id"), {"f": feed_id}
            )
        ]


def scalar(sql: str, **params: Any) -> Any:
    with warehouse.engine().connect() as conn:
        return conn.execute(sa.text(sql), params).scalar_one()


def failure_codes(file_id: int) -> set[str]:
    with warehouse.engine().connect() as conn:
        report = conn.execute(
            sa.text("SELECT report FROM ops.validation_reports WHERE file_id = :i"), {"i": file_id}
        ).scalar_one()
    return {f["code"] for f in report["failures"]}


def staging_tables() -> int:
    return scalar("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'staging'")


def assert_every_file_accounted_for() -> None:
    """Invariant 1 (docs/invariants.md): one recorded state per file, its latest event says so, each with a reason."""
    with warehouse.engine().connect() as conn:
        files = conn.execute(sa.text("SELECT id, state FROM ops.received_files")).all()
        for file_id, state in files:
            events = conn.execute(
                sa.text("SELECT state, reason FROM ops.file_events WHERE file_id = :i ORDER BY id"), {"i": file_id}
            ).all()
            assert events, f"file {file_id} has no history"
            assert events[-1][0] == state, f"file {file_id} is {state} but its history ends {events[-1][0]}"
            assert all(reason for _, reason in events), f"file {file_id} has a state change without a reason"
