-- Data quality of every checked file and every submission (feed x period), for the Board's partner
-- timeliness and quality measure. Derived from the reports publish and quarantine store in
-- ops.validation_reports (rule codes, severities, counts, row numbers: no values), so nothing new is written
-- at decision time and every decision since the first migration is covered. Timeliness (due date, when
-- received and published) is in marts.submission_status.

-- One row per file that was decided with a report (published, rejected, or superseded before publishing).
-- stage: where it was decided: 'contract' (the GX suite), 'intake' (could not be read), or another stage a
-- report names. rows_with_warnings counts distinct listed rows; when a warning lists only its first 1,000 rows
-- it is at least that warning's failing_rows.
CREATE OR REPLACE VIEW marts.file_quality AS
SELECT
    f.id AS file_id,
    f.feed_id,
    f.period_id,
    f.received_at,
    f.state,
    r.passed,
    coalesce(r.report ->> 'stage', 'contract') AS stage,
    coalesce((r.report ->> 'rules_checked')::integer, 0) AS rules_checked,
    greatest(coalesce((r.report ->> 'rules_checked')::integer, 0) - failed.rules, 0) AS rules_passed,
    failed.errors AS error_rules_failed,
    failed.warnings AS warning_rules_failed,
    coalesce((r.report ->> 'rows_checked')::integer, 0) AS rows_checked,
    greatest(warned.listed_rows, failed.max_warning_rows) AS rows_with_warnings,
    failed.error_codes,
    failed.warning_codes
FROM ops.validation_reports AS r
JOIN ops.received_files AS f ON f.id = r.file_id
CROSS JOIN LATERAL (
    SELECT
        count(DISTINCT x.failure ->> 'code')::integer AS rules,
        count(DISTINCT x.failure ->> 'code') FILTER (WHERE x.severity = 'error')::integer AS errors,
        count(DISTINCT x.failure ->> 'code') FILTER (WHERE x.severity = 'warning')::integer AS warnings,
        coalesce(max((x.failure ->> 'failing_rows')::integer) FILTER (WHERE x.severity = 'warning'), 0)
            AS max_warning_rows,
        coalesce(array_agg(DISTINCT x.failure ->> 'code') FILTER (WHERE x.severity = 'error'), '{}')
            AS error_codes,
        coalesce(array_agg(DISTINCT x.failure ->> 'code') FILTER (WHERE x.severity = 'warning'), '{}')
            AS warning_codes
    FROM (
        SELECT failure, coalesce(failure ->> 'severity', 'error') AS severity
        FROM jsonb_array_elements(coalesce(r.report -> 'failures', '[]'::jsonb)) AS failure
    ) AS x
) AS failed
CROSS JOIN LATERAL (
    SELECT count(DISTINCT n.number)::integer AS listed_rows
    FROM jsonb_array_elements(coalesce(r.report -> 'failures', '[]'::jsonb)) AS w(failure)
    CROSS JOIN LATERAL jsonb_array_elements_text(coalesce(w.failure -> 'row_numbers', '[]'::jsonb)) AS n(number)
    WHERE w.failure ->> 'severity' = 'warning'
) AS warned;

-- One row per submission: whether it passed first time, how many files it took, and the quality of the file
-- that stands for it (the published one, else the latest checked).
CREATE OR REPLACE VIEW marts.submission_quality AS
SELECT
    s.feed_id,
    s.period_id,
    s.state,
    s.first_time_pass,
    coalesce(files.checked, 0) AS files_checked,
    coalesce(files.rejected, 0) AS files_rejected,
    q.file_id,
    q.stage,
    q.rules_checked,
    q.rules_passed,
    q.error_rules_failed,
    q.warning_rules_failed,
    q.rows_checked,
    q.rows_with_warnings,
    q.warning_codes
FROM ops.submissions AS s
LEFT JOIN LATERAL (
    SELECT count(*)::integer AS checked, count(*) FILTER (WHERE NOT fq.passed)::integer AS rejected
    FROM marts.file_quality AS fq
    WHERE fq.feed_id = s.feed_id AND fq.period_id = s.period_id
) AS files ON true
LEFT JOIN LATERAL (
    SELECT fq.*
    FROM marts.file_quality AS fq
    WHERE fq.feed_id = s.feed_id AND fq.period_id = s.period_id
    ORDER BY fq.file_id = s.published_file_id DESC NULLS LAST, fq.file_id DESC
    LIMIT 1
) AS q ON true;
