-- Quantiles of a criterion for any set of tenants, fast: a per-tenant, per-provider hourly
-- histogram with cumulative counts (maintained at ingest like the 0002 rollups), and
-- provider_events_criteria_series(), which the Grafana panel "Expected latency by provider
-- (ms)" reads (before, that panel sorted the raw criteria: ~25 s at 10M events).
--
--   SELECT * FROM provider_events_criteria_series(
--       2,                          -- metric: 1 cost_per_token, 2 latency_ms, 3 quality_score
--       now() - interval '7 days', now(),
--       ARRAY['acme-us', 'globex'], -- tenants; NULL = all
--       interval '1 hour',          -- step (at least an hour: the rollups are hourly)
--       0.95);                      -- q
--
-- Hours count when they overlap [since, until), like the dashboard's other rollup panels. The
-- mean is exact (sums / counts of the hourly rollup). The quantile is the mean of the merged
-- histogram's bin that holds the nearest rank, within 2 % of the exact value, as everywhere
-- else. It is found without merging whole histograms:
--   * per hour and provider, the rows that stand for the asked-for tenants are the hour's
--     all-tenant row of provider_selection_hist_hourly_provider when every tenant with values
--     in that hour is asked for (the dashboard's "All"), else the asked-for tenants' rows of
--     provider_selection_hist_hourly_tenant;
--   * the merged q-quantile lies between the smallest and the largest of those rows' own
--     q-quantile bins (a mixture's CDF is a weighted mean of its parts' CDFs), so only the bins
--     in that range are unnested; each row's count below the range is one lookup in its
--     cumulative counts (width_bucket).

CREATE TABLE provider_selection_hist_hourly_tenant (
    bucket_start  timestamptz  NOT NULL,
    tenant_id     text         NOT NULL,
    provider_name varchar(100) NOT NULL,
    metric        smallint     NOT NULL,  -- 1 cost_per_token, 2 latency_ms, 3 quality_score
    bins          integer[]    NOT NULL,
    counts        bigint[]     NOT NULL,
    sums          float8[]     NOT NULL,
    cum           bigint[]     NOT NULL,  -- running total of counts: cum[k] = counts[1..k]
    PRIMARY KEY (bucket_start, tenant_id, provider_name, metric)
);
COMMENT ON TABLE provider_selection_hist_hourly_tenant IS
    'Log-bin histograms of the criteria per hour, tenant and provider (all models), with cumulative counts. Maintained at ingest by the 0002 statement triggers (their statement is redefined by 0003).';

-- The rows already ingested: the per-model histograms of each tenant added up (exact).
INSERT INTO provider_selection_hist_hourly_tenant
SELECT bucket_start, tenant_id, provider_name, metric, array_agg(bin ORDER BY bin),
       array_agg(n ORDER BY bin), array_agg(vs ORDER BY bin), array_agg(c ORDER BY bin)
FROM (SELECT a.*, sum(n) OVER (PARTITION BY bucket_start, tenant_id, provider_name, metric
                               ORDER BY bin) AS c
      FROM (SELECT bucket_start, tenant_id, provider_name, metric, u.bin,
                   sum(u.n)::bigint AS n, sum(u.vs) AS vs
            FROM provider_selection_hist_hourly
            CROSS JOIN LATERAL unnest(bins, counts, sums) AS u(bin, n, vs)
            GROUP BY 1, 2, 3, 4, 5) a) ac
GROUP BY 1, 2, 3, 4;

-- The 0002 statement with one more histogram (hht, at the end); everything else unchanged.
CREATE OR REPLACE FUNCTION provider_events_rollup_statement(src text, sign integer) RETURNS text
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
), hht AS (
    INSERT INTO provider_selection_hist_hourly_tenant AS x
    SELECT h, tenant_id, provider_name, metric, array_agg(bin ORDER BY bin),
           array_agg(n ORDER BY bin), array_agg(vs ORDER BY bin), array_agg(c ORDER BY bin)
    FROM (SELECT h, tenant_id, provider_name, metric, bin, %2$s * n AS n, %2$s * vs AS vs,
                 sum(%2$s * n) OVER (PARTITION BY h, tenant_id, provider_name, metric ORDER BY bin) AS c
          FROM (SELECT h, tenant_id, provider_name, metric, bin, sum(n) AS n, sum(vs) AS vs
                FROM hbins GROUP BY 1, 2, 3, 4, 5) a) ac
    GROUP BY 1, 2, 3, 4
    ON CONFLICT (bucket_start, tenant_id, provider_name, metric) DO UPDATE
    SET (bins, counts, sums, cum) = (SELECT * FROM provider_events_hist_merge_cum(
        x.bins, x.counts, x.sums, excluded.bins, excluded.counts, excluded.sums))
)
SELECT 1
$sql$, src, sign) $body$;

