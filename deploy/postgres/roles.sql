-- Least-privilege roles for provider-events (see docs/security.md).
--
--   owner     runs `provider-events migrate`; owns the schema, tables, functions and triggers
--   consumer  runs `provider-events consume`; INSERT and SELECT on provider_selection_events,
--             nothing else (cannot UPDATE, DELETE, TRUNCATE, ALTER or DROP anything)
--   reader    runs `stats`, `recommend`, `report` and Grafana; SELECT only
--
-- For a database dedicated to provider-events: it revokes CONNECT and TEMPORARY on the database
-- from PUBLIC. Run it with psql as a superuser, TWICE: before the first `migrate` (roles,
-- schema) and again after every `migrate` (grants on the tables, rollup triggers). Idempotent.
-- Passwords are never in this file; set them yourself (\password ROLE, or ALTER ROLE):
--
--   psql "$ADMIN_URL" -v db=provider_events -v schema=provider_events -v owner=pe_owner \
--        -v consumer=pe_consumer -v reader=pe_reader -f deploy/postgres/roles.sql
--   DATABASE_URL='postgresql://pe_owner:...@db.example.com/provider_events?sslmode=verify-full' \
--        provider-events migrate
--   psql "$ADMIN_URL" -v db=... (same variables) -f deploy/postgres/roles.sql
--
-- Each role gets search_path = the schema in this database, so its DATABASE_URL needs no
-- `options`.

\set ON_ERROR_STOP 1

SELECT NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'owner') AS create_owner,
       NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'consumer') AS create_consumer,
       NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'reader') AS create_reader
\gset
\if :create_owner
CREATE ROLE :"owner" LOGIN;
\endif
\if :create_consumer
CREATE ROLE :"consumer" LOGIN;
\endif
\if :create_reader
CREATE ROLE :"reader" LOGIN;
\endif

REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT CONNECT ON DATABASE :"db" TO :"owner", :"consumer", :"reader";
-- A batch holding redelivered events is written through a temporary staging table.
GRANT TEMPORARY ON DATABASE :"db" TO :"consumer";

CREATE SCHEMA IF NOT EXISTS :"schema" AUTHORIZATION :"owner";
GRANT USAGE, CREATE ON SCHEMA :"schema" TO :"owner";
GRANT USAGE ON SCHEMA :"schema" TO :"consumer", :"reader";
ALTER ROLE :"owner" IN DATABASE :"db" SET search_path = :"schema";
ALTER ROLE :"consumer" IN DATABASE :"db" SET search_path = :"schema";
ALTER ROLE :"reader" IN DATABASE :"db" SET search_path = :"schema";
ALTER ROLE :"reader" IN DATABASE :"db" SET statement_timeout = '30s';
-- Tables the owner creates later are readable by the reader without another run.
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA :"schema" GRANT SELECT ON TABLES TO :"reader";

-- After `migrate`: grants on the tables that exist by now.
SELECT to_regclass(format('%I.provider_selection_events', :'schema')) IS NOT NULL AS migrated
\gset
\if :migrated
-- INSERT and SELECT cover COPY and INSERT .. ON CONFLICT (event_id) DO NOTHING RETURNING.
-- The id column is an identity column: inserting needs no grant on its sequence.
GRANT INSERT, SELECT ON :"schema".provider_selection_events TO :"consumer";
GRANT SELECT ON ALL TABLES IN SCHEMA :"schema" TO :"reader";
-- The rollup tables are kept by statement triggers on provider_selection_events. A trigger
-- function runs with the rights of the role that inserted, so without this the consumer would
-- need INSERT and UPDATE on every rollup table. Made SECURITY DEFINER, they run as the owner
-- (their search_path is pinned by the migration), and the consumer needs no rollup grant.
SELECT set_config('provider_events.table', format('%I.provider_selection_events', :'schema'), false);
DO $$
DECLARE
    fn regprocedure;
BEGIN
    FOR fn IN
        SELECT DISTINCT t.tgfoid::regprocedure
        FROM pg_trigger t
        WHERE t.tgrelid = current_setting('provider_events.table')::regclass
          AND NOT t.tgisinternal
    LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_proc p WHERE p.oid = fn AND p.proconfig IS NOT NULL) THEN
            RAISE EXCEPTION 'trigger function % has no pinned search_path; not making it SECURITY DEFINER', fn;
        END IF;
        EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER', fn);
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', fn);
    END LOOP;
END $$;
-- Since migration 0004 the consumer's batch writer folds its own batches into the rollups
-- (provider_events_apply_deltas(), run as the consumer: it reads the session's own temporary
-- delta tables, which a SECURITY DEFINER owner could not), so the consumer writes the rollup
-- tables; and its last resort for a message no DLQ accepts is the dead-letter table.
SELECT to_regclass(format('%I.provider_events_dead_letters', :'schema')) IS NOT NULL AS writer_rollups
\gset
\if :writer_rollups
GRANT SELECT, INSERT, UPDATE ON
    :"schema".provider_selection_rollup_hourly,
    :"schema".provider_selection_reasons_hourly,
    :"schema".provider_selection_hist_hourly,
    :"schema".provider_selection_hist_daily,
    :"schema".provider_selection_hist_hourly_all,
    :"schema".provider_selection_hist_daily_all,
    :"schema".provider_selection_hist_hourly_provider,
    :"schema".provider_selection_hist_daily_provider,
    :"schema".provider_selection_hist_hourly_tenant
    TO :"consumer";
GRANT INSERT, SELECT ON :"schema".provider_events_dead_letters TO :"consumer";
\endif
-- Since migration 0007 the batch writer stages its batches' rollup deltas in the pending tables
-- and merges them into the rollups every few seconds (provider_events_merge_pending(), run as
-- the consumer): it appends to them, and a merge deletes what it folds in.
SELECT to_regclass(format('%I.provider_events_pending_roll', :'schema')) IS NOT NULL AS staged_rollups
\gset
\if :staged_rollups
GRANT SELECT, INSERT, DELETE ON
    :"schema".provider_events_pending_roll,
    :"schema".provider_events_pending_reasons,
    :"schema".provider_events_pending_bins
    TO :"consumer";
\endif
-- Measured outcomes (migration 0005): the consumer's second writer inserts outcomes and folds
-- them into the hourly rollup itself (no trigger), and the spend gauges read the budgets.
SELECT to_regclass(format('%I.provider_outcomes', :'schema')) IS NOT NULL AS outcomes
\gset
\if :outcomes
GRANT INSERT, SELECT ON :"schema".provider_outcomes TO :"consumer";
GRANT INSERT, SELECT, UPDATE ON :"schema".provider_outcomes_hourly TO :"consumer";
GRANT SELECT ON :"schema".provider_budgets TO :"consumer";
\endif
\endif
