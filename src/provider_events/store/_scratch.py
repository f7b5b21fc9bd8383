"""Throwaway schemas for tests and benchmarks on a shared PostgreSQL server.

Each scratch schema gets its own tables (the DSN it yields puts it first on ``search_path``),
so concurrent test runs and benchmarks never see each other's rows.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from psycopg.conninfo import make_conninfo

from provider_events.store._pg import connect

__all__ = ["ScratchSchema", "dsn_for_schema", "scratch_schema"]


@dataclass(frozen=True, slots=True)
class ScratchSchema:
    name: str
    #: A libpq DSN that resolves unqualified names in this schema (``search_path``).
    dsn: str


def dsn_for_schema(dsn: str, schema: str) -> str:
    """``dsn`` with ``search_path`` set to ``schema`` for every session opened with it."""
    return make_conninfo(dsn, options=f"-c search_path={schema}")


@contextmanager
def scratch_schema(dsn: str, prefix: str = "scratch") -> Iterator[ScratchSchema]:
    """Create an empty schema, yield it, then drop it with everything in it."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with connect(dsn, application_name="provider-events-scratch") as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    try:
        yield ScratchSchema(name, dsn_for_schema(dsn, name))
    finally:
        _drop(dsn, name)


def _drop(dsn: str, name: str, patience: float = 60.0) -> None:
    deadline = time.monotonic() + patience
    while True:
        try:
            with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
            return
        except psycopg.OperationalError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.5)  # the server may be restarting (fault tests)
