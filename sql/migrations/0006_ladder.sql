-- The reminder ladder's memory, engineers' incidents, and which failed messages the officer has been told of.

-- Each ladder stage of a feed x period, decided once: sent (its outbox key) or skipped (and why). A rerun,
-- a backfill or a clock change finds the stage here and does nothing again.
CREATE TABLE ops.ladder_steps (
    feed_id             text NOT NULL,
    period_id           text NOT NULL,
    stage               text NOT NULL,
    as_of               date NOT NULL,          -- the ladder day that reached the stage
    outcome             text NOT NULL CHECK (outcome IN ('sent', 'skipped')),
    reason              text,
    notification_key    text,
    decided_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (feed_id, period_id, stage)
);

-- Something failing for good: a DAG for a period, or the email provider. One open incident per name x period;
-- alerts repeat at most every cool-down, and a recovery message goes when it is resolved.
CREATE TABLE ops.incidents (
    id                  bigserial PRIMARY KEY,
    name                text NOT NULL,          -- a dag_id, or 'sendgrid'
    period_id           text NOT NULL DEFAULT '',
    opened_at           timestamptz NOT NULL,
    last_failure_at     timestamptz NOT NULL,
    failures            integer NOT NULL DEFAULT 1,
    failing             jsonb NOT NULL DEFAULT '[]',    -- what is failing now (task ids); resolved when empty
    last_detail         text,                   -- the task and the kind of error; never a value
    alerts              integer NOT NULL DEFAULT 0,
    last_alert_at       timestamptz,
    resolved_at         timestamptz
);
CREATE UNIQUE INDEX incidents_open ON ops.incidents (name, period_id) WHERE resolved_at IS NULL;

-- A dead or repeatedly failing message that the officer and engineers have been told of by the fallback route.
ALTER TABLE ops.notifications ADD COLUMN problem_reported_at timestamptz;
