"""Publishing swaps a staged table in as its file's partition of the core table."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from partnerflow.intake.reader import SQL_TYPES
from partnerflow.warehouse import partitions


def test_every_dataset_stages_the_column_types_of_its_core_table(engine, demo_config):
    with engine.connect() as conn:
        for dataset in demo_config.datasets:
            core = dict(
                conn.execute(
                    sa.text(
                        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
                        " WHERE attrelid = CAST(:t AS regclass) AND attnum > 0 AND NOT attisdropped"
                    ),
                    {"t": dataset.table},
                ).all()
            )
            staged = {c.name: SQL_TYPES[c.type] for c in dataset.loaded_columns}
            assert {name: core[name] for name in staged} == staged, dataset.id


def test_a_duplicate_key_publishes_nothing_and_the_error_shows_no_key_value(engine, demo_config):
    dataset = demo_config.dataset("police_ppn")
    with engine.begin() as conn:
        file_id = conn.execute(
            sa.text(
                "INSERT INTO ops.received_files (feed_id, period_id, source_name, sha256, landed_path, state)"
                " VALUES ('police_ppn', '2026Q3', 'p.json', repeat('d', 64), 'dd/x', 'received') RETURNING id"
            )
        ).scalar_one()
        conn.execute(
            sa.text(
                f"CREATE TABLE staging.police_ppn_f{file_id} AS SELECT n AS row_number,"
                " 'SECRET_CODE'::text AS measure_code, 'all'::text AS grade, 1::integer AS value"
                " FROM generate_series(1, 2) n"
            )
        )
    with pytest.raises(partitions.DuplicateKey) as raised, engine.begin() as conn:
        partitions.swap_in(
            conn,
            dataset,
            staging=f"staging.police_ppn_f{file_id}",
            file_id=file_id,
            feed_id="police_ppn",
            period_id="2026Q3",
            sha256="d" * 64,
            loaded_at="2026-10-01T09:00:00+00:00",
            replacing=None,
        )
    assert "SECRET_CODE" not in str(raised.value) and raised.value.__cause__ is None
    with engine.connect() as conn:
        assert (
            conn.execute(sa.text("SELECT count(*) FROM core.police_ppn WHERE file_id = :i"), {"i": file_id}).scalar()
            == 0
        )
        assert conn.execute(sa.text(f"SELECT count(*) FROM staging.police_ppn_f{file_id}")).scalar() == 2
