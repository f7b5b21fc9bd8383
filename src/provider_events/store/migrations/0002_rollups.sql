-- Rollups for stats, recommend, report and dashboards: answers in milliseconds at any row count.
--
-- Maintained AT INGEST, in the inserting transaction, by statement-level triggers with
-- transition tables on provider_selection_events: one trigger run per INSERT/COPY statement
-- (the consumer writes a whole batch with one COPY, so one run per batch), never per row.
-- Deletes and updates subtract what they remove and recompute min/max of the hours they
-- touched; TRUNCATE empties the rollups. A rollup row is therefore always the aggregate of
-- the committed raw rows of its hour.
--
--   provider_selection_rollup_hourly   counts, sums, sums of squares, min/max of the criteria,
--                                      token and cost sums, per hour/tenant/provider/model
--   provider_selection_reasons_hourly  selections per reason (free text, keyed by its md5)
--   provider_selection_hist_{hourly,daily}
--                                      log-bin histograms of cost_per_token, latency_ms and
--                                      quality_score per hour (day) and tenant/provider/model,
--                                      as sparse arrays (bins, counts, sums of the values):
--                                      percentiles within one bin (2 %)
--   provider_selection_hist_{hourly,daily}_all
--                                      the same for all tenants together (per provider/model),
--                                      so unfiltered questions read a fraction of the rows
--   provider_selection_hist_{hourly,daily}_provider
--                                      all tenants and models of a provider together, with the
--                                      cumulative counts too: a percentile of one row is a
--                                      binary search (width_bucket), no unnesting
--
-- Histograms are arrays, not a row per bin, so a batch of 5,000 events costs one array merge
-- per (hour, tenant, provider, model, metric) it touches instead of one upsert per bin.
-- The derivations mirror src/provider_events/_analytics_model.py (a test checks they agree):
-- numbers are read only when the JSON value is a number; tokens = total_tokens, else
-- input_tokens + output_tokens; cost = cost_usd, else cost_per_token * tokens; histogram
-- bin = ceil(ln(v) * 50.4983497918439) (= 1 / ln 1.02), and -1000000 for zero.
-- Rebuild everything from the raw table with: SELECT provider_events_rebuild_rollups();

CREATE FUNCTION provider_events_num(c jsonb, k text) RETURNS float8
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT CASE WHEN jsonb_typeof(c -> k) = 'number' THEN (c ->> k)::float8 END $$;

CREATE FUNCTION provider_events_bin(v float8) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT CASE WHEN v IS NULL THEN NULL WHEN v <= 0 THEN -1000000
                  ELSE ceil(ln(v) * 50.4983497918439::float8)::integer END $$;

-- The midpoint of a bin (within 1 % of every value in it); value_sum / selections is better.
CREATE FUNCTION provider_events_bin_value(b integer) RETURNS float8
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT CASE WHEN b = -1000000 THEN 0::float8
                  ELSE 2.0::float8 * power(1.02::float8, b) / 2.02::float8 END $$;

CREATE TABLE provider_selection_rollup_hourly (
    bucket_start  timestamptz  NOT NULL,
    tenant_id     text         NOT NULL,
    provider_name varchar(100) NOT NULL,
    model_name    varchar(200) NOT NULL,
    selections    bigint       NOT NULL,
    cpt_n         bigint       NOT NULL,
    cpt_sum       float8       NOT NULL,
    cpt_sumsq     float8       NOT NULL,
    cpt_min       float8,
    cpt_max       float8,
    lat_n         bigint       NOT NULL,
    lat_sum       float8       NOT NULL,
    lat_sumsq     float8       NOT NULL,
    lat_min       float8,
    lat_max       float8,
    q_n           bigint       NOT NULL,
    q_sum         float8       NOT NULL,
    q_sumsq       float8       NOT NULL,
    q_min         float8,
    q_max         float8,
    token_n       bigint       NOT NULL,
    input_tokens  float8       NOT NULL,
    output_tokens float8       NOT NULL,
    tokens        float8       NOT NULL,
    costed_n      bigint       NOT NULL,
    cost_usd      float8       NOT NULL,
    PRIMARY KEY (bucket_start, tenant_id, provider_name, model_name)
);

