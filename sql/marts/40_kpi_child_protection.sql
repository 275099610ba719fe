-- Child protection KPIs, from the council's List 7 return: each quarter's return lists the plans open at
-- any time in the quarter, so each KPI reads the return for its own period.

-- Initial child protection conferences held in the quarter, from the section 47 enquiry's start to the
-- conference (counted in working days by the report). Conferences recorded before the enquiry started
-- are data errors and are left out.
CREATE OR REPLACE VIEW marts.kpi_icpc_15wd AS
SELECT
    c.period_id,
    c.s47_start_date AS start_date,
    c.icpc_date AS end_date,
    count(*) AS cases
FROM core.child_protection AS c
WHERE c.icpc_date BETWEEN marts.period_start(c.period_id) AND marts.period_end(c.period_id)
  AND c.s47_start_date IS NOT NULL
  AND c.s47_start_date <= c.icpc_date
GROUP BY 1, 2, 3;

-- Plans that ended in the quarter having lasted two years or more, of all plans that ended in it.
CREATE OR REPLACE VIEW marts.kpi_cp_plans_2yrs AS
SELECT
    c.period_id,
    count(*) FILTER (WHERE c.plan_end_date >= c.plan_start_date + interval '2 years') AS numerator,
    count(*) AS denominator
FROM core.child_protection AS c
WHERE c.plan_end_date BETWEEN marts.period_start(c.period_id) AND marts.period_end(c.period_id)
GROUP BY c.period_id;

-- Plans that started in the quarter for a child who had been on a plan before, of all plans started.
CREATE OR REPLACE VIEW marts.kpi_cp_second_plans AS
SELECT
    c.period_id,
    count(*) FILTER (WHERE c.previous_plans > 0) AS numerator,
    count(*) AS denominator
FROM core.child_protection AS c
WHERE c.plan_start_date BETWEEN marts.period_start(c.period_id) AND marts.period_end(c.period_id)
GROUP BY c.period_id;

-- Children on a plan at the end of the quarter, by the plan's initial category of abuse.
CREATE OR REPLACE VIEW marts.kpi_cp_plans_by_category AS
SELECT
    c.period_id,
    CASE c.category_of_abuse
        WHEN 'N' THEN 'Neglect'
        WHEN 'E' THEN 'Emotional abuse'
        WHEN 'P' THEN 'Physical abuse'
        WHEN 'S' THEN 'Sexual abuse'
        ELSE 'Multiple categories'
    END AS category,
    count(*) AS numerator
FROM core.child_protection AS c
WHERE c.plan_end_date IS NULL OR c.plan_end_date > marts.period_end(c.period_id)
GROUP BY 1, 2;
