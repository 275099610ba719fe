"""The PostgreSQL warehouse: the engine, and the versioned migrations in ``sql/migrations``.

``PARTNERFLOW_WAREHOUSE_URL`` (a SQLAlchemy URL, ``postgresql+psycopg://...``) says where it is; the dev
stack sets it to the embedded server, production to the real one.
"""

from __future__ import annotations

import logging
import os
from functools import cache
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from partnerflow.core.errors import TerminalError
from partnerflow.core.paths import repo_path

log = logging.getLogger(__name__)

MIGRATIONS_DIR = repo_path("sql", "migrations")
MARTS_DIR = repo_path("sql", "marts")
# Any fixed number: serialises concurrent migrators (the demo, the tests, several workers starting at once).
MIGRATION_LOCK = 7_212_001


class WarehouseNotConfigured(TerminalError):
    """PARTNERFLOW_WAREHOUSE_URL is not set."""


def warehouse_url() -> str:
    url = os.environ.get("PARTNERFLOW_WAREHOUSE_URL")
    if not url:
        raise WarehouseNotConfigured(
            "PARTNERFLOW_WAREHOUSE_URL is not set: point it at the warehouse database "
            "(postgresql+psycopg://user@host:port/db), or run through `make demo` which starts one"
        )
    return url


@cache
def _engine_for(url: str) -> Engine:
    return sa.create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=2)


def engine() -> Engine:
    """The process-wide engine for the configured warehouse."""
    return _engine_for(warehouse_url())


def migrate(eng: Engine | None = None) -> list[str]:
    """Apply the migrations not yet applied, then (re)create the marts views. Returns what was applied."""
    eng = eng or engine()
    applied_now: list[str] = []
    with eng.begin() as conn:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK})
        conn.execute(sa.text("CREATE SCHEMA IF NOT EXISTS ops"))
        conn.execute(
            sa.text(
                "CREATE TABLE IF NOT EXISTS ops.schema_migrations "
                "(version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
        )
        done = set(conn.execute(sa.text("SELECT version FROM ops.schema_migrations")).scalars())
        for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
            if path.stem in done:
                continue
            _run_script(conn, path)
            conn.execute(sa.text("INSERT INTO ops.schema_migrations (version) VALUES (:v)"), {"v": path.stem})
            applied_now.append(path.stem)
            log.info("applied migration %s", path.stem)
        for path in sorted(MARTS_DIR.glob("*.sql")):
            _run_script(conn, path)
    return applied_now


def _run_script(conn: Connection, path: Path) -> None:
    # The whole file at once, without parameters, so multi-statement scripts, $$ bodies and format('%I')
    # reach PostgreSQL as written.
    driver = conn.connection.driver_connection
    assert driver is not None, "an open connection has a driver connection"
    with driver.cursor() as cursor:
        cursor.execute(path.read_text(encoding="utf-8"))
