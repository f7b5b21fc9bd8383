-- Ingest that no message can stop, and histograms whose size does not depend on the data.
--
-- 1. provider_events_dead_letters: the last resort of the consumer. A message that can be
--    neither stored nor copied to the dead-letter topic (not even as a bounded record: reason,
--    position, size, sha256 and a prefix) is recorded here, bounded the same way, and its
--    offset is committed. One row per (topic, partition, offset, consumer group): a redelivery
--    after a crash does not add a second.
--
-- 2. Bounded histogram bins: bin = ceil(ln(v) / ln 1.02) is clamped to [-1400, 1400], so a
--    histogram row holds at most 2,802 bins (those plus the zero bin) however many distinct
--    values arrive. Values in [1.02^-1400, 1.02^1400] (about [9e-13, 1.1e12]) keep the
--    documented relative error (a bin's mean is within 2 % of each of its values); smaller or
--    larger ones fall into the end bins, whose sums stay exact. Mirrored by
--    provider_events.analytics._model.bin_of (BIN_MIN, BIN_MAX). Existing histogram rows are
--    re-binned here (clamping is monotonic, so folding the out-of-range bins into the end bins
--    equals a rebuild from the raw rows).

CREATE TABLE provider_events_dead_letters (
    id               bigint       GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    recorded_at      timestamptz  NOT NULL DEFAULT now(),
    source_topic     text         NOT NULL,
    source_partition integer      NOT NULL,
    source_offset    bigint       NOT NULL,
    consumer_group   text         NOT NULL,
    reason           text         NOT NULL,
    error            text         NOT NULL,
    size_bytes       integer      NOT NULL,
    sha256           text         NOT NULL,
    key_prefix       bytea,
    value_prefix     bytea        NOT NULL,
    headers          jsonb        NOT NULL DEFAULT '[]'::jsonb,
    CONSTRAINT provider_events_dead_letters_position_key
        UNIQUE (source_topic, source_partition, source_offset, consumer_group)
);
COMMENT ON TABLE provider_events_dead_letters IS
    'Messages the consumer could neither store nor dead-letter to Kafka: position, reason, size, sha256 and the first 4 KiB (value_prefix); headers holds the original header names and sizes.';

CREATE OR REPLACE FUNCTION provider_events_bin(v float8) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT CASE WHEN v IS NULL THEN NULL WHEN v <= 0 THEN -1000000
                  ELSE least(1400, greatest(-1400, ceil(ln(v) * 50.4983497918439::float8)))::integer END $$;

DO $migrate$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT * FROM (VALUES
        ('provider_selection_hist_hourly', 'bucket_start, tenant_id, provider_name, model_name, metric', false),
        ('provider_selection_hist_daily', 'day_start, tenant_id, provider_name, model_name, metric', false),
        ('provider_selection_hist_hourly_all', 'bucket_start, provider_name, model_name, metric', false),
        ('provider_selection_hist_daily_all', 'day_start, provider_name, model_name, metric', false),
        ('provider_selection_hist_hourly_provider', 'bucket_start, provider_name, metric', true),
        ('provider_selection_hist_daily_provider', 'day_start, provider_name, metric', true),
        ('provider_selection_hist_hourly_tenant', 'bucket_start, tenant_id, provider_name, metric', true)
    ) AS x(name, keys, has_cum)
    LOOP
        EXECUTE format($sql$
            UPDATE %1$I x SET (bins, counts, sums%3$s) = (
                SELECT array_agg(b ORDER BY b), array_agg(n ORDER BY b), array_agg(s ORDER BY b)%4$s
                FROM (SELECT b, n, s, sum(n) OVER (ORDER BY b)::bigint AS c
                      FROM (SELECT CASE WHEN u.b = -1000000 THEN u.b
                                        ELSE least(1400, greatest(-1400, u.b)) END AS b,
                                   sum(u.n)::bigint AS n, sum(u.s) AS s
                            FROM unnest(x.bins, x.counts, x.sums) AS u(b, n, s)
                            GROUP BY 1) g) m)
            WHERE EXISTS (SELECT 1 FROM unnest(x.bins) AS u(b)
                          WHERE u.b <> -1000000 AND (u.b < -1400 OR u.b > 1400))
        $sql$, t.name, t.keys,
            CASE WHEN t.has_cum THEN ', cum' ELSE '' END,
            CASE WHEN t.has_cum THEN ', array_agg(c ORDER BY b)' ELSE '' END);
    END LOOP;
END
$migrate$;

-- 3. Cheaper rollups: the batch writer (the consumer) aggregates each batch itself, in one pass
--    over rows it has already decoded, and hands the rollups only the aggregates: per hour,
--    tenant, provider and model (provider_events_delta_roll), per reason (_reasons) and per
--    histogram bin (_bins), in temporary tables it fills with COPY inside the inserting
--    transaction, then calls provider_events_apply_deltas(). It sets the transaction-local
--    setting provider_events.rollups_by_writer = 'on' so the insert trigger steps aside for its
--    own statements. Every other INSERT (psql, a bulk load) still goes through the trigger; DELETE,
--    UPDATE and TRUNCATE are unchanged. The statement below is the 0003 one from hbins on, fed
--    by the aggregates instead of the raw rows (the aggregates are exactly what its e/hbins
--    CTEs computed: the same derivations, src/provider_events/analytics/_model.py).
CREATE OR REPLACE FUNCTION provider_events_rollups_on_insert() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    IF current_setting('provider_events.rollups_by_writer', true) = 'on' THEN
        RETURN NULL;  -- the writer folds this statement's rows in itself (apply_deltas)
    END IF;
    EXECUTE provider_events_rollup_statement('new_rows', 1);
    RETURN NULL;
END $$;
ALTER FUNCTION provider_events_rollups_on_insert() SET search_path FROM CURRENT;
ALTER FUNCTION provider_events_rollups_on_insert() SET work_mem = '64MB';

CREATE FUNCTION provider_events_apply_deltas() RETURNS void
    LANGUAGE plpgsql
AS $fn$
DECLARE
    done integer;
BEGIN
-- Static SQL: planned once per session (the plan of this statement costs ~0.3 s on a loaded
-- box, which EXECUTE would pay per batch); pg_temp is the calling session's own.
WITH roll AS (
    INSERT INTO provider_selection_rollup_hourly AS x
    SELECT h, tenant_id, provider_name, model_name, selections,
           cpt_n, cpt_sum, cpt_sumsq, cpt_min, cpt_max,
           lat_n, lat_sum, lat_sumsq, lat_min, lat_max,
           q_n, q_sum, q_sumsq, q_min, q_max,
           token_n, input_tokens, output_tokens, tokens, costed_n, cost_usd
    FROM pg_temp.provider_events_delta_roll
    ON CONFLICT (bucket_start, tenant_id, provider_name, model_name) DO UPDATE SET
        selections = x.selections + excluded.selections,
        cpt_n = x.cpt_n + excluded.cpt_n, cpt_sum = x.cpt_sum + excluded.cpt_sum,
        cpt_sumsq = x.cpt_sumsq + excluded.cpt_sumsq,
        cpt_min = least(x.cpt_min, excluded.cpt_min), cpt_max = greatest(x.cpt_max, excluded.cpt_max),
        lat_n = x.lat_n + excluded.lat_n, lat_sum = x.lat_sum + excluded.lat_sum,
        lat_sumsq = x.lat_sumsq + excluded.lat_sumsq,
        lat_min = least(x.lat_min, excluded.lat_min), lat_max = greatest(x.lat_max, excluded.lat_max),
        q_n = x.q_n + excluded.q_n, q_sum = x.q_sum + excluded.q_sum,
        q_sumsq = x.q_sumsq + excluded.q_sumsq,
        q_min = least(x.q_min, excluded.q_min), q_max = greatest(x.q_max, excluded.q_max),
        token_n = x.token_n + excluded.token_n,
        input_tokens = x.input_tokens + excluded.input_tokens,
        output_tokens = x.output_tokens + excluded.output_tokens,
        tokens = x.tokens + excluded.tokens,
        costed_n = x.costed_n + excluded.costed_n, cost_usd = x.cost_usd + excluded.cost_usd
), reasons AS (
    INSERT INTO provider_selection_reasons_hourly AS x
    SELECT h, tenant_id, provider_name, model_name, md5(reason)::uuid, min(reason), sum(selections)
    FROM pg_temp.provider_events_delta_reasons GROUP BY 1, 2, 3, 4, 5
    ON CONFLICT (bucket_start, tenant_id, provider_name, model_name, reason_md5)
    DO UPDATE SET selections = x.selections + excluded.selections
), hbins AS MATERIALIZED (
    SELECT h, tenant_id, provider_name, model_name, metric, bin, n, vs
    FROM pg_temp.provider_events_delta_bins
), hh AS (
    INSERT INTO provider_selection_hist_hourly AS x
    SELECT h, tenant_id, provider_name, model_name, metric,
           array_agg(bin ORDER BY bin), array_agg(n ORDER BY bin), array_agg(vs ORDER BY bin)
    FROM hbins GROUP BY 1, 2, 3, 4, 5
    ON CONFLICT (bucket_start, tenant_id, provider_name, model_name, metric) DO UPDATE
    SET (bins, counts, sums) = (SELECT * FROM provider_events_hist_merge(
        x.bins, x.counts, x.sums, excluded.bins, excluded.counts, excluded.sums))
), dbins AS MATERIALIZED (
    SELECT date_bin('1 day', h, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS d, tenant_id,
           provider_name, model_name, metric, bin, sum(n) AS n, sum(vs) AS vs
    FROM hbins GROUP BY 1, 2, 3, 4, 5, 6
), hd AS (
    INSERT INTO provider_selection_hist_daily AS x
    SELECT d, tenant_id, provider_name, model_name, metric,
           array_agg(bin ORDER BY bin), array_agg(n ORDER BY bin), array_agg(vs ORDER BY bin)
    FROM dbins GROUP BY 1, 2, 3, 4, 5
    ON CONFLICT (day_start, tenant_id, provider_name, model_name, metric) DO UPDATE
    SET (bins, counts, sums) = (SELECT * FROM provider_events_hist_merge(
        x.bins, x.counts, x.sums, excluded.bins, excluded.counts, excluded.sums))
), hha AS (
    INSERT INTO provider_selection_hist_hourly_all AS x
    SELECT h, provider_name, model_name, metric,
           array_agg(bin ORDER BY bin), array_agg(n ORDER BY bin), array_agg(vs ORDER BY bin)
    FROM (SELECT h, provider_name, model_name, metric, bin, sum(n) AS n, sum(vs) AS vs
          FROM hbins GROUP BY 1, 2, 3, 4, 5) a
    GROUP BY 1, 2, 3, 4
    ON CONFLICT (bucket_start, provider_name, model_name, metric) DO UPDATE
    SET (bins, counts, sums) = (SELECT * FROM provider_events_hist_merge(
        x.bins, x.counts, x.sums, excluded.bins, excluded.counts, excluded.sums))
), hda AS (
    INSERT INTO provider_selection_hist_daily_all AS x
    SELECT d, provider_name, model_name, metric,
           array_agg(bin ORDER BY bin), array_agg(n ORDER BY bin), array_agg(vs ORDER BY bin)
    FROM (SELECT d, provider_name, model_name, metric, bin, sum(n) AS n, sum(vs) AS vs
          FROM dbins GROUP BY 1, 2, 3, 4, 5) a
    GROUP BY 1, 2, 3, 4
    ON CONFLICT (day_start, provider_name, model_name, metric) DO UPDATE
    SET (bins, counts, sums) = (SELECT * FROM provider_events_hist_merge(
        x.bins, x.counts, x.sums, excluded.bins, excluded.counts, excluded.sums))
), hhp AS (
    INSERT INTO provider_selection_hist_hourly_provider AS x
    SELECT h, provider_name, metric, array_agg(bin ORDER BY bin), array_agg(n ORDER BY bin),
           array_agg(vs ORDER BY bin), array_agg(c ORDER BY bin)
    FROM (SELECT h, provider_name, metric, bin, n, vs,
                 sum(n) OVER (PARTITION BY h, provider_name, metric ORDER BY bin) AS c
          FROM (SELECT h, provider_name, metric, bin, sum(n) AS n, sum(vs) AS vs
                FROM hbins GROUP BY 1, 2, 3, 4) a) ac
    GROUP BY 1, 2, 3
    ON CONFLICT (bucket_start, provider_name, metric) DO UPDATE
    SET (bins, counts, sums, cum) = (SELECT * FROM provider_events_hist_merge_cum(
        x.bins, x.counts, x.sums, excluded.bins, excluded.counts, excluded.sums))
), hdp AS (
    INSERT INTO provider_selection_hist_daily_provider AS x
    SELECT d, provider_name, metric, array_agg(bin ORDER BY bin), array_agg(n ORDER BY bin),
           array_agg(vs ORDER BY bin), array_agg(c ORDER BY bin)
    FROM (SELECT d, provider_name, metric, bin, n, vs,
                 sum(n) OVER (PARTITION BY d, provider_name, metric ORDER BY bin) AS c
          FROM (SELECT d, provider_name, metric, bin, sum(n) AS n, sum(vs) AS vs
                FROM dbins GROUP BY 1, 2, 3, 4) a) ac
    GROUP BY 1, 2, 3
    ON CONFLICT (day_start, provider_name, metric) DO UPDATE
    SET (bins, counts, sums, cum) = (SELECT * FROM provider_events_hist_merge_cum(
        x.bins, x.counts, x.sums, excluded.bins, excluded.counts, excluded.sums))
), hht AS (
    INSERT INTO provider_selection_hist_hourly_tenant AS x
    SELECT h, tenant_id, provider_name, metric, array_agg(bin ORDER BY bin),
           array_agg(n ORDER BY bin), array_agg(vs ORDER BY bin), array_agg(c ORDER BY bin)
    FROM (SELECT h, tenant_id, provider_name, metric, bin, n, vs,
                 sum(n) OVER (PARTITION BY h, tenant_id, provider_name, metric ORDER BY bin) AS c
          FROM (SELECT h, tenant_id, provider_name, metric, bin, sum(n) AS n, sum(vs) AS vs
                FROM hbins GROUP BY 1, 2, 3, 4, 5) a) ac
    GROUP BY 1, 2, 3, 4
    ON CONFLICT (bucket_start, tenant_id, provider_name, metric) DO UPDATE
    SET (bins, counts, sums, cum) = (SELECT * FROM provider_events_hist_merge_cum(
        x.bins, x.counts, x.sums, excluded.bins, excluded.counts, excluded.sums))
)
SELECT 1 INTO done;
END $fn$;
ALTER FUNCTION provider_events_apply_deltas() SET search_path FROM CURRENT;
