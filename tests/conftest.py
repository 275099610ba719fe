"""Shared fixtures: the embedded PostgreSQL the tests start themselves, and a fresh warehouse per test."""

from __future__ import annotations

import secrets
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from partnerflow import warehouse
from partnerflow.core.config import Partnership, load_config
from partnerflow_dev.postgres import EmbeddedPostgres
from partnerflow_dev.stack import DevStack

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def postgres() -> Iterator[EmbeddedPostgres]:
    """One embedded PostgreSQL server of this session's own, removed at the end.

    Not under pytest's tmp_path: each pytest start resets /tmp/pytest-of-<user> to 0700, which would lock
    out the unprivileged user the server runs as when the tests run as root.
    """
    home = Path(tempfile.mkdtemp(prefix="partnerflow-test-pg-"))
    home.chmod(0o755)
    server = EmbeddedPostgres(data_dir=home / "pgdata")
    server.start()
    yield server
    server.stop()
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def fresh_database(postgres: EmbeddedPostgres) -> Iterator[str]:
    """An empty database of its own for one test; returns its SQLAlchemy URL."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    postgres.create_database(name)
    yield postgres.url(name)
    warehouse._engine_for.cache_clear()
    with psycopg.connect(postgres.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private working folder (landing, sink, clock) for one test."""
    path = tmp_path / "var"
    path.mkdir()
    monkeypatch.setenv("PARTNERFLOW_VAR", str(path))
    return path


@pytest.fixture
def warehouse_url(fresh_database: str, var: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A migrated warehouse in its own database, configured for the code under test, with a pseudonym key."""
    monkeypatch.setenv("PARTNERFLOW_WAREHOUSE_URL", fresh_database)
    monkeypatch.setenv("PARTNERFLOW_PSEUDONYM_KEY", secrets.token_hex(32))
    warehouse.migrate()
    return fresh_database


@pytest.fixture(scope="session")
def demo_config() -> Partnership:
    return load_config(REPO / "config" / "partnership.yaml")


@pytest.fixture
def devstack(var, demo_config, warehouse_url, postgres, monkeypatch) -> Iterator[DevStack]:
    """The partners' SFTP drops and API, the SendGrid and SMTP sinks on loopback, with the test's warehouse,
    and every connection and setting the code under test reads put in the environment."""
    dev = DevStack(var=var, partnership=demo_config, postgres=postgres)
    dev.start_services()
    for name, value in dev.environment().items():
        if name.startswith(("AIRFLOW_CONN_", "PARTNERFLOW_SENDGRID")):
            monkeypatch.setenv(name, value)
    yield dev
    dev.stop_services()


@pytest.fixture(scope="module")
def engine(postgres: EmbeddedPostgres) -> Iterator[Engine]:
    """A migrated warehouse shared by one test module (cheaper than ``warehouse_url`` per test)."""
    name = f"m_{uuid.uuid4().hex[:12]}"
    postgres.create_database(name)
    eng = sa.create_engine(postgres.url(name))
    try:
        warehouse.migrate(eng)
        yield eng
    finally:
        eng.dispose()
        with psycopg.connect(postgres.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
