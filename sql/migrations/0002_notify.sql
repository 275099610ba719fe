-- Notifications: progress of a message split across several SendGrid requests, and a log of every attempt.

-- How many recipient chunks (at most 1,000 addresses each) SendGrid has already accepted, so a retry after a
-- partial success sends only the rest.
ALTER TABLE ops.notifications ADD COLUMN chunks_sent integer NOT NULL DEFAULT 0;

-- One row each time the sender handled a message: what happened and why. Recipients stay on the message row.
CREATE TABLE ops.notification_attempts (
    id                  bigserial PRIMARY KEY,
    notification_id     bigint NOT NULL REFERENCES ops.notifications (id),
    attempted_at        timestamptz NOT NULL DEFAULT now(),
    outcome             text NOT NULL CHECK (outcome IN ('sent', 'retry', 'dead', 'blocked')),
    status_code         integer,
    provider_message_id text,
    detail              text
);
CREATE INDEX notification_attempts_notification ON ops.notification_attempts (notification_id);
