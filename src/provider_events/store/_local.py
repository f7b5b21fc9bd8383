"""The embedded event store: every event kept locally when ``PROVIDER_EVENTS_SINK=local``.

With no Kafka and no PostgreSQL, this SQLite file is where events land, and ``stats``,
``recommend`` and ``report`` read it, so the whole product works with zero servers.
Writes are durable (WAL, ``synchronous=FULL``) and idempotent on ``event_id``.

Three layers, written in one transaction per :meth:`LocalEventStore.add`:

* ``events``: the envelopes exactly as published (JSON bytes), the store's log;
* ``provider_selection_events``: one normalized row per event with the PostgreSQL table's
  columns (``selection_criteria`` as JSON text, times as RFC 3339 text);
* completion events (measured outcomes) go to ``provider_outcomes`` and its hourly rollup
  instead (``store/_outcomes.py``), idempotent on ``outcome_id``;
* the rollups of ``store/migrations/0002_rollups.sql`` (hourly counts and sums, reasons,
  hourly and daily histograms), so the analytics queries are the same as on PostgreSQL.

A store written by an older version (only ``events``) is brought up to date when opened.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

from provider_events.analytics._model import bin_of, derive
from provider_events.analytics._sql import (
    SQLITE_NEW_ROWS,
    SQLITE_NEW_ROWS_INSERT,
    SQLITE_SCHEMA,
    SQLITE_UPSERTS,
)
from provider_events.errors import InvalidEventError, OutboxCorruptError, OutboxError
from provider_events.events._catalog import PROVIDER_COMPLETED_V1, PROVIDER_SELECTED_V1
from provider_events.settings import Settings
from provider_events.store._columns import EVENT_COLUMNS, TABLE
from provider_events.store._outcomes import SQLITE_OUTCOMES_SCHEMA, add_outcomes_sqlite

__all__ = ["LocalEventStore"]

#: ``PRAGMA user_version`` of a store with the normalized table and rollups.
SCHEMA_VERSION = 2

# ``stored_at`` is written explicitly: ``unixepoch('subsec')`` needs SQLite 3.42, and on older
# libraries it is NULL, which ``INSERT OR IGNORE`` would silently turn into a dropped event.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    event_id        TEXT PRIMARY KEY,
    envelope        BLOB NOT NULL,
    stored_at       REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0)
);
"""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_HOUR = timedelta(hours=1)
_DAY = timedelta(days=1)
_INSERT_ROW = (
    f"INSERT INTO {TABLE} ({', '.join(EVENT_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(EVENT_COLUMNS))})"
)
_encode = msgspec.json.Encoder().encode


