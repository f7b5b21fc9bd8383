"""Outcome storage (``omninode.agent.provider.completed.v1``) in both stores.

``provider_outcomes`` holds one row per outcome, keyed on ``outcome_id``; the writers insert
idempotently and fold exactly the rows they inserted into ``provider_outcomes_hourly`` in the
same transaction (PostgreSQL: migration 0005; SQLite: :data:`SQLITE_OUTCOMES_SCHEMA`).
``provider_budgets`` keeps the daily budgets. psycopg is imported only by the PostgreSQL
writer, so the embedded store never needs it.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "OUTCOME_COLUMNS",
    "SQLITE_OUTCOMES_SCHEMA",
    "OutcomeWriteResult",
    "OutcomeWriter",
    "add_outcomes_sqlite",
    "outcome_row",
]

OUTCOME_COLUMNS: tuple[str, ...] = (
    "outcome_id",
    "event_id",
    "correlation_id",
    "tenant_id",
    "provider_name",
    "model_name",
    "requested_model",
    "completed_at",
    "agent",
    "sidechain",
    "project",
    "host",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "cost_usd",
    "cost_source",
    "price_version",
    "status",
    "error",
    "stop_reason",
    "latency_ms",
    "message_id",
    "request_id",
    "source",
    "kafka_partition",
    "kafka_offset",
)
_N = len(OUTCOME_COLUMNS)
_COLS = ", ".join(OUTCOME_COLUMNS)


def outcome_row(
    envelope: Any, partition: int | None = None, offset: int | None = None
) -> tuple[Any, ...]:
    """The ``provider_outcomes`` row of a decoded completion envelope (PostgreSQL types)."""
    p = envelope.payload
    return (
        p.outcome_id,
        envelope.event_id,
        p.correlation_id,
        envelope.tenant_id,
        p.provider_name,
        p.model_name,
        p.requested_model,
        p.completed_at,
        p.agent,
        p.sidechain,
        p.project,
        p.host,
        p.input_tokens,
        p.output_tokens,
        p.cache_read_tokens,
        p.cache_write_5m_tokens,
        p.cache_write_1h_tokens,
        p.cost_usd,
        p.cost_source,
        p.price_version,
        p.status,
        p.error,
        p.stop_reason,
        p.latency_ms,
        p.message_id,
        p.request_id,
        envelope.source,
        partition,
        offset,
    )


# -- SQLite (the embedded store) -----------------------------------------------------------
SQLITE_OUTCOMES_SCHEMA = """
CREATE TABLE IF NOT EXISTS provider_outcomes (
    outcome_id TEXT PRIMARY KEY, event_id TEXT NOT NULL, correlation_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL, provider_name TEXT NOT NULL, model_name TEXT NOT NULL,
    requested_model TEXT, completed_at INTEGER NOT NULL, agent TEXT, sidechain INTEGER NOT NULL,
    project TEXT, host TEXT, input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL,
    cache_read_tokens INTEGER NOT NULL, cache_write_5m_tokens INTEGER NOT NULL,
    cache_write_1h_tokens INTEGER NOT NULL, cost_usd REAL, cost_source TEXT NOT NULL,
    price_version TEXT, status TEXT NOT NULL, error TEXT, stop_reason TEXT, latency_ms REAL,
    message_id TEXT, request_id TEXT, source TEXT NOT NULL, kafka_partition INTEGER,
    kafka_offset INTEGER
);
CREATE INDEX IF NOT EXISTS idx_provider_outcomes_tenant_completed_at
    ON provider_outcomes (tenant_id, completed_at);
