"""Upgrading a warehouse keeps its published data: migration 0010 partitions core tables by file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa

from partnerflow import warehouse


@pytest.fixture
def warehouse_before_partitions(fresh_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> sa.Engine:
    """A warehouse migrated up to 0009, holding two published referral returns and one police return."""
    earlier = tmp_path / "migrations"
    earlier.mkdir()
    for path in sorted(warehouse.MIGRATIONS_DIR.glob("*.sql")):
        if path.stem < "0010":
            shutil.copy(path, earlier)
    eng = sa.create_engine(fresh_database)
    with monkeypatch.context() as patch:
        patch.setattr(warehouse, "MIGRATIONS_DIR", earlier)
        warehouse.migrate(eng)
    with eng.begin() as conn:
        slices = (("council_referrals", "2026Q2"), ("council_referrals", "2026Q3"), ("police_ppn", "2026Q3"))
        for n, (feed, period) in enumerate(slices):
            conn.execute(
                sa.text(
                    "INSERT INTO ops.received_files (feed_id, period_id, source_name, sha256, landed_path, state)"
                    " VALUES (:f, :p, 'x.csv', repeat(:n, 64), 'aa/x', 'published')"
                ),
                {"f": feed, "p": period, "n": str(n)},
            )
        conn.execute(
            sa.text(
                "INSERT INTO core.referrals (feed_id, period_id, file_id, file_sha256, row_number, referral_id,"
                " child_id, referral_date, referral_source, nfa)"
                " SELECT 'council_referrals', period_id, id, sha256, n, 'r' || n, 'c' || n, date '2026-07-01', '6', 'N'"
                " FROM ops.received_files, generate_series(1, 3) n WHERE feed_id = 'council_referrals'"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO core.police_ppn (feed_id, period_id, file_id, file_sha256, row_number, measure_code,"
                " grade, value) SELECT 'police_ppn', period_id, id, sha256, 1, 'PPN_CHILDREN', 'all', 4"
                " FROM ops.received_files WHERE feed_id = 'police_ppn'"
            )
        )
    yield eng
    eng.dispose()


def test_upgrading_keeps_every_published_row_each_file_in_a_partition_of_its_own(warehouse_before_partitions):
    eng = warehouse_before_partitions
    with eng.connect() as conn:
        before = conn.execute(sa.text("SELECT * FROM core.referrals ORDER BY file_id, row_number")).all()

    assert "0010_partition_by_file" in warehouse.migrate(eng)

    with eng.connect() as conn:
        assert conn.execute(sa.text("SELECT * FROM core.referrals ORDER BY file_id, row_number")).all() == before
        partitions = conn.execute(
            sa.text(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                " WHERE i.inhparent = 'core.referrals'::regclass ORDER BY 1"
            )
        ).scalars()
        assert list(partitions) == ["referrals_f1", "referrals_f2"]
        assert conn.execute(sa.text("SELECT count(*) FROM core.police_ppn_f3")).scalar() == 1
        with pytest.raises(sa.exc.IntegrityError):  # the key stays unique within a file
            conn.execute(
                sa.text(
                    "INSERT INTO core.referrals (feed_id, period_id, file_id, file_sha256, row_number, referral_id,"
                    " child_id, referral_date, referral_source, nfa) VALUES ('council_referrals', '2026Q2', 1,"
                    " repeat('a', 64), 9, 'r1', 'c9', date '2026-07-01', '6', 'N')"
                )
            )
        conn.rollback()
        assert conn.execute(sa.text("SELECT count(*) FROM marts.referrals_latest")).scalar() >= 3
