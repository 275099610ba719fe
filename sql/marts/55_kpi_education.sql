-- Education KPIs, from the suspensions and exclusions return (one row per suspension or exclusion
-- starting in the period).

CREATE OR REPLACE VIEW marts.kpi_suspensions_exclusions AS
SELECT
    e.period_id,
    CASE e.category
        WHEN 'PERM' THEN 'Permanent exclusions'
        WHEN 'FIXD' THEN 'Suspensions'
        WHEN 'LNCH' THEN 'Lunchtime suspensions'
        ELSE 'Other'
    END AS category,
    count(*) AS numerator
FROM core.exclusions AS e
GROUP BY 1, 2;
