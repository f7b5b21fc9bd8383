-- A criterion's mean and quantile per time step and provider, for any set of tenants, from the
-- rollups of 0002 (nothing new is maintained at ingest). The Grafana panel "Expected latency by
-- provider (ms)" reads it; before, its p95 sorted the raw table (~25 s at 10M events).
--
--   SELECT * FROM provider_events_criteria_series(
--       2,                          -- metric: 1 cost_per_token, 2 latency_ms, 3 quality_score
--       now() - interval '7 days', now(),
--       ARRAY['acme-us', 'globex'], -- tenants; NULL = all
--       interval '1 hour',          -- step (at least an hour: the rollups are hourly)
--       0.95);                      -- q
--
-- Hours count when they overlap [since, until), like the dashboard's other rollup panels.
-- The mean is exact (sums / counts of the hourly rollup). The quantile is the nearest rank's
-- bin mean of the merged log-bin histograms, within 2 % of the exact value, and is found in the
-- cheapest exact way per (step, provider):
--   * when every tenant that has values in an hour is asked for (the dashboard's "All"), the
--     hour's all-tenant row of provider_selection_hist_hourly_provider stands for them, and a
--     step that is one such hour is a binary search over its cumulative counts (no unnesting);
--   * otherwise the asked-for tenants' per-model rows of provider_selection_hist_hourly (and
--     the whole hours' all-tenant rows) are unnested and merged bin by bin.
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
), groups AS MATERIALIZED (
    SELECT h.bucket, h.provider_name, sum(h.n)::bigint AS n, sum(h.s) AS s,
           count(*) = 1 AND bool_and(h.whole) AS one_row, min(h.bucket_start) AS first_hour
    FROM hours h
    WHERE h.n > 0
    GROUP BY h.bucket, h.provider_name
), single AS (
    SELECT g.bucket, g.provider_name, provider_events_hist_quantile(p.counts, p.sums, p.cum, q) AS v
    FROM groups g
    JOIN provider_selection_hist_hourly_provider p
      ON p.bucket_start = g.first_hour AND p.provider_name = g.provider_name
     AND p.metric = provider_events_criteria_series.metric
    WHERE g.one_row
), parts AS (
    SELECT h.bucket, h.provider_name, u.bin, u.n, u.vs
    FROM hours h
    JOIN groups g ON g.bucket = h.bucket AND g.provider_name = h.provider_name AND NOT g.one_row
    JOIN provider_selection_hist_hourly_provider p
      ON p.bucket_start = h.bucket_start AND p.provider_name = h.provider_name
     AND p.metric = provider_events_criteria_series.metric
    CROSS JOIN LATERAL unnest(p.bins, p.counts, p.sums) AS u(bin, n, vs)
    WHERE h.whole AND h.n > 0
    UNION ALL
    SELECT h.bucket, h.provider_name, u.bin, u.n, u.vs
    FROM hours h
    JOIN provider_selection_hist_hourly x
      ON x.bucket_start = h.bucket_start AND x.provider_name = h.provider_name
     AND x.metric = provider_events_criteria_series.metric AND x.tenant_id = ANY(tenants)
    CROSS JOIN LATERAL unnest(x.bins, x.counts, x.sums) AS u(bin, n, vs)
    WHERE NOT h.whole AND h.n > 0
), merged AS (
    SELECT m.bucket, m.provider_name, m.n, m.vs,
           sum(m.n) OVER (PARTITION BY m.bucket, m.provider_name ORDER BY m.bin) AS cum,
           sum(m.n) OVER (PARTITION BY m.bucket, m.provider_name) AS total
    FROM (SELECT p.bucket, p.provider_name, p.bin, sum(p.n) AS n, sum(p.vs) AS vs
          FROM parts p GROUP BY p.bucket, p.provider_name, p.bin) m
), picked AS (
    SELECT c.bucket, c.provider_name,
           max(CASE WHEN c.cum >= greatest(1, ceil(q * c.total::float8))
                     AND c.cum - c.n < greatest(1, ceil(q * c.total::float8))
                    THEN c.vs / c.n END) AS v
    FROM merged c
    GROUP BY c.bucket, c.provider_name
)
SELECT g.bucket, g.provider_name, g.n, g.s / g.n, coalesce(s.v, p.v)
FROM groups g
LEFT JOIN single s ON s.bucket = g.bucket AND s.provider_name = g.provider_name
LEFT JOIN picked p ON p.bucket = g.bucket AND p.provider_name = g.provider_name
ORDER BY 1, 2
$$;
ALTER FUNCTION provider_events_criteria_series(integer, timestamptz, timestamptz, text[], interval, float8)
    SET search_path FROM CURRENT;

COMMENT ON FUNCTION provider_events_criteria_series(integer, timestamptz, timestamptz, text[], interval, float8) IS
    'Per step and provider: values, exact mean and the q-quantile (within 2 %) of one criterion (1 cost_per_token, 2 latency_ms, 3 quality_score) for the given tenants (NULL = all), from the hourly rollups.';
