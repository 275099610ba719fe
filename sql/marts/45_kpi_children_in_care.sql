-- Children in care KPIs, from the council's List 8 return (children looked after at any time in the
-- quarter, one row each).

-- Children in care at the end of the quarter who had been in care for 12 months or more, with a health
-- assessment in the 12 months before the quarter ended.
CREATE OR REPLACE VIEW marts.kpi_cic_health_assessment AS
SELECT
    c.period_id,
    count(*) FILTER (
        WHERE c.health_assessment_date > marts.period_end(c.period_id) - interval '12 months'
    ) AS numerator,
    count(*) AS denominator
FROM core.children_in_care AS c
WHERE (c.care_end_date IS NULL OR c.care_end_date > marts.period_end(c.period_id))
  AND c.care_start_date <= marts.period_end(c.period_id) - interval '12 months'
GROUP BY c.period_id;

-- Children who went missing in the quarter and were offered a return home interview. The return gives
-- no date for each missing episode, so the 72-hour test can't be applied here (see the KPI's method).
CREATE OR REPLACE VIEW marts.kpi_return_interviews AS
SELECT
    c.period_id,
    count(*) FILTER (WHERE c.return_interview_offered_date IS NOT NULL) AS numerator,
    count(*) AS denominator
FROM core.children_in_care AS c
WHERE c.missing_episodes > 0
GROUP BY c.period_id;
