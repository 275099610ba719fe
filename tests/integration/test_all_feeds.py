"""Every feed of the demo partnership through the real SFTP server and partner API, without Airflow.

Each feed's defective sample (from the generator) is rejected with the rule codes of the defects planted in
it, naming their rows; its good sample is then published with lineage. Minimisation fails closed: a value
that can't be minimised, or no pseudonym key, loads nothing of the file.
"""

from __future__ import annotations

import os

import pytest
import sqlalchemy as sa

from partnerflow import warehouse
from partnerflow.core.config import Column, Dataset, Feed, SftpTransport
from partnerflow.core.periods import Period
from partnerflow.intake import reader
from partnerflow.intake.minimise import PseudonymKeyMissing, pseudonym_key
from partnerflow.pipeline import ingest
from partnerflow_dev import synthetic
from partnerflow_dev.quarter import api_dataset
from partnerflow_dev.stack import DevStack

PERIOD = Period.from_id("2026Q3")
SEED = 7

# The error-severity rules each dataset's planted defects break. Datasets whose contracts another part of
# the project owns may gain rules, so for those the planted ones must be among the codes reported.
DEFECT_CODES: dict[str, tuple[set[str], dict[str, tuple[int, ...]]]] = {
    "referrals": ({"REF-006", "REF-008", "REF-010"}, synthetic.REFERRAL_DEFECTS),
    "police_ppn": ({"PPN-005", "PPN-006"}, synthetic.POLICE_PPN_DEFECTS),
    "child_protection": (
        {"CPP-006", "CPP-009", "CPP-010", "CPP-011", "CPP-012"},
        synthetic.CHILD_PROTECTION_DEFECTS,
    ),
    "children_in_care": ({"CIC-005", "CIC-010", "CIC-011", "CIC-013"}, synthetic.CHILDREN_IN_CARE_DEFECTS),
    "health_icb": ({"HLT-005", "HLT-006", "HLT-009"}, synthetic.HEALTH_ICB_DEFECTS),
    "exclusions": ({"EDU-007", "EDU-008", "EDU-009", "EDU-012"}, synthetic.EXCLUSION_DEFECTS),
    "yjb_kpis": ({"YJB-004", "YJB-007"}, synthetic.YJB_KPI_DEFECTS),
}
CONTRACTS_OWNED_ELSEWHERE = {"referrals", "police_ppn"}
REPEATED_ROW_DEFECTS = {"repeated_plan_id", "repeated_child", "repeated_row"}  # the row before is named too


@pytest.fixture
def stack(devstack):
    """The shared dev stack (tests/conftest.py)."""
    return devstack


def send(stack: DevStack, feed: Feed, content: bytes | list[dict]) -> None:
    """The partner sends a return: uploaded under a temporary name then renamed, or published on its API."""
    if isinstance(feed.transport, SftpTransport):
        assert isinstance(content, bytes)
        drop = stack.drop_dir(feed.transport.directory)
        name = feed.transport.pattern.format(period=PERIOD.id)
        (drop / f"{name}.part").write_bytes(content)
        os.replace(drop / f"{name}.part", drop / name)
    else:
        assert isinstance(content, list)
        stack.partner_api.submit(api_dataset(feed), PERIOD.id, content)


def run(feed: Feed, config) -> list[dict]:
    """One ingest run of the feed, as its DAG's fetch and decide tasks do it."""
    return ingest.decide(feed.id, ingest.fetch(feed.id, period_id=PERIOD.id, config=config), config=config)


def latest_report(feed_id: str) -> dict:
    with warehouse.engine().connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT r.report FROM ops.validation_reports r JOIN ops.received_files f ON f.id = r.file_id"
                " WHERE f.feed_id = :f ORDER BY r.file_id DESC LIMIT 1"
            ),
            {"f": feed_id},
        ).scalar_one()


def scalar(sql: str, **params) -> object:
    with warehouse.engine().connect() as conn:
        return conn.execute(sa.text(sql), params).scalar_one()


def staging_tables() -> int:
    return scalar("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'staging'")


