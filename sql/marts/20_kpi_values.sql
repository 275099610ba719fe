-- One row per (kpi_id, period_id) for the KPIs computed in SQL: numerator, denominator (NULL for counts)
-- and value (a percentage 0-100, or the count). Values are raw: disclosure control happens in the report.
-- assessments_45wd is computed in partnerflow.report.kpis (working days need the bank-holiday calendar).
CREATE OR REPLACE VIEW marts.kpi_values AS
SELECT
    're_referrals_12m'::text AS kpi_id,
    rr.period_id,
    count(*) FILTER (WHERE rr.re_referral) AS numerator,
    count(*) AS denominator,
    100.0 * count(*) FILTER (WHERE rr.re_referral) / count(*) AS value
FROM marts.referral_flags AS rr
GROUP BY rr.period_id
UNION ALL
SELECT
    'referrals_nfa',
    rr.period_id,
    count(*) FILTER (WHERE rr.nfa),
    count(*),
    100.0 * count(*) FILTER (WHERE rr.nfa) / count(*)
FROM marts.referral_flags AS rr
GROUP BY rr.period_id
UNION ALL
SELECT
    'ppn_high_grade',
    p.period_id,
    coalesce(sum(p.value) FILTER (WHERE p.measure_code = 'PPN_CHILD' AND p.grade = 'H'), 0),
    NULL::bigint,
    coalesce(sum(p.value) FILTER (WHERE p.measure_code = 'PPN_CHILD' AND p.grade = 'H'), 0)
FROM core.police_ppn AS p
GROUP BY p.period_id
UNION ALL
SELECT
    'da_child_present',
    p.period_id,
    coalesce(sum(p.value) FILTER (WHERE p.measure_code = 'DA_CHILD_PRESENT'), 0),
    NULL::bigint,
    coalesce(sum(p.value) FILTER (WHERE p.measure_code = 'DA_CHILD_PRESENT'), 0)
FROM core.police_ppn AS p
GROUP BY p.period_id;
