"""``provider-events migrate``: apply the PostgreSQL migrations (``--status`` to only list)."""

from __future__ import annotations

import argparse

from provider_events.cli._common import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_OK,
    configure_logging,
    fail,
    settings_or_exit,
)

NO_DATABASE = (
    "DATABASE_URL is not set (e.g. postgresql://user:password@host:5432/dbname); "
    "export it or put it in .env"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Apply pending migrations to the database in DATABASE_URL (its first search_path "
        "schema). Safe to run repeatedly and from several processes at once."
    )
    p.add_argument("--status", action="store_true", help="list migrations and exit")
    p.add_argument("--verbose", "-v", action="store_true", help="debug logs on stderr")


def run(args: argparse.Namespace) -> int:
    configure_logging(args.verbose)
    settings = settings_or_exit()
    dsn = settings.database_url.reveal()
    if not dsn:
        return fail(NO_DATABASE, EXIT_BAD_INPUT)
    from provider_events.errors import ConfigError, DatabaseError
    from provider_events.store import migrate, migration_status
    from provider_events.store._pg import check_database_url

    try:
        check_database_url(dsn)
    except ConfigError as exc:
        return fail(f"configuration: {exc}", EXIT_BAD_INPUT)

    try:
        if args.status:
            schema, rows, unknown = migration_status(dsn)
            for migration, applied_at in rows:
                state = f"applied {applied_at:%Y-%m-%d %H:%M:%S%z}" if applied_at else "pending"
                print(f"{migration.label}  {state}")
            for version in unknown:
                print(f"{version:04d}  applied, unknown to this version of provider-events")
            print(f"schema {schema}: {sum(1 for _, a in rows if a is None)} pending")
            return EXIT_OK
        report = migrate(dsn)
    except DatabaseError as exc:
        return fail(str(exc), EXIT_FAILED)
    for migration, seconds in report.applied:
        print(f"applied {migration.label} ({seconds * 1000:.0f} ms)")
    for version in report.unknown:
        print(f"note: migration {version:04d} is applied but unknown to this version")
    total = len(report.applied) + len(report.already_applied)
    if report.applied:
        print(f"schema {report.schema}: {len(report.applied)} applied, {total} in total")
    else:
        print(f"schema {report.schema}: up to date ({total} migration(s) applied)")
    return EXIT_OK
