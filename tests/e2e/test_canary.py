"""The canary: a unique value planted in the failing rows of every feed's defective return must appear
nowhere partnerflow writes after the returns go through the real pipeline under a real Airflow.

Each feed's defective sample (``generator.sample_return(..., defects=True)``) is dry-run first to find its
failing rows; the canary goes into their identifying and text fields (ids, names and free text, codes),
as long as the column allows (a shorter form for short code columns). The files are then sent the way
partners send them (SFTP upload, or the partner API and a triggered run), every ingest run is waited for,
and the canary is searched for in: task and component logs, every table of Airflow's metadata database
(XCom included), every table of the warehouse, the emails in the sink, the PostgreSQL server log, and every
file under ``var/`` except ``landing/`` (raw bytes are kept by design) and the partners' own side of the
dev stack (their SFTP drop and API). The landing area must hold it: the canary did arrive.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import secrets
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from partnerflow import warehouse
from partnerflow.core import clock
from partnerflow.core.config import Dataset, Feed, Partnership, SftpTransport
from partnerflow.core.periods import schedule
from partnerflow.pipeline import dry_run as validate_command
from partnerflow_dev.airflow_stack import AirflowStack
from partnerflow_dev.quarter import api_dataset
from partnerflow_dev.synthetic import sample_return
from tests.e2e.services import running_stack

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e

SEED = 4242
DAY = dt.datetime(2026, 10, 16, 9, 0, tzinfo=clock.LONDON)  # collecting 2026Q3, before its due date
DECIDED = ("rejected", "published", "duplicate", "superseded")
RUN_TIMEOUT = 600.0
LONG = "CANARY" + secrets.token_hex(5).upper()  # 16 characters
SHORT = "Þ" + "".join(secrets.choice("ÐØÆÅÞ") for _ in range(2))  # for code columns of 3 to 6 characters
SEARCHED = (LONG[:7], SHORT)  # the shortest forms planted
PARTNER_SIDE = ("landing", "devstack/sftp", "devstack/partner_api")


def canary_for(column: Any) -> str | None:
    """The canary for one column, or None where any value would be refused at intake (dates, numbers,
    NHS numbers, postcodes) or is too short to be told apart."""
    if column.type not in ("text", "code") or column.minimise in ("nhs_number", "postcode_sector"):
        return None
    width = column.length or column.max_length
    if width >= len(LONG):
        return LONG if column.length is None else LONG[:width]
    if width >= 7 and column.length is not None:
        return LONG[:width]
    if width >= len(SHORT) and column.length is None:
        return SHORT
    return None


def plant(feed: Feed, dataset: Dataset, sample: bytes | list[dict], rows: set[int]) -> bytes | list[dict]:
    """``sample`` with the canary in every plantable column of the given rows (1 = the first data row)."""
    spellings = {
        name.strip().lower().replace(" ", "_").replace("-", "_"): column
        for column in dataset.columns
        for name in (column.name, *column.aliases)
    }

    def planted(header: str, row_number: int, value: Any) -> Any:
        column = spellings.get(str(header).strip().lower().replace(" ", "_").replace("-", "_"))
        canary = canary_for(column) if column is not None and row_number in rows else None
        return value if canary is None else canary

    if isinstance(sample, list):
        return [{k: planted(k, n, v) for k, v in record.items()} for n, record in enumerate(sample, start=1)]
    if feed.format.kind == "xlsx":
        import openpyxl

        workbook = openpyxl.load_workbook(io.BytesIO(sample))
        sheet = workbook[feed.format.sheet] if feed.format.sheet else workbook.worksheets[0]
        header = [cell.value for cell in sheet[1]]
        for row_number in rows:
            for position, name in enumerate(header, start=1):
                cell = sheet.cell(row=row_number + 1, column=position)
                cell.value = planted(name or "", row_number, cell.value)
        out = io.BytesIO()
        workbook.save(out)
        return out.getvalue()
    encoding = "cp1252" if feed.format.encoding == "windows-1252" else "utf-8-sig"
    lines = list(csv.reader(io.StringIO(sample.decode(encoding), newline=""), delimiter=feed.format.delimiter))
    header, body = lines[0], lines[1:]
    text = io.StringIO(newline="")
    writer = csv.writer(text, delimiter=feed.format.delimiter)
    writer.writerow(header)
    for row_number, fields in enumerate(body, start=1):
        writer.writerow([planted(h, row_number, v) for h, v in zip(header, fields, strict=False)])
    return text.getvalue().encode("cp1252" if encoding == "cp1252" else "utf-8")


def failing_rows(report: dict) -> set[int]:
    return {n for failure in report["failures"] for n in failure["row_numbers"]}


def dry_run(config: Partnership, feed: Feed, content: bytes | list[dict], folder: Path, url: str) -> dict:
    """The report ``partnerflow validate`` gives for this return (GX in this process, a scratch schema)."""
    dataset = config.dataset(feed.dataset)
    period = schedule(config, feed).collecting_period(DAY.date())
    path = folder / f"{feed.id}.{feed.format.kind}"
    path.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
    run = validate_command.dry_run(
        feed=feed, dataset=dataset, path=path, period=period, warehouse_url=url, key=secrets.token_bytes(32)
    )
    return run.report


def leaks_in(text: str) -> list[str]:
    lowered = text.lower()
    escaped = [json.dumps(s)[1:-1].lower() for s in SEARCHED if not s.isascii()]
    return [s for s in SEARCHED if s in text] + [s for s in escaped if s in lowered]


def files_under(var: Path) -> Iterator[Path]:
    for path in var.rglob("*"):
        relative = path.relative_to(var).as_posix()
        if path.is_file() and not any(relative == p or relative.startswith(p + "/") for p in PARTNER_SIDE):
            yield path


def database_text(dsn: str, schemas: tuple[str, ...] | None = None) -> Iterator[tuple[str, str]]:
    """(table, text of all its rows) for every table of a database (of ``schemas``, or all but PostgreSQL's)."""
    with psycopg.connect(dsn) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE'"
            " AND table_schema NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
        for schema, name in tables:
            if schemas is not None and schema not in schemas:
                continue
            rows = conn.execute(f'SELECT * FROM "{schema}"."{name}"').fetchall()
            yield f"{schema}.{name}", "\n".join(" ".join(_as_text(v) for v in row) for row in rows)


def _as_text(value: Any) -> str:
    if isinstance(value, memoryview | bytes):
        data = bytes(value)
        try:
            data = zlib.decompress(data)  # Airflow compresses serialised DAGs
        except zlib.error:
            pass
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return ""  # encrypted or pickled: no clear text to leak
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


@pytest.fixture(scope="module")
def canary_run(postgres, demo_config, tmp_path_factory):
    """Send every feed's defective return, with the canary planted, through Airflow; yield what it left."""
    started = time.monotonic()
    var = tmp_path_factory.mktemp("e2e-leaks") / "var"
    var.mkdir()
    with running_stack(postgres, demo_config, var, "e2e_leak") as stack:
        try:
            url = warehouse.warehouse_url()
            scratch = tmp_path_factory.mktemp("e2e-leaks-dry-run")
            planted: dict[str, tuple[Feed, bytes | list[dict], set[int]]] = {}
            for feed in demo_config.feeds:
                period = schedule(demo_config, feed).collecting_period(DAY.date())
                sample = sample_return(feed.dataset, period, seed=SEED, defects=True)
                rows = failing_rows(dry_run(demo_config, feed, sample, scratch, url))
                content = plant(feed, demo_config.dataset(feed.dataset), sample, rows)
                report = dry_run(demo_config, feed, content, scratch, url)
                assert not report["passed"] and report.get("stage", "contract") == "contract", feed.id
                assert rows and rows <= failing_rows(report), f"{feed.id}: planted rows must still fail"
                planted[feed.id] = (feed, content, rows)
            print(f"\ncanary {LONG} / {SHORT} planted in {len(planted)} feeds in {time.monotonic() - started:.0f} s")

            airflow = AirflowStack(
                home=var / "airflow",
                metadata_url=postgres.url(stack.airflow_db),
                dags_folder=REPO / "dags",
                env=stack.environment(),
            )
            clock.set_now(DAY)
            with airflow:
                client = airflow.client
                ingest_dags = [f"ingest_{feed_id}" for feed_id in planted]
                client.wait_dags_parsed(ingest_dags)
                for dag_id in ingest_dags:
                    client.unpause(dag_id)
                print(f"airflow up in {time.monotonic() - started:.0f} s")
                for feed, content, _ in planted.values():
                    period = schedule(demo_config, feed).collecting_period(DAY.date())
                    if isinstance(feed.transport, SftpTransport):
                        drop = stack.drop_dir(feed.transport.directory)
                        final = drop / feed.transport.pattern.format(period=period.id)
                        (drop / f"{final.name}.part").write_bytes(content)
                        os.replace(drop / f"{final.name}.part", final)
                    else:
                        stack.partner_api.submit(api_dataset(feed), period.id, content)
                        client.trigger(f"ingest_{feed.id}", conf={"period": period.id})
                _wait_until_decided(set(planted))
                runs = _wait_until_idle(client, ingest_dags)
                print(f"all {len(planted)} returns decided and runs finished in {time.monotonic() - started:.0f} s")
            yield stack, planted, runs, postgres
        finally:
            clock.set_now(None)
            print(f"canary run took {time.monotonic() - started:.0f} s")


def _wait_until_decided(feed_ids: set[str]) -> None:
    deadline = time.monotonic() + RUN_TIMEOUT
    while True:
        with warehouse.engine().connect() as conn:
            decided = set(
                conn.execute(
                    sa.text("SELECT DISTINCT feed_id FROM ops.received_files WHERE state = ANY(:d)"),
                    {"d": list(DECIDED)},
                ).scalars()
            )
        if feed_ids <= decided:
            return
        assert time.monotonic() < deadline, f"not decided within {RUN_TIMEOUT:.0f}s: {sorted(feed_ids - decided)}"
        time.sleep(2)


def _wait_until_idle(client, dag_ids: list[str]) -> dict[str, list[str]]:
    """Every run's state once none of the DAGs has a run still going."""
    deadline = time.monotonic() + RUN_TIMEOUT
    while True:
        runs = {dag_id: [run["state"] for run in client.runs(dag_id)] for dag_id in dag_ids}
        if all(state in ("success", "failed") for states in runs.values() for state in states):
            return runs
        assert time.monotonic() < deadline, f"runs still going after {RUN_TIMEOUT:.0f}s: {runs}"
        time.sleep(2)


def test_every_defective_return_was_rejected_and_the_partner_told(canary_run):
    stack, planted, runs, _ = canary_run
    assert all(state == "success" for states in runs.values() for state in states), runs
    with warehouse.engine().connect() as conn:  # a later poll of an API may fetch the same bytes: a duplicate
        files = conn.execute(sa.text("SELECT feed_id, state FROM ops.received_files WHERE state <> 'duplicate'"))
        states = sorted(tuple(row) for row in files)
    assert states == sorted((feed_id, "rejected") for feed_id in planted)
    kinds = [m["custom_args"]["partnerflow_kind"] for m in stack.sink.messages()]
    assert kinds.count("rejection") == len(planted)


def test_the_canary_arrived(canary_run):
    stack, _, _, _ = canary_run
    landed = b"".join(path.read_bytes() for path in (stack.var / "landing").rglob("*") if path.is_file())
    assert LONG.encode() in landed


def test_the_canary_appears_nowhere_we_write(canary_run):
    stack, _, _, postgres = canary_run
    places: dict[str, list[str]] = {}
    for path in files_under(stack.var):
        data = path.read_bytes()
        found = leaks_in(data.decode("utf-8", errors="replace"))
        if SHORT.encode("cp1252") in data:
            found.append("cp1252")
        if found:
            places[str(path.relative_to(stack.var))] = found
    for database, schemas in ((stack.airflow_db, None), (stack.warehouse_db, None)):
        for table, text in database_text(postgres.dsn(database), schemas):
            if found := leaks_in(text):
                places[f"{database}:{table}"] = found
    if postgres.log_file.exists():
        if found := leaks_in(postgres.log_file.read_text(errors="replace")):
            places["postgres.log"] = found
    assert places == {}
    logs = list((stack.var / "airflow" / "logs").rglob("*.log"))
    assert any("dag_id=ingest_" in str(p) for p in logs), "the task logs were searched"
