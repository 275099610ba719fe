-- Core tables become partitioned by received file (LIST on file_id), one partition per published file.
-- Publishing attaches the file's staged table as its partition (see partnerflow/partitions.py) instead of
-- inserting a million rows into a keyed, foreign-keyed table.
--
-- A partitioned table's primary key would have to include file_id, so each partition carries a unique
-- index on the dataset's key instead: the key is unique within each published file, as it was within each
-- feed x period slice (a slice has one published file).
-- Marts views depend on these tables: they are dropped here and recreated after the migrations run.

CREATE FUNCTION pg_temp.partition_by_file(name text, key_columns text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    old_name text := name || '_unpartitioned';
    file bigint;
BEGIN
    EXECUTE format('ALTER TABLE core.%I RENAME TO %I', name, old_name);
    EXECUTE format(
        'CREATE TABLE core.%I (LIKE core.%I INCLUDING DEFAULTS) PARTITION BY LIST (file_id)', name, old_name
    );
    EXECUTE format('ALTER TABLE core.%I ADD FOREIGN KEY (file_id) REFERENCES ops.received_files (id)', name);
    FOR file IN EXECUTE format('SELECT DISTINCT file_id FROM core.%I', old_name) LOOP
        EXECUTE format(
            'CREATE TABLE core.%I PARTITION OF core.%I FOR VALUES IN (%s)', name || '_f' || file, name, file
        );
        EXECUTE format('CREATE UNIQUE INDEX ON core.%I (%s)', name || '_f' || file, key_columns);
    END LOOP;
    EXECUTE format('INSERT INTO core.%I SELECT * FROM core.%I', name, old_name);
    EXECUTE format('DROP TABLE core.%I CASCADE', old_name);
END;
$$;

SELECT pg_temp.partition_by_file('referrals', 'referral_id COLLATE "C"');
SELECT pg_temp.partition_by_file('police_ppn', 'measure_code COLLATE "C", grade COLLATE "C"');
SELECT pg_temp.partition_by_file('child_protection', 'plan_id COLLATE "C"');
SELECT pg_temp.partition_by_file('children_in_care', 'child_id COLLATE "C"');
SELECT pg_temp.partition_by_file('health_icb', 'measure_code COLLATE "C", age_band COLLATE "C"');
SELECT pg_temp.partition_by_file('exclusions', 'upn COLLATE "C", category COLLATE "C", start_date');
SELECT pg_temp.partition_by_file('yjb_kpis', 'kpi_code COLLATE "C"');
