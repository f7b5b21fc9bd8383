"""Storage: PostgreSQL (versioned migrations, the idempotent batch writer) and the embedded
SQLite store, with the column list both share.

``migrate(dsn)`` brings a database (the first schema of its ``search_path``) up to date;
``BatchWriter(dsn).write(rows)`` inserts events once each, keyed on ``event_id``.
Errors are :class:`~provider_events.DatabaseError`; :class:`DatabaseUnavailableError` means
retrying later may succeed, :class:`DatabaseLoginError` that DATABASE_URL must change.

Attributes load lazily: importing ``provider_events.store`` (or the embedded store) never
imports psycopg; touching a PostgreSQL name does.

May import: ``events``, ``errors``, ``settings``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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

_WHERE = {
    "Migration": "_migrate",
    "MigrationError": "_migrate",
    "MigrationReport": "_migrate",
    "discover": "_migrate",
    "migrate": "_migrate",
    "migration_status": "_migrate",
    "COLUMNS": "_pg",
    "ROLLUP_TABLES": "_pg",
    "TABLE": "_pg",
    "BatchWriter": "_pg",
    "DatabaseLoginError": "_pg",
    "DatabaseUnavailableError": "_pg",
    "Row": "_pg",
    "WriteResult": "_pg",
    "connect": "_pg",
    "row_from_envelope": "_pg",
}

if TYPE_CHECKING:
    from provider_events.store._migrate import (
        Migration,
        MigrationError,
        MigrationReport,
        discover,
        migrate,
        migration_status,
    )
    from provider_events.store._pg import (
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


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'provider_events.store' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
