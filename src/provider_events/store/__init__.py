"""PostgreSQL storage: versioned migrations and the idempotent batch writer.

``migrate(dsn)`` brings a database (the first schema of its ``search_path``) up to date;
``BatchWriter(dsn).write(rows)`` inserts events once each, keyed on ``event_id``.
Errors are :class:`~provider_events.DatabaseError`; :class:`DatabaseUnavailableError` means
retrying later may succeed, :class:`DatabaseLoginError` that DATABASE_URL must change.
"""

from __future__ import annotations

from ._migrate import (
    Migration,
    MigrationError,
    MigrationReport,
    discover,
    migrate,
    migration_status,
)
from ._pg import (
    COLUMNS,
    ROLLUP_TABLES,
    TABLE,
    BatchWriter,
    DatabaseLoginError,
    DatabaseUnavailableError,
    Row,
    WriteResult,
    connect,
    row_from_envelope,
)

__all__ = [
    "COLUMNS",
    "ROLLUP_TABLES",
    "TABLE",
    "BatchWriter",
    "DatabaseLoginError",
    "DatabaseUnavailableError",
    "Migration",
    "MigrationError",
    "MigrationReport",
    "Row",
    "WriteResult",
    "connect",
    "discover",
    "migrate",
    "migration_status",
    "row_from_envelope",
]
