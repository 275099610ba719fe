-- Front-door KPIs (council referrals and assessments). One view per KPI, named marts.kpi_<id>, in one of
-- the shapes partnerflow.report.kpis reads (see config.Kpi): counts are raw here; disclosure control
-- happens in the report, never in SQL.

-- The marts.kpi_values view of the first version is replaced by one view per KPI.
DROP VIEW IF EXISTS marts.kpi_values;

-- Referrals in the quarter by source, grouped as the CIN census groups its referral source codes.
CREATE OR REPLACE VIEW marts.kpi_referrals AS
SELECT
    l.period_id,
    CASE substring(l.referral_source FROM '^[0-9]+')
        WHEN '1' THEN 'Individual'
        WHEN '2' THEN 'Schools'
        WHEN '3' THEN 'Health services'
        WHEN '4' THEN 'Housing'
        WHEN '5' THEN 'Local authority services'
        WHEN '6' THEN 'Police'
        WHEN '7' THEN 'Other legal agency'
        WHEN '9' THEN 'Anonymous'
        ELSE 'Other or unknown'
    END AS category,
    count(*) AS numerator
FROM marts.referrals_latest AS l
GROUP BY 1, 2;

CREATE OR REPLACE VIEW marts.kpi_re_referrals_12m AS
SELECT
    rr.period_id,
    count(*) FILTER (WHERE rr.re_referral) AS numerator,
    count(*) AS denominator
FROM marts.referral_flags AS rr
GROUP BY rr.period_id;

CREATE OR REPLACE VIEW marts.kpi_referrals_nfa AS
SELECT
    rr.period_id,
    count(*) FILTER (WHERE rr.nfa) AS numerator,
    count(*) AS denominator
FROM marts.referral_flags AS rr
GROUP BY rr.period_id;

-- Working days need the England and Wales bank holidays: the report counts them with the calendar that
-- sets due dates, so the warehouse keeps no second holiday list.
CREATE OR REPLACE VIEW marts.kpi_assessments_45wd AS
SELECT
    d.period_id,
    d.start_date,
    d.authorised_date AS end_date,
    d.assessments AS cases
FROM marts.assessment_durations AS d;
