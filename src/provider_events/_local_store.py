"""The embedded event store: every event kept locally when ``PROVIDER_EVENTS_SINK=local``.

With no Kafka and no PostgreSQL, this SQLite file is where events land, and ``stats``,
``recommend`` and ``report`` read it, so the whole product works with zero servers.
Writes are durable (WAL, ``synchronous=FULL``) and idempotent on ``event_id``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._config import Settings
from ._errors import OutboxCorruptError, OutboxError

__all__ = ["LocalEventStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    event_id        TEXT PRIMARY KEY,
    envelope        BLOB NOT NULL,
    stored_at       REAL NOT NULL DEFAULT (unixepoch('subsec'))
);
"""


class LocalEventStore:
    """An append-only, idempotent log of envelopes (JSON bytes) keyed by ``event_id``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None

    @classmethod
    def for_settings(cls, settings: Settings) -> LocalEventStore:
        return cls(settings.state_dir / "events.sqlite3")

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = FULL")
                conn.executescript(_SCHEMA)
            except sqlite3.DatabaseError as exc:
                if "not a database" in str(exc) or "malformed" in str(exc):
                    raise OutboxCorruptError(f"event store {self.path} is corrupted: {exc}") from None
                raise OutboxError(f"event store {self.path}: {exc}") from None
            except OSError as exc:
                raise OutboxError(f"cannot open event store {self.path}: {exc}") from None
            self._conn = conn
        return self._conn

    def add(self, events: Sequence[Any]) -> int:
        """Durably store ``OutgoingEvent``s (duplicates by ``event_id`` are ignored)."""
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            before = conn.total_changes
            conn.executemany(
                "INSERT OR IGNORE INTO events (event_id, envelope) VALUES (?, ?)",
                [(e.event_id, e.value) for e in events],
            )
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise OutboxError(f"event store {self.path}: {exc}") from None
        return conn.total_changes - before

    def envelopes(self) -> list[bytes]:
        conn = self._connect()
        return [bytes(row[0]) for row in conn.execute("SELECT envelope FROM events ORDER BY stored_at")]

    def count(self) -> int:
        return int(self._connect().execute("SELECT count(*) FROM events").fetchone()[0])

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
