"""Intake throughput against a raw COPY of the same file, and the intake process's peak memory.

For each size (1M and 3M rows by default; ``PARTNERFLOW_BENCH_ROWS=100000,200000`` to change) it writes a
referral-shaped CSV (the referrals dataset's columns plus one quoted free-text column partners often leave
in, about 200 bytes a row), puts it on the embedded SFTP server, and then:

- **intake**: a fresh Python process runs the real path: ``collect.fetch_sftp`` (SFTPHook download, landing
  by sha256, ledger row), ``reader.stage`` (parse, minimise, pseudonymise, COPY into staging) and
  ``publish.publish`` (the slice replaced in one transaction). Validation is left out. The process reports
  its own peak RSS (``ru_maxrss``), and its RSS once imports are done, so growth with the file shows.
- **raw COPY**: psycopg streams the same file into a typed table with ``COPY ... (FORMAT csv)``.

Each size gets a fresh warehouse database on one embedded PostgreSQL. Figures are printed and returned.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SIZES = (1_000_000, 3_000_000)
FEED_ID = "council_referrals"
PERIOD_ID = "2026Q3"
BLOCK_ROWS = 20_000
NOTE_WORDS = (
    "referral", "received", "from", "school", "concerns", "about", "attendance", "and", "presentation",
    "mother", "reports", "police", "attended", "address", "following", "incident", "child", "was", "present",
    "health", "visitor", "raised", "worries", "regarding", "home", "conditions", "neighbour", "called",
)  # fmt: skip
RAW_COLUMNS = (
    ("referral_id", "text"),
    ("child_id", "text"),
    ("child_name", "text"),
    ("date_of_birth", "date"),
    ("postcode", "text"),
    ("referral_date", "date"),
    ("referral_source", "text"),
    ("nfa", "text"),
    ("assessment_start_date", "date"),
    ("assessment_authorised_date", "date"),
    ("case_summary", "text"),
)


def main() -> dict[str, Any]:
    from partnerflow import warehouse
    from partnerflow.core.config import load_config
    from partnerflow.core.paths import var_dir
    from partnerflow_dev.postgres import EmbeddedPostgres
    from partnerflow_dev.sftp_server import SftpServer, ensure_keys

    sizes = _sizes()
    config = load_config()
    transport = config.feed(FEED_ID).transport
    work = Path(tempfile.mkdtemp(prefix="intake-", dir=_work_root(var_dir())))
    work.chmod(0o755)  # the embedded PostgreSQL may run as another user
    results: dict[str, Any] = {"command": "make bench  (python -m bench intake)", "sizes": []}
    keys = ensure_keys(work / "ssh")
    try:
        with (
            EmbeddedPostgres(data_dir=work / "pgdata") as postgres,
            SftpServer(root=work / "sftp", host_key=keys.host_key, authorized_keys=keys.authorized_keys) as sftp,
        ):
            drop = work / "sftp" / transport.directory.strip("/")
            drop.mkdir(parents=True)
            for rows in sizes:
                database = f"bench_{rows}"
                postgres.create_database(database)
                os.environ["PARTNERFLOW_WAREHOUSE_URL"] = postgres.url(database)
                warehouse.migrate()
                csv_path = drop / transport.pattern.format(period=PERIOD_ID)
                started = time.perf_counter()
                size_bytes = write_referrals_csv(csv_path, rows, seed=rows)
                print(f"   {rows:,} rows: wrote {size_bytes / 1e6:,.0f} MB in {time.perf_counter() - started:.1f}s")
                env = _intake_environment(work, postgres.url(database), sftp, keys, transport.connection)
                intake = _run_intake_process(env)
                raw = raw_copy(postgres.dsn(database), csv_path, rows)
                figures = {
                    "rows": rows,
                    "file_mb": round(size_bytes / 1e6, 1),
                    "intake_rows_per_s": round(rows / intake["seconds"]),
                    "raw_copy_rows_per_s": round(rows / raw["seconds"]),
                    "ratio": round((rows / intake["seconds"]) / (rows / raw["seconds"]), 3),
                    "intake_peak_rss_mb": intake["peak_rss_mb"],
                    "intake_rss_after_imports_mb": intake["rss_after_imports_mb"],
                    "intake_peak_rss_mb_after_step": intake["peak_rss_mb_by_step"],
                    "intake_seconds": intake["steps"],
                    "raw_copy_seconds": round(raw["seconds"], 2),
                }
                results["sizes"].append(figures)
                _print(figures)
                csv_path.unlink()
                shutil.rmtree(work / "var" / "landing", ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return results


def write_referrals_csv(path: Path, rows: int, *, seed: int) -> int:
    """Stream ``rows`` referral-shaped rows to ``path``; return its size. Fast and plausible, not realistic."""
    rng = random.Random(seed)
    quarter_start = dt.date(2026, 7, 1)
    referral_days = [quarter_start + dt.timedelta(days=d) for d in range(92)]
    referral_dates = [d.isoformat() for d in referral_days]
    later = {
        d.isoformat(): [(d + dt.timedelta(days=k)).isoformat() for k in (0, 1, 3, 7, 20, 40, 60)] for d in referral_days
    }
    births = [(dt.date(2008, 1, 1) + dt.timedelta(days=d)).isoformat() for d in range(0, 18 * 365, 3)]
    postcodes = [f"BK{a} {b}{c}{e}" for a in range(1, 10) for b in range(10) for c in "ABDEFGHJ" for e in "LNPQRS"]
    names = [
        f"{f} {s}"
        for f in ("Ada", "Alfie", "Amara", "Caleb", "Eli", "Isla", "Noah", "Rosa")
        for s in ("Applewood", "Dunmoor", "Hartwell", "Rookwood", "Underhill")
    ]
    sources = ["1A", "2A", "3A", "3F", "5A", "5B", "6", "8", "10"]
    notes = [f'"{_words(rng, 15)}, {_words(rng, 2)}"' for _ in range(2000)]  # free text with a comma: quoted
    header = ",".join(name for name, _ in RAW_COLUMNS) + "\n"
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write(header)
        for block_start in range(0, rows, BLOCK_ROWS):
            n = min(BLOCK_ROWS, rows - block_start)
            referrals = rng.choices(referral_dates, k=n)
            lines = []
            for i, (child, name, birth, postcode, referred, source, note, roll, step) in enumerate(
                zip(
                    rng.choices(range(1_000_000, 9_999_999), k=n),
                    rng.choices(names, k=n),
                    rng.choices(births, k=n),
                    rng.choices(postcodes, k=n),
                    referrals,
                    rng.choices(sources, k=n),
                    rng.choices(notes, k=n),
                    (rng.random() for _ in range(n)),
                    rng.choices(range(5), k=n),
                    strict=False,
                ),
                start=block_start + 1,
            ):
                if roll < 0.12:
                    nfa, start, authorised = "Y", "", ""
                else:
                    options = later[referred]
                    nfa, start, authorised = "N", options[step], options[step + 2] if roll > 0.3 else ""
                lines.append(
                    f"R2026Q3{i:08d},{child:07d},{name},{birth},{postcode},{referred},{source},{nfa},"
                    f"{start},{authorised},{note}\n"
                )
            out.write("".join(lines))
    return path.stat().st_size


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(NOTE_WORDS) for _ in range(n))


def raw_copy(dsn: str, path: Path, rows: int) -> dict[str, float]:
    """The same file through psycopg's COPY into a typed table: the floor any intake is measured against."""
    import psycopg

    columns = ", ".join(f"{name} {kind}" for name, kind in RAW_COLUMNS)
    with psycopg.connect(dsn) as conn:
        conn.execute(f"CREATE TABLE bench_raw ({columns})")
        conn.commit()
        started = time.perf_counter()
        with conn.cursor().copy("COPY bench_raw FROM STDIN (FORMAT csv, HEADER true)") as copy, path.open("rb") as f:
            while chunk := f.read(1 << 20):
                copy.write(chunk)
        conn.commit()
        seconds = time.perf_counter() - started
        copied = conn.execute("SELECT count(*) FROM bench_raw").fetchone()[0]
    if copied != rows:
        raise RuntimeError(f"raw COPY loaded {copied} rows, expected {rows}")
    return {"seconds": seconds}