@pytest.mark.parametrize("feed_id", ["council_referrals", "police_ppn", "council_child_protection",
                                     "council_children_in_care", "health_icb", "education_exclusions",
                                     "youth_justice_kpis"])  # fmt: skip
def test_each_feed_rejects_its_defective_return_and_publishes_its_good_one(stack, demo_config, feed_id):
    feed = demo_config.feed(feed_id)
    dataset = demo_config.dataset(feed.dataset)
    codes, planted = DEFECT_CODES[dataset.id]

    send(stack, feed, synthetic.sample_return(dataset.id, PERIOD, seed=SEED, defects=True))
    assert [o["state"] for o in run(feed, demo_config)] == ["rejected"]
    errors = [f for f in latest_report(feed_id)["failures"] if f["severity"] == "error"]
    reported = {f["code"] for f in errors}
    assert reported >= codes if dataset.id in CONTRACTS_OWNED_ELSEWHERE else reported == codes
    planted_rows = {r for rows in planted.values() for r in rows}
    planted_rows |= {r - 1 for name in REPEATED_ROW_DEFECTS & set(planted) for r in planted[name]}
    for failure in (f for f in errors if f["code"] in codes):
        assert failure["row_numbers"] and set(failure["row_numbers"]) <= planted_rows, failure["code"]
    assert scalar(f"SELECT count(*) FROM {dataset.table}") == 0

    good = synthetic.sample_return(dataset.id, PERIOD, seed=SEED)
    send(stack, feed, good)
    (outcome,) = run(feed, demo_config)
    assert outcome["state"] == "published", latest_report(feed_id)
    published = scalar(
        f"SELECT count(*) FROM {dataset.table} WHERE feed_id = :f AND period_id = :p", f=feed_id, p=PERIOD.id
    )
    assert published == outcome["rows"] > 0
    if isinstance(good, list):
        assert published == len(good)
    lineage = scalar(
        f"SELECT count(*) FROM {dataset.table} WHERE file_id = :i AND length(file_sha256) = 64"
        " AND loaded_at IS NOT NULL AND row_number > 0",
        i=outcome["file_id"],
    )
    assert lineage == published
    for column in (c for c in dataset.loaded_columns if c.minimise == "pseudonymise"):
        assert scalar(f"SELECT count(*) FROM {dataset.table} WHERE length({column.name}) <> 64") == 0
    assert staging_tables() == 0


def test_windows_1252_bytes_in_a_utf8_feed_are_rejected_naming_the_rows(stack, demo_config):
    feed = demo_config.feed("council_child_protection")
    rows = synthetic.child_protection_rows(PERIOD, seed=SEED, n=60)
    rows[11]["child_name"] = "Zoë O’Farrow"  # row 12, saved by a program that wrote Windows-1252
    rows[40]["child_name"] = "Siân Núñez"  # row 41
    header = ",".join(synthetic.CHILD_PROTECTION_COLUMNS) + "\r\n"
    body = b"".join(
        ",".join(row.values()).encode("cp1252" if number in (12, 41) else "utf-8") + b"\r\n"
        for number, row in enumerate(rows, start=1)
    )
    send(stack, feed, header.encode() + body)
    assert [o["state"] for o in run(feed, demo_config)] == ["rejected"]
    (failure,) = latest_report(feed.id)["failures"]
    assert (failure["code"], failure["row_numbers"]) == ("FILE-001", [12, 41])
    with warehouse.engine().connect() as conn:
        text_body = conn.execute(
            sa.text("SELECT text_body FROM ops.notifications WHERE kind = 'rejection'")
        ).scalar_one()
    assert "FILE-001" in text_body and "12" in text_body and "Zo" not in text_body


