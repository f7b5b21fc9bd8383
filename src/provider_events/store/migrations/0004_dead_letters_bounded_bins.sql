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