def intake_process() -> None:
    """The measured process: the real intake path for one file, figures as JSON on the last stdout line."""
    # An Airflow task process has these loaded before the task starts: keep import time out of the figures.
    from airflow.providers.sftp.hooks.sftp import SFTPHook

    from partnerflow import warehouse
    from partnerflow.core.config import partnership
    from partnerflow.intake import reader
    from partnerflow.intake.minimise import pseudonym_key
    from partnerflow.pipeline import collect
    from partnerflow.transport.landing import landing_dir
    from partnerflow.warehouse import ledger, publish

    config = partnership()
    feed = config.feed(FEED_ID)
    SFTPHook.get_connection(feed.transport.connection)  # loads Airflow's connection and masking machinery
    rss_after_imports = _rss_now_mb()
    dataset = config.dataset(feed.dataset)
    eng = warehouse.engine()
    steps = {}
    started = time.perf_counter()
    (file_id,) = collect.fetch_sftp(eng, config, feed)
    steps["fetch"] = time.perf_counter() - started
    peaks = {"fetch": _peak_rss_mb()}
    with eng.connect() as conn:
        received = ledger.get(conn, file_id)
    mark = time.perf_counter()
    staged = reader.stage(
        eng, path=landing_dir() / received.landed_path, file_id=file_id, feed=feed, dataset=dataset, key=pseudonym_key()
    )
    steps["parse_minimise_copy"] = time.perf_counter() - mark
    peaks["parse_minimise_copy"] = _peak_rss_mb()
    mark = time.perf_counter()
    outcome = publish.publish(
        eng, config, file_id=file_id, feed=feed, dataset=dataset, report={"passed": True, "failures": []}
    )
    steps["publish"] = time.perf_counter() - mark
    seconds = time.perf_counter() - started
    if outcome.state != "published" or outcome.rows != staged.rows:
        raise RuntimeError(f"intake ended {outcome.state} with {outcome.rows} rows")
    print(
        json.dumps(
            {
                "rows": outcome.rows,
                "seconds": seconds,
                "steps": {k: round(v, 2) for k, v in steps.items()},
                "peak_rss_mb": _peak_rss_mb(),
                "peak_rss_mb_by_step": {**peaks, "publish": _peak_rss_mb()},
                "rss_after_imports_mb": rss_after_imports,
            }
        )
    )