CREATE OR REPLACE FUNCTION provider_events_rollup_prune(since timestamptz) RETURNS void
    LANGUAGE sql
AS $$
    DELETE FROM provider_selection_rollup_hourly WHERE bucket_start >= since AND selections <= 0;
    DELETE FROM provider_selection_reasons_hourly WHERE bucket_start >= since AND selections <= 0;
    DELETE FROM provider_selection_hist_hourly
        WHERE bucket_start >= since AND cardinality(bins) = 0;
    DELETE FROM provider_selection_hist_hourly_all
        WHERE bucket_start >= since AND cardinality(bins) = 0;
    DELETE FROM provider_selection_hist_hourly_tenant
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
ALTER FUNCTION provider_events_rollup_prune(timestamptz) SET search_path FROM CURRENT;

CREATE OR REPLACE FUNCTION provider_events_rollups_on_truncate() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    TRUNCATE provider_selection_rollup_hourly, provider_selection_reasons_hourly,
             provider_selection_hist_hourly, provider_selection_hist_daily,
             provider_selection_hist_hourly_all, provider_selection_hist_daily_all,
             provider_selection_hist_hourly_provider, provider_selection_hist_daily_provider,
             provider_selection_hist_hourly_tenant;
    RETURN NULL;
END $$;
ALTER FUNCTION provider_events_rollups_on_truncate() SET search_path FROM CURRENT;

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
             provider_selection_hist_hourly_tenant;
    EXECUTE provider_events_rollup_statement('provider_selection_events', 1);
    SELECT coalesce(sum(selections), 0) INTO n FROM provider_selection_rollup_hourly;
    RETURN n;
END $$;
ALTER FUNCTION provider_events_rebuild_rollups() SET search_path FROM CURRENT;
ALTER FUNCTION provider_events_rebuild_rollups() SET work_mem = '256MB';

CREATE FUNCTION provider_events_criteria_series(
    metric integer,
    since timestamptz,
    until timestamptz,
    tenants text[] DEFAULT NULL,
    step interval DEFAULT interval '1 hour',
    q float8 DEFAULT 0.95)
    RETURNS TABLE (bucket timestamptz, provider_name varchar, selections bigint,
                   mean float8, quantile float8)
    LANGUAGE sql STABLE PARALLEL SAFE