def _text_time(moment: datetime) -> str:
    # isoformat, not strftime("%Y"): glibc writes year 999 as "999", which sorts after "2025"
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _normalize(envelope_bytes: bytes) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """(row for ``provider_selection_events``, row for ``temp.new_rows``) of one envelope."""
    from provider_events.events._validation import decode_envelope

    env = decode_envelope(envelope_bytes)
    if env.event_type != PROVIDER_SELECTED_V1.event_type:
        raise InvalidEventError("not a provider-selection event")  # outcomes: _outcomes.py
    p = env.payload
    criteria = p.selection_criteria
    row = (
        str(env.event_id),
        p.correlation_id,
        p.provider_name,
        p.model_name,
        p.selection_reason,
        _encode(criteria).decode("utf-8"),
        _text_time(p.selected_at),
        env.tenant_id,
        env.namespace,
        env.source,
        env.causation_id,
        _text_time(env.timestamp),
    )
    offset = p.selected_at - _EPOCH
    hour = (offset // _HOUR) * 3600
    day = (offset // _DAY) * 86400
    d = derive(criteria)
    bins = [
        None if v is None else bin_of(v) for v in (d.cost_per_token, d.latency_ms, d.quality_score)
    ]
    derived = (
        hour,
        day,
        env.tenant_id,
        p.provider_name,
        p.model_name,
        p.selection_reason or "",
        d.cost_per_token,
        d.latency_ms,
        d.quality_score,
        d.input_tokens,
        d.output_tokens,
        d.tokens,
        d.cost_usd,
        *bins,
    )
    return row, derived


class LocalEventStore:
    """An append-only, idempotent store of envelopes keyed by ``event_id``, with analytics."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None

    @classmethod
    def for_settings(cls, settings: Settings) -> LocalEventStore:
        return cls(settings.state_dir / "events.sqlite3")

    def connection(self) -> sqlite3.Connection:
        """The open connection (schema up to date); analytics reads through it."""
        return self._connect()

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = FULL")
                conn.executescript(_SCHEMA)
                conn.executescript(SQLITE_OUTCOMES_SCHEMA)
                if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                    self._upgrade(conn)
                conn.execute(SQLITE_NEW_ROWS)
            except sqlite3.DatabaseError as exc:
                if "not a database" in str(exc) or "malformed" in str(exc):
                    raise OutboxCorruptError(
                        f"event store {self.path} is corrupted: {exc}"
                    ) from None
                raise OutboxError(f"event store {self.path}: {exc}") from None
            except OSError as exc:
                raise OutboxError(f"cannot open event store {self.path}: {exc}") from None
            self._conn = conn
        return self._conn

    def _upgrade(self, conn: sqlite3.Connection) -> None:
        """Create the normalized table and rollups, and fill them from ``events``."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                for statement in SQLITE_SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(SQLITE_NEW_ROWS)
                envelopes = (
                    bytes(r[0])
                    for r in conn.execute(
                        "SELECT envelope FROM events ORDER BY stored_at"
                    ).fetchall()
                )
                self._insert_normalized(conn, envelopes)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    @staticmethod
    def _insert_normalized(conn: sqlite3.Connection, envelopes: Iterable[bytes]) -> int:
        """Add rows not yet present and fold them into the rollups; returns how many."""
        rows: list[tuple[Any, ...]] = []
        derived: list[tuple[Any, ...]] = []
        seen: set[str] = set()
        for value in envelopes:
            try:
                row, extra = _normalize(value)
            except InvalidEventError:
                continue  # the publisher validated it; an unreadable legacy row stays raw only
            if row[0] in seen:
                continue
            seen.add(row[0])
            rows.append(row)
            derived.append(extra)
        if not rows:
            return 0
        ids = [r[0] for r in rows]
        present: set[str] = set()
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            present.update(
                r[0]
                for r in conn.execute(
                    f"SELECT event_id FROM provider_selection_events WHERE event_id IN ({marks})",
                    chunk,
                )
            )
        if present:
            keep = [i for i, r in enumerate(rows) if r[0] not in present]
            rows = [rows[i] for i in keep]
            derived = [derived[i] for i in keep]
        if not rows:
            return 0
        conn.executemany(_INSERT_ROW, rows)
        conn.executemany(SQLITE_NEW_ROWS_INSERT, derived)
        for statement in SQLITE_UPSERTS:
            conn.execute(statement)
        conn.execute("DELETE FROM temp.new_rows")
        return len(rows)

    def add(self, events: Sequence[Any]) -> int:
        """Durably store ``OutgoingEvent``s (duplicates by ``event_id`` are ignored)."""
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            before = conn.total_changes
            now = time.time()
            conn.executemany(
                "INSERT OR IGNORE INTO events (event_id, envelope, stored_at) VALUES (?, ?, ?)",
                [(e.event_id, e.value, now) for e in events],
            )
            added = conn.total_changes - before
            completed = PROVIDER_COMPLETED_V1.event_type
            self._insert_normalized(conn, (e.value for e in events if e.event_type != completed))
            outcomes = [e.value for e in events if e.event_type == completed]
            if outcomes:
                from provider_events.events._validation import decode_envelope

                add_outcomes_sqlite(conn, (decode_envelope(v) for v in outcomes))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise OutboxError(f"event store {self.path}: {exc}") from None
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return added

    def envelopes(self) -> list[bytes]:
        conn = self._connect()
        return [
            bytes(row[0]) for row in conn.execute("SELECT envelope FROM events ORDER BY stored_at")
        ]

    def count(self) -> int:
        return int(self._connect().execute("SELECT count(*) FROM events").fetchone()[0])

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