def _run_intake_process(env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "bench.intake"], env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the intake process failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _intake_environment(work: Path, warehouse_url: str, sftp: Any, keys: Any, connection: str) -> dict[str, str]:
    from partnerflow_dev.sftp_server import client_connection

    sftp_connection = client_connection(sftp.host, sftp.port, keys)
    return {
        **os.environ,
        "PARTNERFLOW_VAR": str(work / "var"),
        "PARTNERFLOW_WAREHOUSE_URL": warehouse_url,
        "PARTNERFLOW_PSEUDONYM_KEY": secrets.token_hex(32),
        f"AIRFLOW_CONN_{connection.upper()}": json.dumps(sftp_connection),
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]),
    }


def _sizes() -> tuple[int, ...]:
    chosen = os.environ.get("PARTNERFLOW_BENCH_ROWS")
    return tuple(int(n) for n in chosen.split(",")) if chosen else SIZES


def _work_root(var: Path) -> Path:
    root = var / "bench" / "work"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _rss_now_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def _print(f: dict[str, Any]) -> None:
    steps = ", ".join(f"{k} {v}s" for k, v in f["intake_seconds"].items())
    print(
        f"   {f['rows']:,} rows ({f['file_mb']} MB): intake {f['intake_rows_per_s']:,} rows/s ({steps}); "
        f"raw COPY {f['raw_copy_rows_per_s']:,} rows/s ({f['raw_copy_seconds']}s); ratio {f['ratio']}; "
        f"intake peak RSS {f['intake_peak_rss_mb']} MB ({f['intake_rss_after_imports_mb']} MB after imports)",
        flush=True,
    )


if __name__ == "__main__":
    if os.environ.get("PARTNERFLOW_BENCH_PROFILE"):  # a cProfile of the intake process, for finding hot paths
        import cProfile

        cProfile.run("intake_process()", os.environ["PARTNERFLOW_BENCH_PROFILE"])
    else:
        intake_process()
