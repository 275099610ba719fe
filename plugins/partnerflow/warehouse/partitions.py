"""Core tables are partitioned by received file: publishing a file makes its staged table a partition.

``swap_in`` turns ``staging.<dataset>_f<id>`` into ``core.<table>_f<id>`` (lineage columns added, NOT NULLs
and the key's unique index as the core table needs them), detaches and drops the partition of the file it
replaces, and attaches the new one, inside the caller's transaction: readers see the old slice or the new
one, never both and never neither.

Pitfalls:
    The core table is locked exclusively for the swap itself. Without that lock a reading transaction
    that started earlier keeps its old list of partitions: it would miss the new partition but see the
    old one emptied. Everything that reads every row (NOT NULL checks, the unique index) is done on the
    staged table first, so the lock is held for the catalog changes and the ledger update only.
    The lock waits behind reading transactions that are open, and readers arriving meanwhile queue behind
    it, so it is tried with a timeout (``LOCK_TIMEOUT``). A reader that keeps a transaction open longer
    fails the publish with TableBusy; nothing changes, and the task's retry tries again.
    There is no default partition: an attach would have to scan and lock it.
    The lineage columns are added with constant defaults, which PostgreSQL records once in the catalog
    instead of writing them into every row.
    A duplicate key makes the unique index fail. Its message would show the key values (pseudonyms, or
    codes), so the error raised here names the table and the key columns only. The contract checks
    keys first, so this is a second line of defence.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from partnerflow.core.config import Dataset

# Enough for a sort of a few million keys in memory; only for this transaction.
INDEX_MEMORY = "256MB"
LOCK_TIMEOUT = "10s"


class DuplicateKey(RuntimeError):
    """The staged file has a key twice; nothing was published."""


class TableBusy(RuntimeError):
    """A reader held the core table for longer than LOCK_TIMEOUT; nothing was published."""


def partition_name(table: str, file_id: int) -> str:
    """``core.referrals_f12``: the partition of ``table`` that holds the published rows of file 12."""
    return f"{table}_f{int(file_id)}"


def create(conn: Connection, table: str, file_id: int) -> str:
    """An empty partition of ``table`` for ``file_id``, for rows written directly (fixtures, backfills)."""
    partition = partition_name(table, file_id)
    conn.execute(sa.text(f"CREATE TABLE IF NOT EXISTS {partition} PARTITION OF {table} FOR VALUES IN ({int(file_id)})"))
    return partition


def swap_in(
    conn: Connection,
    dataset: Dataset,
    *,
    staging: str,
    file_id: int,
    feed_id: str,
    period_id: str,
    sha256: str,
    loaded_at: str,
    replacing: int | None,
) -> None:
    """Publish the staged table of ``file_id`` as its partition, in place of ``replacing``'s partition."""
    _complete(
        conn, dataset, staging, file_id=file_id, feed_id=feed_id, period_id=period_id, sha256=sha256, at=loaded_at
    )
    _index_key(conn, dataset, staging)
    partition = partition_name(dataset.table, file_id)
    schema, name = partition.split(".")
    conn.execute(sa.text(f"ALTER TABLE {staging} SET SCHEMA {schema}"))
    staged_name = staging.split(".")[1]
    if staged_name != name:
        conn.execute(sa.text(f"ALTER TABLE {schema}.{staged_name} RENAME TO {name}"))
    _lock(conn, dataset.table)
    if replacing is not None:
        old = partition_name(dataset.table, replacing)
        if conn.execute(sa.text("SELECT to_regclass(:t)"), {"t": old}).scalar() is not None:
            conn.execute(sa.text(f"ALTER TABLE {dataset.table} DETACH PARTITION {old}"))
            conn.execute(sa.text(f"DROP TABLE {old}"))
    conn.execute(sa.text(f"ALTER TABLE {dataset.table} ATTACH PARTITION {partition} FOR VALUES IN ({int(file_id)})"))


def _lock(conn: Connection, table: str) -> None:
    conn.execute(sa.text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
    try:
        conn.execute(sa.text(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
    except sa.exc.OperationalError as exc:
        if getattr(exc.orig, "sqlstate", None) != "55P03":  # lock_not_available
            raise
        raise TableBusy(
            f"{table} was being read by a transaction open for more than {LOCK_TIMEOUT}; nothing was published"
            " and the task's retry will try again (readers should not hold transactions open)"
        ) from None
    conn.execute(sa.text("RESET lock_timeout"))


def _complete(
    conn: Connection,
    dataset: Dataset,
    staging: str,
    *,
    file_id: int,
    feed_id: str,
    period_id: str,
    sha256: str,
    at: str,
) -> None:
    """Give the staged table what a partition of the core table needs, in one statement (so one scan): the
    lineage columns, the one-file CHECK, and NOT NULL where the core table has it."""
    # DDL takes no bind parameters: the values are quoted by PostgreSQL itself (quote_literal).
    feed, period, digest, loaded = conn.execute(
        sa.text("SELECT quote_literal(:f), quote_literal(:p), quote_literal(:h), quote_literal(:at)"),
        {"f": feed_id, "p": period_id, "h": sha256, "at": at},
    ).one()
    required = conn.execute(
        sa.text(
            "SELECT attname FROM pg_attribute WHERE attrelid = CAST(:t AS regclass) AND attnum > 0"
            " AND NOT attisdropped AND attnotnull ORDER BY attnum"
        ),
        {"t": dataset.table},
    ).scalars()
    staged = {c.name for c in dataset.loaded_columns} | {"row_number"}
    clauses = [
        f"ADD COLUMN feed_id text NOT NULL DEFAULT {feed}",
        f"ADD COLUMN period_id text NOT NULL DEFAULT {period}",
        f"ADD COLUMN file_id bigint NOT NULL DEFAULT {int(file_id)}",
        f"ADD COLUMN file_sha256 char(64) NOT NULL DEFAULT {digest}",
        f"ADD COLUMN loaded_at timestamptz NOT NULL DEFAULT {loaded}::timestamptz",
        f"ADD CONSTRAINT one_file CHECK (file_id = {int(file_id)})",
        *(f"ALTER COLUMN {column} SET NOT NULL" for column in required if column in staged),
    ]
    conn.execute(sa.text(f"ALTER TABLE {staging} {', '.join(clauses)}"))


def _index_key(conn: Connection, dataset: Dataset, staging: str) -> None:
    types = {c.name: c.type for c in dataset.loaded_columns}
    columns = ", ".join(f'{k} COLLATE "C"' if types[k] in ("text", "code") else k for k in dataset.key)
    conn.execute(sa.text(f"SET LOCAL maintenance_work_mem = '{INDEX_MEMORY}'"))
    try:
        conn.execute(sa.text(f"CREATE UNIQUE INDEX ON {staging} ({columns})"))
    except sa.exc.IntegrityError:
        raise DuplicateKey(
            f"{staging} holds a key ({', '.join(dataset.key)}) more than once; nothing was published"
        ) from None
