"""A throwaway warehouse for ``partnerflow validate`` when no ``PARTNERFLOW_WAREHOUSE_URL`` is set."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from partnerflow import warehouse
from partnerflow_dev.postgres import EmbeddedPostgres

SCRATCH_DATABASE = "validate"


@contextmanager
def scratch_warehouse() -> Iterator[str]:
    """The URL of a temporary embedded PostgreSQL, migrated, and removed afterwards."""
    home = Path(tempfile.mkdtemp(prefix="partnerflow-validate-"))
    home.chmod(0o755)  # the server may run as an unprivileged user (when we are root): it must reach pgdata
    server = EmbeddedPostgres(data_dir=home / "pgdata")
    try:
        server.start()
        server.create_database(SCRATCH_DATABASE)
        url = server.url(SCRATCH_DATABASE)
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        try:
            warehouse.migrate(engine)
        finally:
            engine.dispose()
        yield url
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)
