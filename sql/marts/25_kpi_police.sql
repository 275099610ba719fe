-- Police KPIs, from the police return's aggregates.

CREATE OR REPLACE VIEW marts.kpi_ppn_children AS
SELECT
    p.period_id,
    CASE p.grade WHEN 'H' THEN 'High' WHEN 'M' THEN 'Medium' WHEN 'L' THEN 'Low' ELSE 'Not graded' END AS category,
    sum(p.value) AS numerator
FROM core.police_ppn AS p
WHERE p.measure_code = 'PPN_CHILD'
GROUP BY 1, 2;

CREATE OR REPLACE VIEW marts.kpi_da_child_present AS
SELECT
    p.period_id,
    coalesce(sum(p.value) FILTER (WHERE p.measure_code = 'DA_CHILD_PRESENT'), 0) AS numerator
FROM core.police_ppn AS p
GROUP BY p.period_id;
