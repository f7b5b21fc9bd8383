-- provider_outcomes: one row per omninode.agent.provider.completed.v1 event (what a model
-- response measured: tokens, cost, stop reason), plus the hourly rollup `usage` reads, and
-- the daily budgets `budget set` keeps.
--
-- outcome_id (UUIDv5 of the response's message.id and requestId) is the key: the same response
-- imported twice, or from two machines, is one row (INSERT ... ON CONFLICT DO NOTHING).
-- The writer (store/_outcomes.py) folds exactly the rows it inserted into the rollup in the
-- same transaction, so the rollup never counts a duplicate. cost_usd is NULL when unpriced.
-- See docs/usage.md.

CREATE TABLE provider_outcomes (
    outcome_id            uuid         PRIMARY KEY,
    event_id              uuid         NOT NULL,
    correlation_id        text         NOT NULL,
    tenant_id             text         NOT NULL DEFAULT 'default',
    provider_name         varchar(100) NOT NULL,
    model_name            varchar(200) NOT NULL,
    requested_model       varchar(200),
    completed_at          timestamptz  NOT NULL,
    agent                 text,
    sidechain             boolean      NOT NULL DEFAULT false,
    project               text,
    host                  text,
    input_tokens          bigint       NOT NULL CHECK (input_tokens >= 0),
    output_tokens         bigint       NOT NULL CHECK (output_tokens >= 0),
    cache_read_tokens     bigint       NOT NULL CHECK (cache_read_tokens >= 0),
    cache_write_5m_tokens bigint       NOT NULL CHECK (cache_write_5m_tokens >= 0),
    cache_write_1h_tokens bigint       NOT NULL CHECK (cache_write_1h_tokens >= 0),
    cost_usd              double precision CHECK (cost_usd >= 0),
    cost_source           text         NOT NULL CHECK (cost_source IN ('reported', 'calculated', 'unpriced')),
    price_version         text,
    status                text         NOT NULL DEFAULT 'ok',
    error                 text,
    stop_reason           text,
    latency_ms            double precision,
    message_id            text,
    request_id            text,
    source                text         NOT NULL,
    created_at            timestamptz  NOT NULL DEFAULT now(),
    kafka_partition       integer,
    kafka_offset          bigint
);
CREATE INDEX idx_provider_outcomes_tenant_completed_at ON provider_outcomes (tenant_id, completed_at);
CREATE INDEX idx_provider_outcomes_correlation_id ON provider_outcomes (correlation_id);

CREATE TABLE provider_outcomes_hourly (
    hour               timestamptz      NOT NULL,
    tenant_id          text             NOT NULL,
    provider_name      varchar(100)     NOT NULL,
    model_name         varchar(200)     NOT NULL,
    project            text             NOT NULL,  -- '' when unknown
    outcomes           bigint           NOT NULL,
    unpriced           bigint           NOT NULL,
    input_tokens       numeric          NOT NULL,
    output_tokens      numeric          NOT NULL,
    cache_read_tokens  numeric          NOT NULL,
    cache_write_tokens numeric          NOT NULL,
    cost_usd           double precision NOT NULL,  -- of the priced outcomes
    PRIMARY KEY (hour, tenant_id, provider_name, model_name, project)
);

CREATE TABLE provider_budgets (
    tenant_id     text             NOT NULL,  -- '' for every tenant
    provider_name text             NOT NULL,  -- '' for every provider
    daily_usd     double precision NOT NULL CHECK (daily_usd >= 0),
    updated_at    timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, provider_name)
);

COMMENT ON TABLE provider_outcomes IS
    'One row per omninode.agent.provider.completed.v1 event; outcome_id is unique (idempotent ingest).';
COMMENT ON COLUMN provider_outcomes.cost_usd IS
    'USD; NULL exactly when cost_source = ''unpriced'' (never reported as 0).';
