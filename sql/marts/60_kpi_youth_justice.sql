-- Youth justice KPIs, from the Youth Justice Board KPI return (numerator and denominator per KPI code).

CREATE OR REPLACE VIEW marts.kpi_yj_first_time_entrants AS
SELECT y.period_id, sum(y.numerator) AS numerator
FROM core.yjb_kpis AS y WHERE y.kpi_code = 'FTE' GROUP BY y.period_id;

CREATE OR REPLACE VIEW marts.kpi_yj_reoffending AS
SELECT y.period_id, sum(y.numerator) AS numerator, sum(y.denominator) AS denominator
FROM core.yjb_kpis AS y WHERE y.kpi_code = 'REOFFENDING' GROUP BY y.period_id;

CREATE OR REPLACE VIEW marts.kpi_yj_ete AS
SELECT y.period_id, sum(y.numerator) AS numerator, sum(y.denominator) AS denominator
FROM core.yjb_kpis AS y WHERE y.kpi_code = 'ETE' GROUP BY y.period_id;

CREATE OR REPLACE VIEW marts.kpi_yj_accommodation AS
SELECT y.period_id, sum(y.numerator) AS numerator, sum(y.denominator) AS denominator
FROM core.yjb_kpis AS y WHERE y.kpi_code = 'ACCOMMODATION' GROUP BY y.period_id;
