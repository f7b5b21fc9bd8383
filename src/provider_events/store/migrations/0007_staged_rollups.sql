-- Staged rollups: the batch writer no longer merges its aggregates into the nine rollup tables
-- in every batch's transaction (migration 0004); it appends them to the three pending tables
-- below, in that same transaction, and merges everything pending every few seconds (and when it
-- stops) with provider_events_merge_pending().
--
-- Why: merging a batch's histogram deltas into seven histogram tables costs about a millisecond
-- per histogram row touched, whatever the batch holds (the arrays are unnested, summed and
-- re-aggregated); with realistic traffic (many tenants, models and hours per batch) that was
-- half the consumer's time at the default 5,000-row batch. A stream keeps touching the same
-- hours, so merging the pending deltas of many batches at once touches each histogram row once
-- per merge instead of once per batch.
--
-- Exact and crash-safe: a batch's events and its pending deltas commit together; a merge
-- deletes the pending rows it folds in (DELETE ... RETURNING) in the same statement as the
-- upserts, so a pending row is merged exactly once, by whichever writer merges next (a crash
-- between staging and merging loses nothing: the rows wait for the next merge). Merges are
-- serialised by a transaction advisory lock, so concurrent writers never merge the same rows
-- or deadlock on the rollup rows. Readers see the rollups as of the last merge: every batch
-- merged so far, whole, and nothing else.
--
-- DELETE and UPDATE on the events table merge what is pending first (a statement trigger), so
-- their subtractions meet rollups that hold every stored row; TRUNCATE drops what is pending;
-- provider_events_rebuild_rollups() drops it too (the rebuild reads every stored row).

CREATE TABLE provider_events_pending_roll (
    h              timestamptz  NOT NULL,
    tenant_id      text         NOT NULL,
    provider_name  text         NOT NULL,
    model_name     text         NOT NULL,
    selections     bigint       NOT NULL,
    cpt_n bigint NOT NULL, cpt_sum float8 NOT NULL, cpt_sumsq float8 NOT NULL,
    cpt_min float8, cpt_max float8,
    lat_n bigint NOT NULL, lat_sum float8 NOT NULL, lat_sumsq float8 NOT NULL,
    lat_min float8, lat_max float8,
    q_n bigint NOT NULL, q_sum float8 NOT NULL, q_sumsq float8 NOT NULL,
    q_min float8, q_max float8,
    token_n bigint NOT NULL, input_tokens float8 NOT NULL, output_tokens float8 NOT NULL,
    tokens float8 NOT NULL, costed_n bigint NOT NULL, cost_usd float8 NOT NULL
);
CREATE TABLE provider_events_pending_reasons (
    h              timestamptz  NOT NULL,
    tenant_id      text         NOT NULL,
    provider_name  text         NOT NULL,
    model_name     text         NOT NULL,
    reason         text         NOT NULL,
    selections     bigint       NOT NULL
);
CREATE TABLE provider_events_pending_bins (
    h              timestamptz  NOT NULL,
    tenant_id      text         NOT NULL,
    provider_name  text         NOT NULL,
    model_name     text         NOT NULL,
    metric         smallint     NOT NULL,
    -- one row per key and metric a batch touched: its bins (any order), their counts and sums
    bins           integer[]    NOT NULL,
    counts         bigint[]     NOT NULL,
    sums           float8[]     NOT NULL
);
COMMENT ON TABLE provider_events_pending_roll IS
    'Rollup deltas of committed batches not yet merged into the rollups (provider_events_merge_pending()); with _reasons and _bins.';

-- Fold every pending delta into the rollups; the number of pending rollup rows merged, or -1
-- when wait is false and another session is merging (it takes what was committed before it).
CREATE FUNCTION provider_events_merge_pending(wait boolean DEFAULT true) RETURNS bigint
    LANGUAGE plpgsql
AS $fn$
DECLARE
    merged bigint;
    lock_key constant bigint := 7451862301000000000
        + 'provider_events_pending_roll'::regclass::oid::bigint;
