-- Transport depth: archives and .done manifests on the ledger, and what the SFTP poller saw last time.

-- A file that came as a zip or gz archive: sha256/landed_path are the file inside it, these the archive as
-- received (both kept). declared_rows is the row count a .done manifest promised; publish checks it.
ALTER TABLE ops.received_files
    ADD COLUMN archive_sha256  char(64),
    ADD COLUMN archive_path    text,
    ADD COLUMN declared_rows   bigint;

-- The stable_size rule: a file is taken when a poll sees the same size and mtime an earlier poll saw.
-- Each poll is a separate run, so what the last one saw has to live here.
CREATE TABLE ops.sftp_sightings (
    feed_id         text NOT NULL,
    source_name     text NOT NULL,
    source_size     bigint NOT NULL,
    source_mtime    timestamptz NOT NULL,
    first_seen_at   timestamptz NOT NULL,   -- the first poll that saw this size and mtime
    last_seen_at    timestamptz NOT NULL,
    PRIMARY KEY (feed_id, source_name)
);

-- The same bytes as a file that is waiting, published or superseded are a duplicate. The same bytes as a
-- rejected file are decided again: a rejection may have been about its .done manifest, or a rule since fixed.
DROP INDEX ops.received_files_feed_sha256;
CREATE UNIQUE INDEX received_files_feed_sha256 ON ops.received_files (feed_id, sha256)
    WHERE state IN ('received', 'published', 'superseded');
