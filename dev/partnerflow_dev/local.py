"""Reaching the demo's warehouse after the demo has stopped, so ``partnerflow status`` works out of the box."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from partnerflow.core.paths import var_dir
from partnerflow_dev.postgres import EmbeddedPostgres
from partnerflow_dev.stack import WAREHOUSE_DB


@contextmanager
def warehouse_environment() -> Iterator[None]:
    """Use ``PARTNERFLOW_WAREHOUSE_URL`` when set; otherwise start the demo's embedded server for a moment.

    A server that was already running (``make demo KEEP=1``) is left running.
    """
    if os.environ.get("PARTNERFLOW_WAREHOUSE_URL"):
        yield
        return
    data_dir = var_dir() / "devstack" / "pgdata"
    if not (data_dir / "PG_VERSION").exists():
        raise SystemExit("PARTNERFLOW_WAREHOUSE_URL is not set and there is no demo warehouse yet: run `make demo`")
    server = EmbeddedPostgres(data_dir=data_dir)
    was_running = server.pid is not None
    server.start()
    os.environ["PARTNERFLOW_WAREHOUSE_URL"] = server.url(WAREHOUSE_DB)
    try:
        yield
    finally:
        del os.environ["PARTNERFLOW_WAREHOUSE_URL"]
        if not was_running:
            server.stop()
