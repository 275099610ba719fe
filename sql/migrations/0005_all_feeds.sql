-- Core tables for the rest of the demo partnership's returns (BRIEF §5). Each carries the lineage columns
-- core.referrals has: which feed x period slice, which received file and its sha256, row, and load time.

-- Council: child protection plans open at any time in the period (Annex A List 7 shape).
CREATE TABLE core.child_protection (
    feed_id             text NOT NULL,
    period_id           text NOT NULL,
    file_id             bigint NOT NULL REFERENCES ops.received_files (id),
    file_sha256         char(64) NOT NULL,
    row_number          integer NOT NULL,
    loaded_at           timestamptz NOT NULL DEFAULT now(),
    plan_id             text NOT NULL,
    child_id            text NOT NULL,
    date_of_birth       date,
    s47_start_date      date,
    icpc_date           date,
    plan_start_date     date NOT NULL,
    plan_end_date       date,
    category_of_abuse   text NOT NULL,
    previous_plans      integer NOT NULL,
    PRIMARY KEY (feed_id, period_id, plan_id)
);

-- Council: children looked after at any time in the period (Annex A List 8 shape).
CREATE TABLE core.children_in_care (
    feed_id                         text NOT NULL,
    period_id                       text NOT NULL,
    file_id                         bigint NOT NULL REFERENCES ops.received_files (id),
    file_sha256                     char(64) NOT NULL,
    row_number                      integer NOT NULL,
    loaded_at                       timestamptz NOT NULL DEFAULT now(),
    child_id                        text NOT NULL,
    date_of_birth                   date,
    care_start_date                 date NOT NULL,
    care_end_date                   date,
    health_assessment_date          date,
    dental_check_date               date,
    missing_episodes                integer NOT NULL,
    absent_episodes                 integer NOT NULL,
    return_interview_offered_date   date,
    return_interview_accepted_date  date,
    PRIMARY KEY (feed_id, period_id, child_id)
);

-- Health (ICB): aggregate measures by age band.
CREATE TABLE core.health_icb (
    feed_id         text NOT NULL,
    period_id       text NOT NULL,
    file_id         bigint NOT NULL REFERENCES ops.received_files (id),
    file_sha256     char(64) NOT NULL,
    row_number      integer NOT NULL,
    loaded_at       timestamptz NOT NULL DEFAULT now(),
    measure_code    text NOT NULL,
    age_band        text NOT NULL,
    numerator       integer NOT NULL,
    denominator     integer NOT NULL,
    PRIMARY KEY (feed_id, period_id, measure_code, age_band)
);

-- Education: suspensions and permanent exclusions starting in the period, with the pupil's persistent
-- absence flag.
CREATE TABLE core.exclusions (
    feed_id             text NOT NULL,
    period_id           text NOT NULL,
    file_id             bigint NOT NULL REFERENCES ops.received_files (id),
    file_sha256         char(64) NOT NULL,
    row_number          integer NOT NULL,
    loaded_at           timestamptz NOT NULL DEFAULT now(),
    upn                 text NOT NULL,
    date_of_birth       date,
    postcode            text,
    school_urn          text NOT NULL,
    category            text NOT NULL,
    reason_code         text NOT NULL,
    start_date          date NOT NULL,
    sessions            integer,
    persistent_absence  text NOT NULL,
    PRIMARY KEY (feed_id, period_id, upn, category, start_date)
);

-- Youth justice: Youth Justice Board KPIs as numerator and denominator.
CREATE TABLE core.yjb_kpis (
    feed_id         text NOT NULL,
    period_id       text NOT NULL,
    file_id         bigint NOT NULL REFERENCES ops.received_files (id),
    file_sha256     char(64) NOT NULL,
    row_number      integer NOT NULL,
    loaded_at       timestamptz NOT NULL DEFAULT now(),
    kpi_code        text NOT NULL,
    numerator       integer NOT NULL,
    denominator     integer NOT NULL,
    PRIMARY KEY (feed_id, period_id, kpi_code)
);
