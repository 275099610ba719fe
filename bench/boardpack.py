"""Benchmark: building the Board pack for twelve periods of every feed.

Loads twelve quarters of the demo partnership's returns (the seeded generator, through the real intake:
landing, ledger, parse and minimise, COPY, atomic publish; the contract check is skipped, it is not what
is measured) into a fresh warehouse on an embedded PostgreSQL, then builds each period's pack (KPIs,
disclosure control, charts, PDF, HTML, CSV) and prints the seconds each took. Nothing is timed as a pass
or fail.

``load_periods`` is also what the Board pack's integration tests use to get realistic data.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from partnerflow import warehouse
from partnerflow.core import clock
from partnerflow.core.config import Feed, Partnership, load_config
from partnerflow.core.paths import repo_path
from partnerflow.core.periods import Period, add_working_days, due_date
from partnerflow.intake import reader
from partnerflow.intake.minimise import pseudonym_key
from partnerflow.transport.landing import land_bytes, landing_dir
from partnerflow.warehouse import ledger
from partnerflow.warehouse.publish import publish
from partnerflow_dev.synthetic import sample_return

PERIODS = 12
LAST_PERIOD = Period.from_id("2026Q3")
SEED = 2026
PASSED = {"passed": True, "rules_checked": 0, "rows_checked": 0, "failures": []}


def load_periods(
    engine: Engine,
    partnership: Partnership,
    periods: Iterable[Period],
    *,
    seed: int = SEED,
    feeds: Iterable[Feed] | None = None,
    working_days_after_due: int = -1,
) -> int:
    """Receive and publish each feed's generated return for each period, arriving ``working_days_after_due``
    (default: the working day before the due date). Needs ``PARTNERFLOW_VAR`` (the clock and landing area)
    and ``PARTNERFLOW_PSEUDONYM_KEY``. Returns the number of rows published."""
    key = pseudonym_key()
    rows = 0
    try:
        for period in periods:
            for feed in feeds or partnership.feeds:
                due = due_date(partnership, feed, period)
                arrival = add_working_days(due, working_days_after_due)
                clock.set_now(dt.datetime.combine(arrival, dt.time(10), tzinfo=clock.LONDON))
                rows += load_return(
                    engine, partnership, feed, period, sample_return(feed.dataset, period, seed=seed), key
                )
    finally:
        clock.set_now(None)
    return rows


def load_return(
    engine: Engine, partnership: Partnership, feed: Feed, period: Period, content: bytes | list[dict], key: bytes
) -> int:
    """One return through landing, the ledger, staging and publish, as the ingest DAG's steps do it."""
    data = content if isinstance(content, bytes) else json.dumps({"pages": [{"records": content}]}).encode("utf-8")
    landed = land_bytes(data)
    with engine.begin() as conn:
        received = ledger.record_received(
            conn,
            feed_id=feed.id,
            period_id=period.id,
            source_name=f"{feed.id}_{period.id}",
            landed=landed,
            source_mtime=None,
            due_date=due_date(partnership, feed, period),
        )
    dataset = partnership.dataset(feed.dataset)
    reader.stage(
        engine, path=landing_dir() / received.landed_path, file_id=received.id, feed=feed, dataset=dataset, key=key
    )
    outcome = publish(engine, partnership, file_id=received.id, feed=feed, dataset=dataset, report=dict(PASSED))
    if outcome.state != "published":
        raise RuntimeError(f"{feed.id} {period.id}: expected to publish, got {outcome.state}")
    return outcome.rows or 0


def main() -> dict:
    from partnerflow.report.boardpack import build_board_pack
    from partnerflow_dev.postgres import EmbeddedPostgres

    partnership = load_config(repo_path("config", "partnership.yaml"))
    periods = [LAST_PERIOD]
    while len(periods) < PERIODS:
        periods.insert(0, periods[0].previous())
    home = Path(tempfile.mkdtemp(prefix="partnerflow-bench-boardpack-"))
    home.chmod(0o755)
    saved = {name: os.environ.get(name) for name in ("PARTNERFLOW_VAR", "PARTNERFLOW_PSEUDONYM_KEY")}
    server = EmbeddedPostgres(data_dir=home / "pgdata")
    server.start()
    try:
        os.environ["PARTNERFLOW_VAR"] = str(home / "var")
        os.environ["PARTNERFLOW_PSEUDONYM_KEY"] = secrets.token_hex(32)
        server.create_database("bench")
        engine = sa.create_engine(server.url("bench"))
        warehouse.migrate(engine)

        started = time.perf_counter()
        rows = load_periods(engine, partnership, periods)
        load_seconds = time.perf_counter() - started
        print(f"loaded {rows:,} rows: {len(periods)} periods x {len(partnership.feeds)} feeds in {load_seconds:.1f}s")

        seconds: dict[str, float] = {}
        pages: dict[str, int] = {}
        sizes: dict[str, int] = {}
        for period in periods:
            started = time.perf_counter()
            pack = build_board_pack(engine, partnership, period, as_of=add_working_days(period.end, 40))
            seconds[period.id] = round(time.perf_counter() - started, 3)
            pages[period.id], sizes[period.id] = pack.pages, len(pack.pdf)
            print(f"  {period.id}: {seconds[period.id]:.2f}s, {pack.pages} pages, PDF {len(pack.pdf) / 1024:.0f} KiB")
        total = sum(seconds.values())
        per_pack = total / len(periods)
        print(f"{len(periods)} packs of {len(partnership.kpis)} measures in {total:.1f}s, {per_pack:.2f}s per pack")
        engine.dispose()
        return {
            "periods": len(periods),
            "feeds": len(partnership.feeds),
            "measures": len(partnership.kpis),
            "rows_loaded": rows,
            "load_seconds": round(load_seconds, 2),
            "pack_seconds": seconds,
            "total_seconds": round(total, 2),
            "seconds_per_pack": round(total / len(periods), 3),
            "pages": pages,
            "pdf_bytes": sizes,
        }
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
