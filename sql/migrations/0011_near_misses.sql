-- Near-miss uploads: a file in a feed's SFTP drop whose name nearly matches the feed's pattern (an upper-case
-- extension, a leading '-', a look-alike letter, the period written another way, non-ASCII digits). It is
-- never downloaded, but recorded once, with why it was left alone and the name that was expected, so the
-- partner (told once, by the outbox message named here) and the engineers can see it.
CREATE TABLE ops.ignored_files (
    id                  bigserial PRIMARY KEY,
    feed_id             text NOT NULL,
    period_id           text NOT NULL,          -- the period the name seems meant for, else the one being collected
    source_name         text NOT NULL,
    state               text NOT NULL DEFAULT 'ignored' CHECK (state = 'ignored'),
    reason              text NOT NULL,
    expected_name       text NOT NULL,
    seen_at             timestamptz NOT NULL,
    notification_key    text,
    UNIQUE (feed_id, source_name)
);
CREATE INDEX ignored_files_slice ON ops.ignored_files (feed_id, period_id);