def test_a_value_that_cannot_be_minimised_loads_nothing_of_the_file(stack, demo_config):
    feed = demo_config.feed("council_referrals")
    send(stack, feed, synthetic.referrals_csv(PERIOD, seed=SEED, n=50))
    (first,) = run(feed, demo_config)
    assert first["state"] == "published"

    rows = synthetic.referrals_rows(PERIOD, seed=SEED, n=60)
    rows[29]["postcode"] = "BK1 ABC"  # not a postcode: it can't become a sector
    rows[44]["child_id"] = "12345"  # an id that lost its leading zeros
    content = ",".join(synthetic.REFERRAL_COLUMNS) + "\n" + "".join(",".join(r.values()) + "\n" for r in rows)
    send(stack, feed, content.encode())
    assert [o["state"] for o in run(feed, demo_config)] == ["rejected"]
    failures = {(f["code"], tuple(f["columns"]), tuple(f["row_numbers"])) for f in latest_report(feed.id)["failures"]}
    assert failures == {("FLD-005", ("postcode",), (30,)), ("FLD-011", ("child_id",), (45,))}
    # Nothing of the rejected file reached the warehouse; what was published stays.
    assert scalar("SELECT count(*) FROM core.referrals") == 50
    assert scalar("SELECT count(DISTINCT file_id) FROM core.referrals") == 1
    assert scalar("SELECT min(file_id) FROM core.referrals") == first["file_id"]
    assert staging_tables() == 0


def test_an_invalid_nhs_number_is_never_staged(stack, demo_config, tmp_path):
    dataset = Dataset(
        id="health_records",
        title="A record-level health return",
        grain="record",
        table="core.health_records",
        key=("nhs_number",),
        columns=(Column(name="nhs_number", required=True, minimise="nhs_number"), Column(name="seen_on", type="date")),
    )
    feed = demo_config.feed("health_icb")
    path = tmp_path / "landed"
    path.write_bytes(b"nhs_number,seen_on\n943 476 5919,2026-07-03\n943 476 5918,2026-07-04\n")
    # A problem of one row: the file will be rejected, but its other rows are staged so the contract can
    # check them in the same round; the refused value is staged empty, never as it was.
    staged = reader.stage(warehouse.engine(), path=path, file_id=99, feed=feed, dataset=dataset, key=pseudonym_key())
    assert not staged.passed
    assert [(f["code"], f["row_numbers"]) for f in staged.failures] == [("FLD-004", [2])]
    with warehouse.engine().connect() as conn:
        staged_rows = conn.execute(sa.text(f"SELECT row_number, nhs_number FROM {staged.table} ORDER BY 1")).all()
    assert [(n, value is None) for n, value in staged_rows] == [(1, False), (2, True)]
    assert "943" not in repr(staged_rows) + repr(staged.failures)
    reader.drop_staging(warehouse.engine(), dataset, 99)
    assert staging_tables() == 0
    # A required column missing is a problem of the whole file: nothing is staged, and no row count.
    path.write_bytes(b"nhs_number,seen on day\n943 476 5919,2026-07-03\n")
    required = Column(name="seen_on", type="date", required=True)
    dataset = dataset.model_copy(update={"columns": (dataset.columns[0], required)})
    with pytest.raises(reader.FileRejected) as rejected:
        reader.stage(warehouse.engine(), path=path, file_id=99, feed=feed, dataset=dataset, key=pseudonym_key())
    assert [(f["code"], f["failing_rows"]) for f in rejected.value.report["failures"]] == [("FILE-002", 0)]
    assert staging_tables() == 0


def test_without_the_pseudonym_key_nothing_is_loaded(stack, demo_config, monkeypatch):
    feed = demo_config.feed("council_child_protection")
    send(stack, feed, synthetic.child_protection_csv(PERIOD, seed=SEED, n=40))
    file_ids = ingest.fetch(feed.id, config=demo_config)
    monkeypatch.delenv("PARTNERFLOW_PSEUDONYM_KEY")
    with pytest.raises(PseudonymKeyMissing):
        ingest.decide(feed.id, file_ids, config=demo_config)
    assert scalar("SELECT state FROM ops.received_files WHERE id = :i", i=file_ids[0]) == "received"
    assert scalar("SELECT count(*) FROM core.child_protection") == 0
    assert staging_tables() == 0