CREATE TABLE provider_selection_reasons_hourly (
    bucket_start     timestamptz  NOT NULL,
    tenant_id        text         NOT NULL,
    provider_name    varchar(100) NOT NULL,
    model_name       varchar(200) NOT NULL,
    reason_md5       uuid         NOT NULL,
    selection_reason text         NOT NULL,
    selections       bigint       NOT NULL,
    PRIMARY KEY (bucket_start, tenant_id, provider_name, model_name, reason_md5)
);

CREATE TABLE provider_selection_hist_hourly (
    bucket_start  timestamptz  NOT NULL,
    tenant_id     text         NOT NULL,
    provider_name varchar(100) NOT NULL,
    model_name    varchar(200) NOT NULL,
    metric        smallint     NOT NULL,  -- 1 cost_per_token, 2 latency_ms, 3 quality_score
    bins          integer[]    NOT NULL,  -- ascending; bin b holds values in (1.02^(b-1), 1.02^b]
    counts        bigint[]     NOT NULL,  -- values per bin
    sums          float8[]     NOT NULL,  -- sum of the values per bin (mean exact for one value)
    PRIMARY KEY (bucket_start, tenant_id, provider_name, model_name, metric)
);

CREATE TABLE provider_selection_hist_daily (
    day_start     timestamptz  NOT NULL,
    tenant_id     text         NOT NULL,
    provider_name varchar(100) NOT NULL,
    model_name    varchar(200) NOT NULL,
    metric        smallint     NOT NULL,
    bins          integer[]    NOT NULL,
    counts        bigint[]     NOT NULL,
    sums          float8[]     NOT NULL,
    PRIMARY KEY (day_start, tenant_id, provider_name, model_name, metric)
);

CREATE TABLE provider_selection_hist_hourly_all (
    bucket_start  timestamptz  NOT NULL,
    provider_name varchar(100) NOT NULL,
    model_name    varchar(200) NOT NULL,
    metric        smallint     NOT NULL,
    bins          integer[]    NOT NULL,
    counts        bigint[]     NOT NULL,
    sums          float8[]     NOT NULL,
    PRIMARY KEY (bucket_start, provider_name, model_name, metric)
);

CREATE TABLE provider_selection_hist_daily_all (
    day_start     timestamptz  NOT NULL,
    provider_name varchar(100) NOT NULL,
    model_name    varchar(200) NOT NULL,
    metric        smallint     NOT NULL,
    bins          integer[]    NOT NULL,
    counts        bigint[]     NOT NULL,
    sums          float8[]     NOT NULL,
    PRIMARY KEY (day_start, provider_name, model_name, metric)
);

CREATE TABLE provider_selection_hist_hourly_provider (
    bucket_start  timestamptz  NOT NULL,
    provider_name varchar(100) NOT NULL,
    metric        smallint     NOT NULL,
    bins          integer[]    NOT NULL,
    counts        bigint[]     NOT NULL,
    sums          float8[]     NOT NULL,
    cum           bigint[]     NOT NULL,  -- running total of counts: cum[k] = counts[1..k]
    PRIMARY KEY (bucket_start, provider_name, metric)
);

CREATE TABLE provider_selection_hist_daily_provider (
    day_start     timestamptz  NOT NULL,
    provider_name varchar(100) NOT NULL,
    metric        smallint     NOT NULL,
    bins          integer[]    NOT NULL,
    counts        bigint[]     NOT NULL,
    sums          float8[]     NOT NULL,
    cum           bigint[]     NOT NULL,
    PRIMARY KEY (day_start, provider_name, metric)
);

