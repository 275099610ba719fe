-- Referral-level marts behind the front-door KPIs. Re-run on every migrate: CREATE OR REPLACE only
-- (a view's existing columns can't change; new ones go at the end).

-- Each referral once, as its partner's latest return states it (a referral can appear in several
-- periods' returns, e.g. when its assessment is authorised a quarter later), with the quarter its
-- referral date falls in and the quarter its assessment was authorised in.
CREATE OR REPLACE VIEW marts.referrals_latest AS
SELECT DISTINCT ON (r.referral_id)
    r.referral_id,
    r.child_id,
    r.referral_date,
    to_char(r.referral_date, 'YYYY"Q"Q') AS period_id,
    r.nfa,
    r.assessment_start_date,
    r.assessment_authorised_date,
    to_char(r.assessment_authorised_date, 'YYYY"Q"Q') AS assessment_period_id,
    r.feed_id,
    r.period_id AS return_period_id,
    r.referral_source
FROM core.referrals AS r
ORDER BY r.referral_id, r.period_id DESC, r.loaded_at DESC;

-- Per referral: whether it came within 12 months of an earlier referral for the same child, and NFA
-- (child_id is a pseudonym that is stable across returns).
CREATE OR REPLACE VIEW marts.referral_flags AS
SELECT
    l.referral_id,
    l.period_id,
    count(*) OVER (
        PARTITION BY l.child_id
        ORDER BY l.referral_date
        RANGE BETWEEN INTERVAL '12 months' PRECEDING AND INTERVAL '1 day' PRECEDING
    ) > 0 AS re_referral,
    l.nfa = 'Y' AS nfa
FROM marts.referrals_latest AS l;

-- Authorised assessments counted by (start date, authorised date), with no child-level columns.
-- Assessments authorised before they started are data errors and are left out.
CREATE OR REPLACE VIEW marts.assessment_durations AS
SELECT
    l.assessment_period_id AS period_id,
    l.assessment_start_date AS start_date,
    l.assessment_authorised_date AS authorised_date,
    count(*) AS assessments
FROM marts.referrals_latest AS l
WHERE l.assessment_authorised_date IS NOT NULL
  AND l.assessment_start_date IS NOT NULL
  AND l.assessment_start_date <= l.assessment_authorised_date
GROUP BY 1, 2, 3;
