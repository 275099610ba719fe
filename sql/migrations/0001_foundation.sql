-- The warehouse: ops (control plane), staging (one table per received file), core (published slices), marts.
CREATE SCHEMA IF NOT EXISTS ops;
CREATE SCHEMA IF NOT EXISTS staging;
CREATE SCHEMA IF NOT EXISTS core;
CREATE SCHEMA IF NOT EXISTS marts;

-- Every file or API response received, and the one state it is in now.
CREATE TABLE ops.received_files (
    id              bigserial PRIMARY KEY,
    feed_id         text NOT NULL,
    period_id       text NOT NULL,
    source_name     text NOT NULL,          -- the partner's file name or the API endpoint, for people to read
    source_size     bigint,
    source_mtime    timestamptz,
    sha256          char(64) NOT NULL,
    landed_path     text NOT NULL,          -- relative to the landing folder; content-addressed, immutable
    received_at     timestamptz NOT NULL DEFAULT now(),
    state           text NOT NULL DEFAULT 'received'
                    CHECK (state IN ('received', 'rejected', 'published', 'duplicate', 'superseded', 'failed')),
    state_reason    text,
    state_at        timestamptz NOT NULL DEFAULT now(),
    duplicate_of    bigint REFERENCES ops.received_files (id),
    row_count       integer
);
-- The same bytes for the same feed are recorded once; a second arrival is a 'duplicate' row pointing at it.
CREATE UNIQUE INDEX received_files_feed_sha256 ON ops.received_files (feed_id, sha256) WHERE state <> 'duplicate';
CREATE INDEX received_files_slice ON ops.received_files (feed_id, period_id);

-- Every state change of a received file, with time and reason.
CREATE TABLE ops.file_events (
    id          bigserial PRIMARY KEY,
    file_id     bigint NOT NULL REFERENCES ops.received_files (id),
    state       text NOT NULL,
    reason      text,
    at          timestamptz NOT NULL DEFAULT now()
);

-- One row per feed x period: where that return stands.
CREATE TABLE ops.submissions (
    feed_id             text NOT NULL,
    period_id           text NOT NULL,
    due_date            date NOT NULL,
    state               text NOT NULL DEFAULT 'expected'
                        CHECK (state IN ('expected', 'received', 'rejected', 'published')),
    first_received_at   timestamptz,
    published_at        timestamptz,
    published_file_id   bigint REFERENCES ops.received_files (id),
    rows_published      integer,
    first_time_pass     boolean,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (feed_id, period_id)
);

-- The result of checking one file against its contract: rule codes, columns, counts, row numbers. No values.
CREATE TABLE ops.validation_reports (
    file_id     bigint PRIMARY KEY REFERENCES ops.received_files (id),
    passed      boolean NOT NULL,
    report      jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- The notification outbox: one row per message, written with the state change that causes it.
CREATE TABLE ops.notifications (
    id                  bigserial PRIMARY KEY,
    key                 text NOT NULL UNIQUE,
    kind                text NOT NULL,
    feed_id             text,
    period_id           text,
    recipients          jsonb NOT NULL,
    cc                  jsonb NOT NULL DEFAULT '[]',
    subject             text NOT NULL,
    text_body           text NOT NULL,
    html_body           text NOT NULL,
    attachments         jsonb NOT NULL DEFAULT '[]',
    created_at          timestamptz NOT NULL DEFAULT now(),
    state               text NOT NULL DEFAULT 'pending'
                        CHECK (state IN ('pending', 'sent', 'dead', 'blocked')),
    attempts            integer NOT NULL DEFAULT 0,
    next_attempt_at     timestamptz NOT NULL DEFAULT now(),
    sent_at             timestamptz,
    provider_message_id text,
    last_error          text
);
CREATE INDEX notifications_due ON ops.notifications (next_attempt_at) WHERE state = 'pending';

-- Lineage columns every core table carries.
CREATE TABLE core.referrals (
    feed_id                     text NOT NULL,
    period_id                   text NOT NULL,
    file_id                     bigint NOT NULL REFERENCES ops.received_files (id),
    file_sha256                 char(64) NOT NULL,
    row_number                  integer NOT NULL,
    loaded_at                   timestamptz NOT NULL DEFAULT now(),
    referral_id                 text NOT NULL,
    child_id                    text NOT NULL,
    date_of_birth               date,
    postcode                    text,
    referral_date               date NOT NULL,
    referral_source             text NOT NULL,
    nfa                         text NOT NULL,
    assessment_start_date       date,
    assessment_authorised_date  date,
    PRIMARY KEY (feed_id, period_id, referral_id)
);

CREATE TABLE core.police_ppn (
    feed_id         text NOT NULL,
    period_id       text NOT NULL,
    file_id         bigint NOT NULL REFERENCES ops.received_files (id),
    file_sha256     char(64) NOT NULL,
    row_number      integer NOT NULL,
    loaded_at       timestamptz NOT NULL DEFAULT now(),
    measure_code    text NOT NULL,
    grade           text NOT NULL,
    value           integer NOT NULL,
    PRIMARY KEY (feed_id, period_id, measure_code, grade)
);
