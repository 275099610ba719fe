-- Health KPIs, from the ICB's aggregate return (each measure by age band). NHS disclosure rules apply
-- in the report.

CREATE OR REPLACE VIEW marts.kpi_iha_20wd AS
SELECT h.period_id, sum(h.numerator) AS numerator, sum(h.denominator) AS denominator
FROM core.health_icb AS h
WHERE h.measure_code = 'IHA_20WD'
GROUP BY h.period_id;

CREATE OR REPLACE VIEW marts.kpi_rha_on_time AS
SELECT h.period_id, sum(h.numerator) AS numerator, sum(h.denominator) AS denominator
FROM core.health_icb AS h
WHERE h.measure_code = 'RHA_ON_TIME'
GROUP BY h.period_id;

CREATE OR REPLACE VIEW marts.kpi_ae_self_harm_u18 AS
SELECT h.period_id, 'Aged ' || h.age_band AS category, sum(h.numerator) AS numerator
FROM core.health_icb AS h
WHERE h.measure_code = 'AE_SELF_HARM_U18'
GROUP BY 1, 2;
