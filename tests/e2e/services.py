"""The embedded services for one end-to-end module: databases of their own, the environment pointed at them."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from partnerflow import warehouse
from partnerflow.core.config import Partnership
from partnerflow_dev.postgres import EmbeddedPostgres
from partnerflow_dev.stack import DevStack


@contextlib.contextmanager
def running_stack(postgres: EmbeddedPostgres, partnership: Partnership, var: Path, name: str) -> Iterator[DevStack]:
    """Start the dev stack on the session's PostgreSQL with a migrated warehouse; stop it and undo the
    environment afterwards. ``name`` prefixes the warehouse and Airflow databases."""
    suffix = uuid.uuid4().hex[:8]
    environment = pytest.MonkeyPatch()
    stack = DevStack(
        var=var,
        partnership=partnership,
        postgres=postgres,
        warehouse_db=f"{name}_wh_{suffix}",
        airflow_db=f"{name}_af_{suffix}",
    )
    stack.start()
    try:
        for variable, value in stack.environment().items():
            environment.setenv(variable, value)
        warehouse._engine_for.cache_clear()
        warehouse.migrate()
        yield stack
    finally:
        stack.stop()
        warehouse._engine_for.cache_clear()
        environment.undo()