CREATE TABLE IF NOT EXISTS provider_outcomes_hourly (
    hour INTEGER NOT NULL, tenant_id TEXT NOT NULL, provider_name TEXT NOT NULL,
    model_name TEXT NOT NULL, project TEXT NOT NULL, outcomes INTEGER NOT NULL,
    unpriced INTEGER NOT NULL, input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL,
    cache_read_tokens INTEGER NOT NULL, cache_write_tokens INTEGER NOT NULL,
    cost_usd REAL NOT NULL,
    PRIMARY KEY (hour, tenant_id, provider_name, model_name, project)
);
CREATE TABLE IF NOT EXISTS provider_budgets (
    tenant_id TEXT NOT NULL, provider_name TEXT NOT NULL, daily_usd REAL NOT NULL,
    updated_at TEXT NOT NULL, PRIMARY KEY (tenant_id, provider_name)
);
"""
#: ``completed_at`` in SQLite: microseconds since the epoch (exact, sortable).
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _micros(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def _sqlite_row(envelope: Any) -> tuple[Any, ...]:
    row = list(outcome_row(envelope))
    row[0] = str(row[0])
    row[1] = str(row[1])
    row[7] = _micros(row[7])
    row[9] = int(row[9])
    return tuple(row)


_SQLITE_INSERT = f"INSERT OR IGNORE INTO provider_outcomes ({_COLS}) VALUES ({', '.join('?' * _N)})"
_SQLITE_ROLLUP = """
INSERT INTO provider_outcomes_hourly VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?)
ON CONFLICT (hour, tenant_id, provider_name, model_name, project) DO UPDATE SET
    outcomes = outcomes + 1,
    unpriced = unpriced + excluded.unpriced,
    input_tokens = input_tokens + excluded.input_tokens,
    output_tokens = output_tokens + excluded.output_tokens,
    cache_read_tokens = cache_read_tokens + excluded.cache_read_tokens,
    cache_write_tokens = cache_write_tokens + excluded.cache_write_tokens,
    cost_usd = cost_usd + excluded.cost_usd
"""


def add_outcomes_sqlite(conn: sqlite3.Connection, envelopes: Iterable[Any]) -> int:
    """Insert decoded completion envelopes not yet stored and fold them into the hourly
    rollup; call inside a transaction. Returns how many were new."""
    added = 0
    for env in envelopes:
        row = _sqlite_row(env)
        if conn.execute(_SQLITE_INSERT, row).rowcount != 1:
            continue
        added += 1
        p = env.payload
        hour = (row[7] // 3_600_000_000) * 3600
        conn.execute(
            _SQLITE_ROLLUP,
            (
                hour,
                env.tenant_id,
                p.provider_name,
                p.model_name,
                p.project or "",
                1 if p.cost_usd is None else 0,
                p.input_tokens,
                p.output_tokens,
                p.cache_read_tokens,
                p.cache_write_5m_tokens + p.cache_write_1h_tokens,
                p.cost_usd or 0.0,
            ),
        )
    return added


# -- PostgreSQL ------------------------------------------------------------------------------
_STAGE = "provider_outcomes_stage"
_PG_CREATE_STAGE = (
    f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} ON COMMIT DELETE ROWS "
    f"AS SELECT {_COLS} FROM provider_outcomes WITH NO DATA"
)
_PG_COPY = f"COPY {_STAGE} ({_COLS}) FROM STDIN"
_PG_ROLLUP_FROM = """
INSERT INTO provider_outcomes_hourly AS h
SELECT date_trunc('hour', completed_at), tenant_id, provider_name, model_name,
       coalesce(project, ''), count(*), count(*) FILTER (WHERE cost_usd IS NULL),
       sum(input_tokens), sum(output_tokens), sum(cache_read_tokens),
       sum(cache_write_5m_tokens + cache_write_1h_tokens), coalesce(sum(cost_usd), 0)
FROM {source}
GROUP BY 1, 2, 3, 4, 5
ON CONFLICT (hour, tenant_id, provider_name, model_name, project) DO UPDATE SET
    outcomes = h.outcomes + excluded.outcomes,
    unpriced = h.unpriced + excluded.unpriced,
    input_tokens = h.input_tokens + excluded.input_tokens,
    output_tokens = h.output_tokens + excluded.output_tokens,
    cache_read_tokens = h.cache_read_tokens + excluded.cache_read_tokens,
    cache_write_tokens = h.cache_write_tokens + excluded.cache_write_tokens,
    cost_usd = h.cost_usd + excluded.cost_usd
