-- Period arithmetic for the KPI marts. Quarter (2026Q3) and month (2026M10) ids only: school terms
-- depend on the partnership's configured term dates, so a mart over a termly feed works from dates.

CREATE OR REPLACE FUNCTION marts.period_start(period_id text) RETURNS date
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE substr(period_id, 5, 1)
        WHEN 'Q' THEN make_date(left(period_id, 4)::int, 3 * substr(period_id, 6)::int - 2, 1)
        WHEN 'M' THEN make_date(left(period_id, 4)::int, substr(period_id, 6)::int, 1)
    END
$$;

CREATE OR REPLACE FUNCTION marts.period_end(period_id text) RETURNS date
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE substr(period_id, 5, 1)
        WHEN 'Q' THEN (marts.period_start(period_id) + interval '3 months' - interval '1 day')::date
        WHEN 'M' THEN (marts.period_start(period_id) + interval '1 month' - interval '1 day')::date
    END
$$;