AS $$
WITH hours AS MATERIALIZED (
    SELECT r.bucket_start, r.provider_name,
           date_bin(greatest(step, interval '1 hour'), r.bucket_start,
                    TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket,
           bool_and(tenants IS NULL OR r.tenant_id = ANY(tenants)) AS whole,
           sum(v.n) FILTER (WHERE tenants IS NULL OR r.tenant_id = ANY(tenants)) AS n,
           sum(v.s) FILTER (WHERE tenants IS NULL OR r.tenant_id = ANY(tenants)) AS s
    FROM provider_selection_rollup_hourly r
    CROSS JOIN LATERAL (SELECT
        CASE metric WHEN 1 THEN r.cpt_n WHEN 2 THEN r.lat_n WHEN 3 THEN r.q_n END AS n,
        CASE metric WHEN 1 THEN r.cpt_sum WHEN 2 THEN r.lat_sum WHEN 3 THEN r.q_sum END AS s) v
    WHERE r.bucket_start > since - interval '1 hour' AND r.bucket_start < until AND v.n > 0
    GROUP BY r.bucket_start, r.provider_name
), src AS MATERIALIZED (
    SELECT h.bucket, h.provider_name, p.bins, p.counts, p.sums, p.cum
    FROM hours h
    JOIN provider_selection_hist_hourly_provider p
      ON p.bucket_start = h.bucket_start AND p.provider_name = h.provider_name
     AND p.metric = provider_events_criteria_series.metric
    WHERE h.whole
    UNION ALL
    SELECT h.bucket, h.provider_name, t.bins, t.counts, t.sums, t.cum
    FROM hours h
    JOIN provider_selection_hist_hourly_tenant t
      ON t.bucket_start = h.bucket_start AND t.provider_name = h.provider_name
     AND t.metric = provider_events_criteria_series.metric AND t.tenant_id = ANY(tenants)
    WHERE NOT h.whole AND h.n > 0
), own AS (
    -- each row's own nearest-rank bin at q: the merged one lies between their min and max
    SELECT s.bucket, s.provider_name, s.bins, s.counts, s.sums, s.cum,
           s.cum[cardinality(s.cum)] AS n,
           s.bins[width_bucket((greatest(1, ceil(q * s.cum[cardinality(s.cum)]::float8)) - 1)::bigint,
                               s.cum) + 1] AS qbin
    FROM src s
), bounded AS (
    SELECT o.*, min(o.qbin) OVER w AS lo, max(o.qbin) OVER w AS hi, sum(o.n) OVER w AS total
    FROM own o
    WINDOW w AS (PARTITION BY o.bucket, o.provider_name)
), sliced AS (
    -- per row: how many of its values lie below lo, and the bins from lo to hi
    SELECT b.bucket, b.provider_name, b.total, b.bins, b.counts, b.sums,
           coalesce(b.cum[nullif(width_bucket(b.lo - 1, b.bins), 0)], 0) AS below,
           width_bucket(b.lo - 1, b.bins) + 1 AS i, width_bucket(b.hi, b.bins) AS j
    FROM bounded b
), merged AS (
    SELECT m.bucket, m.provider_name, m.bin, m.n, m.vs,
           greatest(1, ceil(q * m.total::float8)) AS rank,
           m.below + sum(m.n) OVER (PARTITION BY m.bucket, m.provider_name ORDER BY m.bin) AS cum
    FROM (SELECT x.bucket, x.provider_name, u.bin, max(x.total) AS total,
                 max(x.below_all) AS below, sum(u.n) AS n, sum(u.vs) AS vs
          FROM (SELECT sl.*, sum(sl.below) OVER (PARTITION BY sl.bucket, sl.provider_name) AS below_all
                FROM sliced sl) x
          CROSS JOIN LATERAL unnest(x.bins[x.i:x.j], x.counts[x.i:x.j], x.sums[x.i:x.j]) AS u(bin, n, vs)
          GROUP BY x.bucket, x.provider_name, u.bin) m
)
SELECT a.bucket, a.provider_name, sum(a.n)::bigint, sum(a.s) / sum(a.n), max(a.v)
FROM (SELECT h.bucket, h.provider_name, h.n, h.s, NULL::float8 AS v FROM hours h WHERE h.n > 0
      UNION ALL
      SELECT c.bucket, c.provider_name, 0, 0, c.vs / c.n FROM merged c
      WHERE c.cum >= c.rank AND c.cum - c.n < c.rank) a
GROUP BY a.bucket, a.provider_name
ORDER BY 1, 2
$$;
ALTER FUNCTION provider_events_criteria_series(integer, timestamptz, timestamptz, text[], interval, float8)
    SET search_path FROM CURRENT;

COMMENT ON FUNCTION provider_events_criteria_series(integer, timestamptz, timestamptz, text[], interval, float8) IS
    'Per step and provider: values, exact mean and the q-quantile (within 2 %) of one criterion (1 cost_per_token, 2 latency_ms, 3 quality_score) for the given tenants (NULL = all), from the hourly rollups.';