"""
_PG_INSERT_STAGED = (
    f"WITH ins AS (INSERT INTO provider_outcomes ({_COLS}) SELECT {_COLS} FROM {_STAGE} "
    "ON CONFLICT (outcome_id) DO NOTHING RETURNING *), "
    "rolled AS (" + _PG_ROLLUP_FROM.format(source="ins") + ") SELECT count(*) FROM ins"
)
_PG_INSERT_ONE = (
    f"WITH ins AS (INSERT INTO provider_outcomes ({_COLS}) VALUES ({', '.join(['%s'] * _N)}) "
    "ON CONFLICT (outcome_id) DO NOTHING RETURNING *), "
    "rolled AS (" + _PG_ROLLUP_FROM.format(source="ins") + ") SELECT count(*) FROM ins"
)


@dataclass(slots=True)
class OutcomeWriteResult:
    inserted: int = 0
    duplicates: int = 0
    #: (index in the batch, reason) of rows PostgreSQL refused; they are not stored.
    rejected: list[tuple[int, str]] = field(default_factory=list)


class OutcomeWriter:
    """Writes outcome rows to PostgreSQL in one transaction per batch, idempotently.

    Raises :class:`~provider_events.store.DatabaseUnavailableError` when PostgreSQL is down
    (nothing committed; call again) and ``DatabaseError`` for anything permanent.
    """

    def __init__(self, dsn: str, *, application_name: str = "provider-events-consumer") -> None:
        self._dsn = dsn
        self._application_name = application_name
        self._conn: Any = None
        self._stage_ready = False

    def _connection(self) -> Any:
        from provider_events.store._pg import connect

        if self._conn is None or self._conn.closed:
            self._conn = connect(self._dsn, application_name=self._application_name)
            self._stage_ready = False
        return self._conn

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def write(self, rows: Sequence[tuple[Any, ...]]) -> OutcomeWriteResult:
        if not rows:
            return OutcomeWriteResult()
        import psycopg

        from provider_events.store._pg import translate_error

        try:
            conn = self._connection()
            with conn.transaction(), conn.cursor() as cur:
                if not self._stage_ready:
                    cur.execute(_PG_CREATE_STAGE)
                with cur.copy(_PG_COPY) as copy:
                    for row in rows:
                        copy.write_row(row)
                cur.execute(_PG_INSERT_STAGED)
                inserted = int(cur.fetchone()[0])
            self._stage_ready = True
            return OutcomeWriteResult(inserted, len(rows) - inserted)
        except (psycopg.DataError, psycopg.IntegrityError):
            return self._row_by_row(rows)
        except psycopg.Error as exc:
            self._after_failure(exc)
            raise translate_error(exc, "writing outcomes") from None

    def _after_failure(self, exc: BaseException) -> None:
        import psycopg

        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
            self.close()
        self._stage_ready = False

    def _row_by_row(self, rows: Sequence[tuple[Any, ...]]) -> OutcomeWriteResult:
        import psycopg

        from provider_events.settings import redact_dsn
        from provider_events.store._pg import translate_error

        result = OutcomeWriteResult()
        try:
            conn = self._connection()
            with conn.transaction(), conn.cursor() as cur:
                for index, row in enumerate(rows):
                    try:
                        with conn.transaction():
                            cur.execute(_PG_INSERT_ONE, row)
                            new = int(cur.fetchone()[0])
                    except (psycopg.DataError, psycopg.IntegrityError) as exc:
                        reason = " ".join(redact_dsn(str(exc)).split())[:500]
                        result.rejected.append((index, reason or type(exc).__name__))
                        continue
                    if new:
                        result.inserted += 1
                    else:
                        result.duplicates += 1
        except psycopg.Error as exc:
            self._after_failure(exc)
            raise translate_error(exc, "writing outcomes") from None
        return result