-- The q-quantile of one histogram row (nearest rank, mean of the bin holding it): the bin is
-- found by binary search over the cumulative counts. NULL for an empty histogram. One
-- expression, so the planner inlines it.
CREATE FUNCTION provider_events_hist_quantile(counts bigint[], sums float8[], cum bigint[], q float8)
    RETURNS float8
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN cardinality(cum) > 0 THEN
        sums[width_bucket((greatest(1, ceil(q * cum[cardinality(cum)]::float8)) - 1)::bigint, cum) + 1]
        / counts[width_bucket((greatest(1, ceil(q * cum[cardinality(cum)]::float8)) - 1)::bigint, cum) + 1]
    END
$$;

-- Two sparse histograms added bin by bin; bins whose count drops to zero (a subtraction) go.
CREATE FUNCTION provider_events_hist_merge(
    a_bins integer[], a_counts bigint[], a_sums float8[],
    b_bins integer[], b_counts bigint[], b_sums float8[],
    OUT bins integer[], OUT counts bigint[], OUT sums float8[])
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT coalesce(array_agg(b ORDER BY b), '{}'), coalesce(array_agg(n ORDER BY b), '{}'),
           coalesce(array_agg(v ORDER BY b), '{}')
    FROM (SELECT b, sum(n)::bigint AS n, sum(v) AS v
          FROM (SELECT * FROM unnest(a_bins, a_counts, a_sums)
                UNION ALL
                SELECT * FROM unnest(b_bins, b_counts, b_sums)) u(b, n, v)
          GROUP BY b
          HAVING sum(n) <> 0) m
$$;

-- The same, also returning the running total of the merged counts.
CREATE FUNCTION provider_events_hist_merge_cum(
    a_bins integer[], a_counts bigint[], a_sums float8[],
    b_bins integer[], b_counts bigint[], b_sums float8[],
    OUT bins integer[], OUT counts bigint[], OUT sums float8[], OUT cum bigint[])
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT coalesce(array_agg(b ORDER BY b), '{}'), coalesce(array_agg(n ORDER BY b), '{}'),
           coalesce(array_agg(v ORDER BY b), '{}'), coalesce(array_agg(c ORDER BY b), '{}')
    FROM (SELECT b, n, v, sum(n) OVER (ORDER BY b)::bigint AS c
          FROM (SELECT b, sum(n)::bigint AS n, sum(v) AS v
                FROM (SELECT * FROM unnest(a_bins, a_counts, a_sums)
                      UNION ALL
                      SELECT * FROM unnest(b_bins, b_counts, b_sums)) u(b, n, v)
                GROUP BY b
                HAVING sum(n) <> 0) m) mc
$$;

-- One statement that folds the rows of relation %1$I into every rollup, with sign %2$s
-- (1 adds, -1 subtracts). Used by the triggers (on transition tables) and by the rebuild.
CREATE FUNCTION provider_events_rollup_statement(src text, sign integer) RETURNS text
    LANGUAGE sql IMMUTABLE
