-- provider_selection_events: one row per omninode.agent.provider.selected.v1 event.
--
-- The integration guide's table, in PostgreSQL: indexes are separate CREATE INDEX statements
-- (inline INDEX is MySQL syntax), correlation_id is text (the guide's own ids, such as
-- abc-123-def-456, are not UUIDs), and the surrogate key is a bigint identity (not SERIAL).
-- event_id is the idempotency key end to end: the consumer inserts with
-- ON CONFLICT (event_id) DO NOTHING, so a redelivered event never becomes a second row.
-- See docs/database.md.

CREATE TABLE provider_selection_events (
    id                 bigint       GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id           uuid         NOT NULL,
    correlation_id     text         NOT NULL,
    provider_name      varchar(100) NOT NULL,
    model_name         varchar(200) NOT NULL,
    selection_reason   text,
    selection_criteria jsonb        NOT NULL DEFAULT '{}'::jsonb,
    selected_at        timestamptz  NOT NULL,
    created_at         timestamptz  NOT NULL DEFAULT now(),
    tenant_id          text         NOT NULL DEFAULT 'default',
    namespace          text         NOT NULL,
    source             text         NOT NULL,
    causation_id       text,
    event_timestamp    timestamptz  NOT NULL,
    kafka_partition    integer,
    kafka_offset       bigint,
    CONSTRAINT provider_selection_events_event_id_key UNIQUE (event_id)
);

-- The guide's three indexes (names prefixed: PostgreSQL index names are per schema, not per table).
CREATE INDEX idx_provider_selection_events_correlation_id
    ON provider_selection_events (correlation_id);
CREATE INDEX idx_provider_selection_events_provider_name
    ON provider_selection_events (provider_name);
CREATE INDEX idx_provider_selection_events_selected_at
    ON provider_selection_events (selected_at DESC);
-- Per-tenant time ranges (stats, reports, retention).
CREATE INDEX idx_provider_selection_events_tenant_selected_at
    ON provider_selection_events (tenant_id, selected_at);

COMMENT ON TABLE provider_selection_events IS
    'One row per omninode.agent.provider.selected.v1 event; event_id is unique (idempotent ingest).';
COMMENT ON COLUMN provider_selection_events.correlation_id IS
    'Opaque request id (text): UUIDv7 when provider-events generates it, any string otherwise.';
COMMENT ON COLUMN provider_selection_events.event_timestamp IS
    'The envelope''s timestamp (when the event was built); selected_at is the payload''s.';
COMMENT ON COLUMN provider_selection_events.kafka_partition IS
    'Kafka partition the row was consumed from (NULL when not ingested from Kafka).';
COMMENT ON COLUMN provider_selection_events.kafka_offset IS
    'Kafka offset the row was consumed from (NULL when not ingested from Kafka).';