BEGIN
    IF wait THEN
        PERFORM pg_advisory_xact_lock(lock_key);
    ELSIF NOT pg_try_advisory_xact_lock(lock_key) THEN
        RETURN -1;
    END IF;
-- Static SQL: planned once per session (the statement of 0004's provider_events_apply_deltas,
-- fed by the pending tables, each aggregated per key: many batches touch the same rows).
WITH pr AS (
    DELETE FROM provider_events_pending_roll RETURNING *
), pre AS (
    DELETE FROM provider_events_pending_reasons RETURNING *
), pb AS (
    DELETE FROM provider_events_pending_bins RETURNING *
), roll AS (
    INSERT INTO provider_selection_rollup_hourly AS x
    SELECT h, tenant_id, provider_name, model_name, sum(selections)::bigint,
           sum(cpt_n)::bigint, sum(cpt_sum), sum(cpt_sumsq), min(cpt_min), max(cpt_max),
           sum(lat_n)::bigint, sum(lat_sum), sum(lat_sumsq), min(lat_min), max(lat_max),
           sum(q_n)::bigint, sum(q_sum), sum(q_sumsq), min(q_min), max(q_max),
           sum(token_n)::bigint, sum(input_tokens), sum(output_tokens), sum(tokens),
           sum(costed_n)::bigint, sum(cost_usd)
    FROM pr GROUP BY 1, 2, 3, 4
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
    SELECT h, tenant_id, provider_name, model_name, md5(reason)::uuid, min(reason),
           sum(selections)::bigint
    FROM pre GROUP BY 1, 2, 3, 4, 5
    ON CONFLICT (bucket_start, tenant_id, provider_name, model_name, reason_md5)
    DO UPDATE SET selections = x.selections + excluded.selections
), hbins AS MATERIALIZED (
    SELECT h, tenant_id, provider_name, model_name, metric, u.bin, sum(u.n)::bigint AS n,
           sum(u.vs) AS vs
    FROM pb CROSS JOIN LATERAL unnest(pb.bins, pb.counts, pb.sums) AS u(bin, n, vs)
    GROUP BY 1, 2, 3, 4, 5, 6
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
SELECT count(*) INTO merged FROM pr;
    RETURN merged;
END $fn$;
ALTER FUNCTION provider_events_merge_pending(boolean) SET search_path FROM CURRENT;
ALTER FUNCTION provider_events_merge_pending(boolean) SET work_mem = '64MB';

CREATE FUNCTION provider_events_pending_before_change() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        TRUNCATE provider_events_pending_roll, provider_events_pending_reasons,
                 provider_events_pending_bins;
    ELSE
        PERFORM provider_events_merge_pending(true);
    END IF;
    RETURN NULL;
END $$;
ALTER FUNCTION provider_events_pending_before_change() SET search_path FROM CURRENT;
ALTER FUNCTION provider_events_pending_before_change() SET work_mem = '64MB';

CREATE TRIGGER provider_selection_events_pending_merge
    BEFORE DELETE OR UPDATE OR TRUNCATE ON provider_selection_events
    FOR EACH STATEMENT EXECUTE FUNCTION provider_events_pending_before_change();

CREATE OR REPLACE FUNCTION provider_events_rebuild_rollups() RETURNS bigint
    LANGUAGE plpgsql
AS $$
DECLARE
    n bigint;
BEGIN
    TRUNCATE provider_selection_rollup_hourly, provider_selection_reasons_hourly,
             provider_selection_hist_hourly, provider_selection_hist_daily,
             provider_selection_hist_hourly_all, provider_selection_hist_daily_all,
             provider_selection_hist_hourly_provider, provider_selection_hist_daily_provider,
             provider_selection_hist_hourly_tenant,
             provider_events_pending_roll, provider_events_pending_reasons,
             provider_events_pending_bins;
    EXECUTE provider_events_rollup_statement('provider_selection_events', 1);
    SELECT coalesce(sum(selections), 0) INTO n FROM provider_selection_rollup_hourly;
    RETURN n;
END $$;
ALTER FUNCTION provider_events_rebuild_rollups() SET search_path FROM CURRENT;
ALTER FUNCTION provider_events_rebuild_rollups() SET work_mem = '256MB';