AS $body$ SELECT format($sql$
WITH e AS MATERIALIZED (
    SELECT date_bin('1 hour', r.selected_at, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS h,
           r.tenant_id, r.provider_name, r.model_name,
           coalesce(r.selection_reason, '') AS reason,
           d.cpt, d.lat, d.q, d.inp, d.outp, t.tok,
           coalesce(d.cost_given, d.cpt * t.tok) AS cost
    FROM %1$I r
    CROSS JOIN LATERAL (SELECT
        provider_events_num(r.selection_criteria, 'cost_per_token') AS cpt,
        provider_events_num(r.selection_criteria, 'latency_ms') AS lat,
        provider_events_num(r.selection_criteria, 'quality_score') AS q,
        provider_events_num(r.selection_criteria, 'input_tokens') AS inp,
        provider_events_num(r.selection_criteria, 'output_tokens') AS outp,
        provider_events_num(r.selection_criteria, 'total_tokens') AS tot,
        provider_events_num(r.selection_criteria, 'cost_usd') AS cost_given) d
    CROSS JOIN LATERAL (SELECT coalesce(d.tot, CASE WHEN d.inp IS NOT NULL OR d.outp IS NOT NULL
        THEN coalesce(d.inp, 0) + coalesce(d.outp, 0) END) AS tok) t
), roll AS (
    INSERT INTO provider_selection_rollup_hourly AS x
    SELECT h, tenant_id, provider_name, model_name, %2$s * count(*),
           %2$s * count(cpt), %2$s * coalesce(sum(cpt), 0), %2$s * coalesce(sum(cpt * cpt), 0), min(cpt), max(cpt),
           %2$s * count(lat), %2$s * coalesce(sum(lat), 0), %2$s * coalesce(sum(lat * lat), 0), min(lat), max(lat),
           %2$s * count(q), %2$s * coalesce(sum(q), 0), %2$s * coalesce(sum(q * q), 0), min(q), max(q),
           %2$s * count(tok), %2$s * coalesce(sum(inp), 0), %2$s * coalesce(sum(outp), 0), %2$s * coalesce(sum(tok), 0),
           %2$s * count(cost), %2$s * coalesce(sum(cost), 0)
    FROM e GROUP BY 1, 2, 3, 4
    ON CONFLICT (bucket_start, tenant_id, provider_name, model_name) DO UPDATE SET
        selections = x.selections + excluded.selections,
        cpt_n = x.cpt_n + excluded.cpt_n, cpt_sum = x.cpt_sum + excluded.cpt_sum,
        cpt_sumsq = x.cpt_sumsq + excluded.cpt_sumsq,
        cpt_min = CASE WHEN excluded.selections > 0 THEN least(x.cpt_min, excluded.cpt_min) ELSE x.cpt_min END,
        cpt_max = CASE WHEN excluded.selections > 0 THEN greatest(x.cpt_max, excluded.cpt_max) ELSE x.cpt_max END,
        lat_n = x.lat_n + excluded.lat_n, lat_sum = x.lat_sum + excluded.lat_sum,
        lat_sumsq = x.lat_sumsq + excluded.lat_sumsq,
        lat_min = CASE WHEN excluded.selections > 0 THEN least(x.lat_min, excluded.lat_min) ELSE x.lat_min END,
        lat_max = CASE WHEN excluded.selections > 0 THEN greatest(x.lat_max, excluded.lat_max) ELSE x.lat_max END,
        q_n = x.q_n + excluded.q_n, q_sum = x.q_sum + excluded.q_sum,
        q_sumsq = x.q_sumsq + excluded.q_sumsq,
        q_min = CASE WHEN excluded.selections > 0 THEN least(x.q_min, excluded.q_min) ELSE x.q_min END,
        q_max = CASE WHEN excluded.selections > 0 THEN greatest(x.q_max, excluded.q_max) ELSE x.q_max END,
        token_n = x.token_n + excluded.token_n,
        input_tokens = x.input_tokens + excluded.input_tokens,
        output_tokens = x.output_tokens + excluded.output_tokens,
        tokens = x.tokens + excluded.tokens,
        costed_n = x.costed_n + excluded.costed_n, cost_usd = x.cost_usd + excluded.cost_usd
), reasons AS (
    INSERT INTO provider_selection_reasons_hourly AS x
    SELECT h, tenant_id, provider_name, model_name, md5(reason)::uuid, min(reason), %2$s * count(*)
    FROM e GROUP BY 1, 2, 3, 4, 5
    ON CONFLICT (bucket_start, tenant_id, provider_name, model_name, reason_md5)
    DO UPDATE SET selections = x.selections + excluded.selections
), hbins AS MATERIALIZED (
    SELECT h, tenant_id, provider_name, model_name, m.metric, provider_events_bin(m.v) AS bin,
           count(*) AS n, sum(m.v) AS vs
    FROM e CROSS JOIN LATERAL (VALUES (1::smallint, e.cpt), (2::smallint, e.lat), (3::smallint, e.q)) m(metric, v)
    WHERE m.v IS NOT NULL
    GROUP BY 1, 2, 3, 4, 5, 6
), hh AS (
    INSERT INTO provider_selection_hist_hourly AS x
    SELECT h, tenant_id, provider_name, model_name, metric,
           array_agg(bin ORDER BY bin), array_agg(%2$s * n ORDER BY bin), array_agg(%2$s * vs ORDER BY bin)
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
           array_agg(bin ORDER BY bin), array_agg(%2$s * n ORDER BY bin), array_agg(%2$s * vs ORDER BY bin)
    FROM dbins GROUP BY 1, 2, 3, 4, 5
    ON CONFLICT (day_start, tenant_id, provider_name, model_name, metric) DO UPDATE
    SET (bins, counts, sums) = (SELECT * FROM provider_events_hist_merge(
        x.bins, x.counts, x.sums, excluded.bins, excluded.counts, excluded.sums))
), hha AS (
    INSERT INTO provider_selection_hist_hourly_all AS x
    SELECT h, provider_name, model_name, metric,
           array_agg(bin ORDER BY bin), array_agg(%2$s * n ORDER BY bin), array_agg(%2$s * vs ORDER BY bin)
    FROM (SELECT h, provider_name, model_name, metric, bin, sum(n) AS n, sum(vs) AS vs
          FROM hbins GROUP BY 1, 2, 3, 4, 5) a
    GROUP BY 1, 2, 3, 4
    ON CONFLICT (bucket_start, provider_name, model_name, metric) DO UPDATE
    SET (bins, counts, sums) = (SELECT * FROM provider_events_hist_merge(
        x.bins, x.counts, x.sums, excluded.bins, excluded.counts, excluded.sums))
), hda AS (
    INSERT INTO provider_selection_hist_daily_all AS x
    SELECT d, provider_name, model_name, metric,
           array_agg(bin ORDER BY bin), array_agg(%2$s * n ORDER BY bin), array_agg(%2$s * vs ORDER BY bin)
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
    FROM (SELECT h, provider_name, metric, bin, %2$s * n AS n, %2$s * vs AS vs,
                 sum(%2$s * n) OVER (PARTITION BY h, provider_name, metric ORDER BY bin) AS c
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
    FROM (SELECT d, provider_name, metric, bin, %2$s * n AS n, %2$s * vs AS vs,
                 sum(%2$s * n) OVER (PARTITION BY d, provider_name, metric ORDER BY bin) AS c
          FROM (SELECT d, provider_name, metric, bin, sum(n) AS n, sum(vs) AS vs
                FROM dbins GROUP BY 1, 2, 3, 4) a) ac
    GROUP BY 1, 2, 3
    ON CONFLICT (day_start, provider_name, metric) DO UPDATE
    SET (bins, counts, sums, cum) = (SELECT * FROM provider_events_hist_merge_cum(
        x.bins, x.counts, x.sums, excluded.bins, excluded.counts, excluded.sums))
)
SELECT 1
$sql$, src, sign) $body$;

-- After a subtraction: drop rollup rows that no longer count anything, from hour ``since`` on.
CREATE FUNCTION provider_events_rollup_prune(since timestamptz) RETURNS void
    LANGUAGE sql
AS $$
    DELETE FROM provider_selection_rollup_hourly WHERE bucket_start >= since AND selections <= 0;
    DELETE FROM provider_selection_reasons_hourly WHERE bucket_start >= since AND selections <= 0;
    DELETE FROM provider_selection_hist_hourly
        WHERE bucket_start >= since AND cardinality(bins) = 0;
    DELETE FROM provider_selection_hist_hourly_all
        WHERE bucket_start >= since AND cardinality(bins) = 0;
    DELETE FROM provider_selection_hist_daily
        WHERE day_start >= date_bin('1 day', since, TIMESTAMPTZ '2000-01-01 00:00:00+00')
          AND cardinality(bins) = 0;
    DELETE FROM provider_selection_hist_daily_all
        WHERE day_start >= date_bin('1 day', since, TIMESTAMPTZ '2000-01-01 00:00:00+00')
          AND cardinality(bins) = 0;
    DELETE FROM provider_selection_hist_hourly_provider
        WHERE bucket_start >= since AND cardinality(bins) = 0;
    DELETE FROM provider_selection_hist_daily_provider
        WHERE day_start >= date_bin('1 day', since, TIMESTAMPTZ '2000-01-01 00:00:00+00')
          AND cardinality(bins) = 0;
$$;

-- After a subtraction min/max cannot be subtracted: recompute them from the raw rows of the
-- hours relation %1$I touched (an index range scan per tenant and hour; deletes are rare).
CREATE FUNCTION provider_events_rollup_bounds_statement(src text) RETURNS text
    LANGUAGE sql IMMUTABLE
AS $body$ SELECT format($sql$
WITH k AS (
    SELECT DISTINCT date_bin('1 hour', selected_at, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS h,
           tenant_id, provider_name, model_name
    FROM %1$I
), s AS (
    SELECT k.h, k.tenant_id, k.provider_name, k.model_name,
           min(d.cpt) AS cpt_min, max(d.cpt) AS cpt_max, min(d.lat) AS lat_min,
           max(d.lat) AS lat_max, min(d.q) AS q_min, max(d.q) AS q_max
    FROM k
    JOIN provider_selection_events e
      ON e.tenant_id = k.tenant_id AND e.selected_at >= k.h
     AND e.selected_at < k.h + interval '1 hour'
     AND e.provider_name = k.provider_name AND e.model_name = k.model_name
    CROSS JOIN LATERAL (SELECT
        provider_events_num(e.selection_criteria, 'cost_per_token') AS cpt,
        provider_events_num(e.selection_criteria, 'latency_ms') AS lat,
        provider_events_num(e.selection_criteria, 'quality_score') AS q) d
    GROUP BY 1, 2, 3, 4
)
UPDATE provider_selection_rollup_hourly x
   SET cpt_min = s.cpt_min, cpt_max = s.cpt_max, lat_min = s.lat_min, lat_max = s.lat_max,
       q_min = s.q_min, q_max = s.q_max
  FROM s
 WHERE x.bucket_start = s.h AND x.tenant_id = s.tenant_id
   AND x.provider_name = s.provider_name AND x.model_name = s.model_name
$sql$, src) $body$;

CREATE FUNCTION provider_events_rollups_on_insert() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    EXECUTE provider_events_rollup_statement('new_rows', 1);
    RETURN NULL;
END $$;

CREATE FUNCTION provider_events_rollups_on_delete() RETURNS trigger
    LANGUAGE plpgsql
AS $$
DECLARE
    oldest timestamptz;
BEGIN
    EXECUTE provider_events_rollup_statement('old_rows', -1);
    EXECUTE provider_events_rollup_bounds_statement('old_rows');
    EXECUTE 'SELECT date_bin(''1 hour'', min(selected_at), TIMESTAMPTZ ''2000-01-01 00:00:00+00'') FROM old_rows'
        INTO oldest;
    IF oldest IS NOT NULL THEN
        PERFORM provider_events_rollup_prune(oldest);
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION provider_events_rollups_on_update() RETURNS trigger
    LANGUAGE plpgsql
AS $$
DECLARE
    oldest timestamptz;
BEGIN
    EXECUTE provider_events_rollup_statement('old_rows', -1);
    EXECUTE provider_events_rollup_statement('new_rows', 1);
    EXECUTE provider_events_rollup_bounds_statement('old_rows');
    EXECUTE 'SELECT date_bin(''1 hour'', min(selected_at), TIMESTAMPTZ ''2000-01-01 00:00:00+00'') FROM old_rows'
        INTO oldest;
    IF oldest IS NOT NULL THEN
        PERFORM provider_events_rollup_prune(oldest);
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION provider_events_rollups_on_truncate() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    TRUNCATE provider_selection_rollup_hourly, provider_selection_reasons_hourly,
             provider_selection_hist_hourly, provider_selection_hist_daily,
             provider_selection_hist_hourly_all, provider_selection_hist_daily_all,
             provider_selection_hist_hourly_provider, provider_selection_hist_daily_provider;
    RETURN NULL;
END $$;

-- Pin name resolution to this schema for the trigger functions, whoever inserts; give their
-- aggregations room (a bulk INSERT hands them millions of rows at once).
ALTER FUNCTION provider_events_rollup_prune(timestamptz) SET search_path FROM CURRENT;
ALTER FUNCTION provider_events_rollups_on_insert() SET search_path FROM CURRENT;
ALTER FUNCTION provider_events_rollups_on_insert() SET work_mem = '64MB';
ALTER FUNCTION provider_events_rollups_on_delete() SET search_path FROM CURRENT;
ALTER FUNCTION provider_events_rollups_on_delete() SET work_mem = '64MB';
ALTER FUNCTION provider_events_rollups_on_update() SET search_path FROM CURRENT;
ALTER FUNCTION provider_events_rollups_on_update() SET work_mem = '64MB';
ALTER FUNCTION provider_events_rollups_on_truncate() SET search_path FROM CURRENT;

CREATE TRIGGER provider_selection_events_rollup_insert
    AFTER INSERT ON provider_selection_events
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION provider_events_rollups_on_insert();
CREATE TRIGGER provider_selection_events_rollup_delete
    AFTER DELETE ON provider_selection_events
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION provider_events_rollups_on_delete();
CREATE TRIGGER provider_selection_events_rollup_update
    AFTER UPDATE ON provider_selection_events
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION provider_events_rollups_on_update();
CREATE TRIGGER provider_selection_events_rollup_truncate
    AFTER TRUNCATE ON provider_selection_events
    FOR EACH STATEMENT EXECUTE FUNCTION provider_events_rollups_on_truncate();

-- Rebuild every rollup from the raw table (after a bulk load with triggers disabled, say).
CREATE FUNCTION provider_events_rebuild_rollups() RETURNS bigint
    LANGUAGE plpgsql
AS $$
DECLARE
    n bigint;
BEGIN
    TRUNCATE provider_selection_rollup_hourly, provider_selection_reasons_hourly,
             provider_selection_hist_hourly, provider_selection_hist_daily,
             provider_selection_hist_hourly_all, provider_selection_hist_daily_all,
             provider_selection_hist_hourly_provider, provider_selection_hist_daily_provider;
    EXECUTE provider_events_rollup_statement('provider_selection_events', 1);
    SELECT coalesce(sum(selections), 0) INTO n FROM provider_selection_rollup_hourly;
    RETURN n;
END $$;
ALTER FUNCTION provider_events_rebuild_rollups() SET search_path FROM CURRENT;
ALTER FUNCTION provider_events_rebuild_rollups() SET work_mem = '256MB';

-- Rows ingested before this migration are folded in now (instant on an empty table; on a
-- large one this is the one-off cost of the migration).
SELECT provider_events_rebuild_rollups();

COMMENT ON TABLE provider_selection_rollup_hourly IS
    'Per hour/tenant/provider/model: counts, sums, sums of squares and min/max of cost_per_token (cpt), latency_ms (lat), quality_score (q); token and cost sums. Maintained at ingest by statement triggers.';
COMMENT ON TABLE provider_selection_hist_daily IS
    'Log-bin histograms (bin = ceil(ln v / ln 1.02)) of the criteria per day as sparse arrays; sums[i] / counts[i] is the mean of bin bins[i], within 2 % of each of its values.';
