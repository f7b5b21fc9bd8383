"""Versioned SQL migrations: ``store/migrations/NNNN_name.sql``, applied in order, once.

Applied versions are recorded in ``provider_events_schema_migrations`` (in the first schema of
the connection's ``search_path``) with the file's SHA-256, so a migration edited after it was
applied is reported instead of silently diverging. Every run holds a session advisory lock
keyed on the schema, so two ``migrate`` processes at once apply each migration exactly once:
the second waits, then finds nothing left to do.

Each migration runs in one transaction together with its bookkeeping row, so a failing or
interrupted migration leaves nothing behind and is simply retried by the next run.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from typing import Any

import psycopg

from provider_events._retry import Backoff
from provider_events.errors import MigrationError
from provider_events.store._pg import connect, translate_error

__all__ = [
    "MIGRATIONS_TABLE",
    "Migration",
    "MigrationError",
    "MigrationReport",
    "discover",
    "migrate",
    "migration_status",
]

MIGRATIONS_TABLE = "provider_events_schema_migrations"
_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")
_LOCK_NAMESPACE = b"provider_events.migrate:"
#: Polling another run's migration lock: 50 ms, doubling up to 1 s.
_LOCK_RETRY = Backoff(0.05, 1.0)


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str = field(repr=False)

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"


@dataclass(slots=True)
class MigrationReport:
    """What a :func:`migrate` run found and did."""

    schema: str
    applied: list[tuple[Migration, float]] = field(default_factory=list)
    already_applied: list[int] = field(default_factory=list)
    #: versions recorded in the database that this code does not know (a newer release ran).
    unknown: list[int] = field(default_factory=list)
    lock_wait_seconds: float = 0.0


def discover(files: Sequence[tuple[str, str]] | None = None) -> list[Migration]:
    """The packaged migrations in version order, or those given as ``(filename, sql)`` pairs.

    Raises :class:`MigrationError` for a badly named file or a repeated version.
    """
    if files is None:
        root = resources.files("provider_events.store").joinpath("migrations")
        files = [
            (entry.name, entry.read_text(encoding="utf-8"))
            for entry in root.iterdir()
            if entry.name.endswith(".sql")
        ]
    found: dict[int, Migration] = {}
    for filename, sql in files:
        match = _NAME.match(filename)
        if match is None:
            raise MigrationError(f"migration file {filename!r} is not named NNNN_lower_snake.sql")
        version = int(match["version"])
        if version in found:
            raise MigrationError(f"two migrations share version {version:04d}")
        found[version] = Migration(version, match["name"], sql)
    return [found[v] for v in sorted(found)]


def _lock_key(schema: str) -> int:
    digest = hashlib.sha256(_LOCK_NAMESPACE + schema.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


_CREATE_TABLE = f"""
CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (
    version      integer     PRIMARY KEY,
    name         text        NOT NULL,
    checksum     text        NOT NULL,
    applied_at   timestamptz NOT NULL DEFAULT now(),
    execution_ms integer     NOT NULL
)"""


def _schema(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute("SELECT current_schema()").fetchone()
    if row is None or row[0] is None:
        raise MigrationError(
            "no schema to migrate: the first schema of search_path does not exist "
            "(create it, or fix the search_path / options in DATABASE_URL)"
        )
    return str(row[0])


def _applied(conn: psycopg.Connection[Any]) -> dict[int, tuple[str, str, datetime]]:
    exists = conn.execute("SELECT to_regclass(%s)", [MIGRATIONS_TABLE]).fetchone()
    if exists is None or exists[0] is None:
        return {}
    rows = conn.execute(f"SELECT version, name, checksum, applied_at FROM {MIGRATIONS_TABLE}")
    return {int(v): (n, c, at) for v, n, c, at in rows.fetchall()}


def _check_drift(
    migrations: Sequence[Migration], applied: dict[int, tuple[str, str, datetime]]
) -> None:
    for m in migrations:
        if m.version in applied and applied[m.version][1] != m.checksum:
            raise MigrationError(
                f"migration {m.label} was changed after it was applied "
                f"(checksum {applied[m.version][1][:12]}… in the database, {m.checksum[:12]}… on "
                "disk); add a new migration instead of editing an applied one"
            )


def _acquire(conn: psycopg.Connection[Any], key: int, timeout: float) -> float:
    started, attempt = time.monotonic(), 0
    while True:
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", [key]).fetchone()
        if row and row[0]:
            return time.monotonic() - started
        if time.monotonic() - started >= timeout:
            raise MigrationError(f"another migrate run held the migration lock for {timeout:g}s")
        attempt += 1
        time.sleep(_LOCK_RETRY.delay(attempt))


def migrate(
    dsn: str,
    *,
    migrations: Sequence[Migration] | None = None,
    target: int | None = None,
    lock_timeout: float = 120.0,
) -> MigrationReport:
    """Apply every pending migration (up to ``target``), safely under concurrency.

    Raises :class:`MigrationError` (drift, a failing migration) or ``DatabaseError``.
    """
    todo = list(discover() if migrations is None else migrations)
    conn = connect(dsn, application_name="provider-events-migrate")
    try:
        schema = _schema(conn)
        report = MigrationReport(schema=schema)
        key = _lock_key(schema)
        report.lock_wait_seconds = _acquire(conn, key, lock_timeout)
        try:
            conn.execute(_CREATE_TABLE)
            applied = _applied(conn)
            _check_drift(todo, applied)
            known = {m.version for m in todo}
            report.unknown = sorted(v for v in applied if v not in known)
            for m in todo:
                if target is not None and m.version > target:
                    break
                if m.version in applied:
                    report.already_applied.append(m.version)
                    continue
                report.applied.append((m, _apply(conn, m)))
        finally:
            _release(conn, key)
        return report
    except psycopg.Error as exc:
        raise translate_error(exc, "migrating") from None
    finally:
        conn.close()


def _release(conn: psycopg.Connection[Any], key: int) -> None:
    if conn.closed:
        return  # the server released the session lock with the connection
    # A broken connection releases it too; the original error matters more.
    with contextlib.suppress(psycopg.Error):
        conn.execute("SELECT pg_advisory_unlock(%s)", [key])


_RECORD = (
    f"INSERT INTO {MIGRATIONS_TABLE} (version, name, checksum, execution_ms)"
    " VALUES (%s, %s, %s, %s)"
)


def _apply(conn: psycopg.Connection[Any], m: Migration) -> float:
    started = time.monotonic()
    try:
        with conn.transaction():
            # No parameters: sent with the simple query protocol, so a file may hold many
            # statements.
            conn.execute(m.sql.encode("utf-8"))
            elapsed = time.monotonic() - started
            conn.execute(_RECORD, [m.version, m.name, m.checksum, int(elapsed * 1000)])
    except psycopg.Error as exc:
        if isinstance(exc, psycopg.OperationalError):
            raise
        raise MigrationError(str(translate_error(exc, f"migration {m.label} failed"))) from None
    return elapsed


def migration_status(dsn: str) -> tuple[str, list[tuple[Migration, datetime | None]], list[int]]:
    """(schema, each known migration with its applied time or ``None``, unknown versions)."""
    todo = discover()
    conn = connect(dsn, application_name="provider-events-migrate")
    try:
        schema = _schema(conn)
        applied = _applied(conn)
    except psycopg.Error as exc:
        raise translate_error(exc, "reading migrations") from None
    finally:
        conn.close()
    known = {m.version for m in todo}
    rows = [(m, applied[m.version][2] if m.version in applied else None) for m in todo]
    return schema, rows, sorted(v for v in applied if v not in known)
