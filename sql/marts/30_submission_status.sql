-- Where each feed's return stands for each period, for the Board pack's data-completeness section.
-- The partner comes from the configuration (feed -> partner), which the report joins in Python.
-- Dates are UK dates, as due dates are.
CREATE OR REPLACE VIEW marts.submission_status AS
SELECT
    s.feed_id,
    s.period_id,
    s.state,
    s.due_date,
    (s.first_received_at AT TIME ZONE 'Europe/London')::date AS first_received_on,
    (s.published_at AT TIME ZONE 'Europe/London')::date AS published_on,
    (pf.received_at AT TIME ZONE 'Europe/London')::date AS published_file_received_on,
    s.first_time_pass,
    s.rows_published,
    coalesce(f.files_received, 0) AS files_received,
    coalesce(f.files_rejected, 0) AS files_rejected
FROM ops.submissions AS s
LEFT JOIN ops.received_files AS pf ON pf.id = s.published_file_id
LEFT JOIN (
    SELECT
        feed_id,
        period_id,
        count(*) FILTER (WHERE state <> 'duplicate') AS files_received,
        count(*) FILTER (WHERE state = 'rejected') AS files_rejected
    FROM ops.received_files
    GROUP BY feed_id, period_id
) AS f ON f.feed_id = s.feed_id AND f.period_id = s.period_id;
