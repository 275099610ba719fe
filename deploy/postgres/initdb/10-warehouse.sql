-- The warehouse: its own database, owned by its own login role, beside Airflow's metadata database.
-- The postgres image runs this once, when its data volume is first initialised, as the superuser
-- connected to the "airflow" database. The password comes from WAREHOUSE_DB_PASSWORD in the
-- container's environment; without it initialisation stops here and the container does not start.
\getenv warehouse_password WAREHOUSE_DB_PASSWORD
\if :{?warehouse_password}
\else
  DO $$ BEGIN RAISE EXCEPTION 'WAREHOUSE_DB_PASSWORD is not set'; END $$;
\endif

CREATE ROLE partnerflow LOGIN PASSWORD :'warehouse_password';
CREATE DATABASE warehouse OWNER partnerflow;

-- Each role sees only its own database.
REVOKE ALL ON DATABASE warehouse FROM PUBLIC;
REVOKE ALL ON DATABASE airflow FROM PUBLIC;
