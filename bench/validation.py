"""Contract validation of a 1M-row staged referral table: in PostgreSQL (GX's SQL datasource, as the pipeline
does it) versus the same suite on a pandas DataFrame read from that table (GX's pandas datasource).

Each variant runs in a child process of its own so its peak RSS is its own; both import GX and pandas before
the clock starts, so the figures compare the validation, not the imports. The pandas variant's time includes
reading the table into the DataFrame: that copy is what validating "in pandas" costs. A few defects are
planted, and both variants must report the same rule failures and counts.

Uses ``PARTNERFLOW_WAREHOUSE_URL`` when set (in a scratch schema, dropped afterwards), else a temporary
embedded PostgreSQL. ``python -m bench validation``; ``main()`` returns the figures.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROWS = 1_000_000
CHUNK = 125_000  # the generator's largest return; copies of it with new referral ids make up the rest
SEED = 7
PERIOD_ID = "2026Q3"
DATASET = "referrals"
REPO = Path(__file__).resolve().parents[1]
TARGET_SPEEDUP = 3.0
TARGET_MEMORY_SHARE = 0.25


def main() -> dict[str, Any]:
    from partnerflow.pipeline.dry_run import scratch_warehouse

    with scratch_warehouse() as (url, _):
        schema = f"scratch_bench_{uuid.uuid4().hex[:8]}"
        table = f"{schema}.{DATASET}"
        try:
            started = time.perf_counter()
            _stage(url, schema, table)
            print(f"   staged {ROWS:,} rows in {time.perf_counter() - started:.1f} s", flush=True)
            variants = {name: _child(name, url, table) for name in ("postgres", "pandas")}
        finally:
            _drop(url, schema)
    db, df = variants["postgres"], variants["pandas"]
    figures = {
        "rows": ROWS,
        "postgres": db,
        "pandas": df,
        "speedup": round(df["seconds"] / db["seconds"], 2),
        "memory_share": round(db["peak_rss_mb"] / df["peak_rss_mb"], 3),
        "memory_share_above_imports": round(db["rss_above_imports_mb"] / max(df["rss_above_imports_mb"], 1), 3),
        "same_failures": db["failures"] == df["failures"],
        "target": f"in-database at least {TARGET_SPEEDUP:g}x faster and under {TARGET_MEMORY_SHARE:.0%} of the memory",
    }
    figures["target_met"] = figures["speedup"] >= TARGET_SPEEDUP and figures["memory_share"] < TARGET_MEMORY_SHARE
    for name, run in variants.items():
        print(
            f"   {name:<8} {run['seconds']:6.1f} s   peak RSS {run['peak_rss_mb']:6.0f} MB "
            f"({run['rss_above_imports_mb']:.0f} MB above the imports)"
            + (f"   of which reading the table {run['load_seconds']:.1f} s" if "load_seconds" in run else "")
        )
    print(
        f"   in-database: {figures['speedup']}x faster, {figures['memory_share']:.0%} of the memory "
        f"({figures['memory_share_above_imports']:.0%} above the imports); same failures: {figures['same_failures']}"
    )
    return figures


def _stage(url: str, schema: str, table: str) -> None:
    """A staged referral table as intake leaves it: minimised, typed, a row_number, one row per referral."""
    import psycopg

    from partnerflow.core.config import partnership
    from partnerflow.core.periods import Period
    from partnerflow.intake import reader
    from partnerflow.intake.minimise import month_only, postcode_sector, pseudonymise
    from partnerflow_dev import synthetic

    dataset = partnership().dataset(DATASET)
    columns = dataset.loaded_columns
    period = Period.from_id(PERIOD_ID)
    key = b"bench-only-key-" + b"0" * 17
    base = synthetic.referrals_rows(period, seed=SEED, n=CHUNK, defects=True)  # the defects repeat in every copy
    ddl = ", ".join(["row_number integer NOT NULL", *(f"{c.name} {reader.SQL_TYPES[c.type]}" for c in columns)])
    names = ", ".join(["row_number", *(c.name for c in columns)])
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"CREATE TABLE {table} ({ddl})")
        with conn.cursor().copy(f"COPY {table} ({names}) FROM STDIN") as copy:
            for copy_number in range(ROWS // CHUNK):
                for offset, row in enumerate(base, start=1):
                    values = []
                    for column in columns:
                        value = row[column.name] or None
                        if value is None:
                            values.append(None)
                        elif column.name == "referral_id":
                            values.append(pseudonymise(key, column.name, f"{value}-{copy_number}"))
                        elif column.minimise == "pseudonymise":
                            values.append(pseudonymise(key, column.name, value))
                        elif column.minimise == "month":
                            values.append(month_only(_date(value)))
                        elif column.minimise == "postcode_sector":
                            values.append(postcode_sector(value))
                        else:
                            values.append(value)
                    copy.write_row([copy_number * CHUNK + offset, *values])
        conn.execute(f"ANALYZE {table}")


def _date(text: str):
    import datetime as dt

    return dt.date.fromisoformat(text)


def _drop(url: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def _child(variant: str, url: str, table: str) -> dict[str, Any]:
    print(f"   validating in {variant} (a child process)...", flush=True)
    result = subprocess.run(
        [sys.executable, "-m", "bench.validation", variant, url, table],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"the {variant} variant failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _run_variant(variant: str, url: str, table: str) -> dict[str, Any]:
    """In the child: import everything, then time one validation and read this process's peak RSS."""
    import great_expectations as gx
    import pandas as pd
    import sqlalchemy as sa

    from partnerflow.contracts import suites
    from partnerflow.core.config import partnership
    from partnerflow.core.periods import Period

    dataset = partnership().dataset(DATASET)
    period = Period.from_id(PERIOD_ID)
    baseline = float(ROWS)  # so the volume rule is checked too
    after_imports = _peak_rss_mb()
    started = time.perf_counter()
    figures: dict[str, Any] = {}
    if variant == "postgres":
        report = suites.validate_staged(
            warehouse_url=url, table=table, dataset=dataset, period=period, volume_baseline=baseline
        )
        failures = {f.code: f.failing_rows for f in report.failures}
    else:
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            frame = pd.read_sql(sa.text(f"SELECT * FROM {table}"), conn)
        engine.dispose()
        figures["load_seconds"] = round(time.perf_counter() - started, 2)
        contract = suites.read_contract(DATASET)
        context = gx.get_context(mode="ephemeral")
        asset = context.data_sources.add_pandas(name="pandas").add_dataframe_asset(name=DATASET)
        batch = asset.add_batch_definition_whole_dataframe(name="whole frame").get_batch(
            batch_parameters={"dataframe": frame}
        )
        result = batch.validate(
            suites.load_suite(DATASET),
            result_format=suites.RESULT_FORMAT,
            expectation_parameters=contract.parameters(period, baseline),
        )
        failures = {
            r.expectation_config.meta["code"]: int((r.result or {}).get("unexpected_count") or 0)
            for r in result.results
            if not r.success
        }
        errors = [r.expectation_config.meta["code"] for r in result.results if r.exception_info.get("raised_exception")]
        if errors:
            raise RuntimeError(f"GX could not evaluate {errors} on the DataFrame")
    figures["seconds"] = round(time.perf_counter() - started, 2)
    peak = _peak_rss_mb()
    figures |= {
        "peak_rss_mb": round(peak),
        "rss_after_imports_mb": round(after_imports),
        "rss_above_imports_mb": round(peak - after_imports),
        "failures": dict(sorted(failures.items())),
    }
    return figures


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


if __name__ == "__main__":
    import logging

    logging.disable(logging.WARNING)  # GX's INFO chatter would drown the one line of JSON
    print(json.dumps(_run_variant(*sys.argv[1:4])))
