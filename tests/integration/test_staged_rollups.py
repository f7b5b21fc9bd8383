"""Staged rollups (migration 0007): the batch writer appends each batch's rollup deltas to the
pending tables in the batch's transaction and merges them into the rollups every few seconds.

Held here against a full rebuild from the raw rows (``provider_events_rebuild_rollups()``): a
crash between staging and merging (and in the middle of a merge) loses nothing and counts
nothing twice; two writers staging and merging at once stay exact; DELETE, UPDATE and TRUNCATE
meet rollups that hold every stored row; ``consume --until-idle`` returns with nothing pending.
On the real PostgreSQL (and Kafka for the consumer).
"""

from __future__ import annotations

import math
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import psycopg
import pytest

from provider_events.analytics._synth import synthetic_selections
from provider_events.events._envelope import build_provider_selection
from provider_events.ingest._consumer import ConsumerOptions, IngestConsumer
from provider_events.store import ROLLUP_TABLES, BatchWriter, Row
from provider_events.store._scratch import ScratchSchema
from tests.support import migrated_schema, produce_waiting, settings_for

pytestmark = pytest.mark.integration

END = datetime(2025, 11, 13, tzinfo=UTC)
PENDING = ("provider_events_pending_roll", "provider_events_pending_reasons")
NEVER = 1e9  # a merge interval no test reaches: only explicit merges


@pytest.fixture
def pg(database_url: str) -> Iterator[ScratchSchema]:
    with migrated_schema(database_url, "test_staged") as schema:
        yield schema


def make_rows(n: int, seed: int) -> list[Row]:
    """``n`` table rows of realistic selections (tenants, models, hours, reasons) over a day."""
    out: list[Row] = []
    for i, s in enumerate(synthetic_selections(n, end=END, days=1, seed=seed)):
        values = (
            uuid.uuid4(),
            s.correlation_id,
            s.provider_name,
            s.model_name,
            s.selection_reason,
            msgspec.json.encode(s.selection_criteria),
            s.selected_at,
            s.tenant_id,
            "omninode",
            "test",
            None,
            s.selected_at,
            i % 6,
            i,
        )
        out.append(Row(*values))
    return out


def write(dsn: str, rows: list[Row], batch: int = 500, **kwargs: Any) -> BatchWriter:
    """A writer that has written ``rows`` (left open: the caller decides how it ends)."""
    writer = BatchWriter(dsn, **kwargs)
    for k in range(0, len(rows), batch):
        writer.write(rows[k : k + batch])
    return writer


def snapshot(conn: psycopg.Connection[Any]) -> dict[str, list[tuple[Any, ...]]]:
    """Every rollup row, in key order."""
    out = {}
    for table in ROLLUP_TABLES:
        rows = conn.execute(f"SELECT * FROM {table}").fetchall()
        out[table] = sorted(rows, key=lambda r: repr(r[:6]))
    return out


def same(actual: Any, expected: Any) -> bool:
    """Equal, floats up to summation order."""
    if isinstance(expected, float) and isinstance(actual, float):
        return math.isclose(actual, expected, rel_tol=1e-9, abs_tol=1e-15)
    if isinstance(expected, list | tuple):
        return (
            isinstance(actual, list | tuple)
            and len(actual) == len(expected)
            and all(same(a, e) for a, e in zip(actual, expected, strict=True))
        )
    if isinstance(expected, dict):
        return actual.keys() == expected.keys() and all(
            same(actual[k], expected[k]) for k in expected
        )
    return bool(actual == expected)


def pending(conn: psycopg.Connection[Any]) -> int:
    total = 0
    for table in PENDING:
        got = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        total += int(got[0]) if got else 0
    return total


def assert_exact(dsn: str) -> None:
    """Nothing pending, and the rollups equal a rebuild from the stored rows."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert pending(conn) == 0
        maintained = snapshot(conn)
        stored = conn.execute("SELECT count(*) FROM provider_selection_events").fetchone()
        counted = conn.execute(
            "SELECT coalesce(sum(selections), 0) FROM provider_selection_rollup_hourly"
        ).fetchone()
        assert stored == counted
        assert conn.execute("SELECT provider_events_rebuild_rollups()").fetchone() == stored
        rebuilt = snapshot(conn)
    for table in ROLLUP_TABLES:
        assert same(maintained[table], rebuilt[table]), table
    assert maintained["provider_selection_hist_hourly_provider"]


def selections(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        got = conn.execute(
            "SELECT coalesce(sum(selections), 0) FROM provider_selection_rollup_hourly"
        ).fetchone()
    return int(got[0]) if got else 0


def test_batches_are_staged_then_merged_whole(pg: ScratchSchema) -> None:
    """Between merges the deltas wait in the pending tables (the rollups count only merged
    batches, never part of one); a merge folds them all in and empties them."""
    rows = make_rows(3000, seed=1)
    assert len(rows) > 2000
    writer = write(pg.dsn, rows[:1000], merge_interval=NEVER)
    try:
        assert selections(pg.dsn) == 0
        with psycopg.connect(pg.dsn) as conn:
            assert pending(conn) > 0
        assert writer.merge_rollups() > 0
        assert selections(pg.dsn) == 1000
        for k in range(1000, len(rows), 500):
            writer.write(rows[k : k + 500])
        assert selections(pg.dsn) == 1000  # staged, not merged yet
    finally:
        writer.close()  # merges what it staged
    assert selections(pg.dsn) == len(rows)
    assert_exact(pg.dsn)


def test_a_crash_between_staging_and_merging_loses_nothing_and_counts_nothing_twice(
    pg: ScratchSchema,
) -> None:
    """A writer that dies with deltas pending (its connection gone, no merge), a merge rolled
    back halfway (what a crash inside it does), then the same rows redelivered to another
    writer with new ones: the next merge counts every stored row exactly once."""
    rows = make_rows(2400, seed=2)
    assert len(rows) > 1800
    crashed = write(pg.dsn, rows[:1200], merge_interval=NEVER)
    crashed.close(merge=False)  # the process died: its staged deltas are committed, unmerged
    with psycopg.connect(pg.dsn) as conn:
        assert pending(conn) > 0
        conn.execute("SELECT provider_events_merge_pending()")
        conn.rollback()  # a merge that never committed
        assert pending(conn) > 0
    assert selections(pg.dsn) == 0
    survivor = write(pg.dsn, rows[600:], merge_interval=NEVER)  # 600 redelivered
    survivor.close()
    with psycopg.connect(pg.dsn) as conn:
        stored = conn.execute("SELECT count(*) FROM provider_selection_events").fetchone()
    assert stored == (len(rows),)
    assert_exact(pg.dsn)


def test_two_writers_staging_and_merging_at_once_stay_exact(pg: ScratchSchema) -> None:
    """Two writers on the same hours, tenants and models, merging after every batch (so their
    merges and stagings interleave), with some events written by both: exact."""
    rows = make_rows(4000, seed=3)
    shares = [rows[:2400], rows[1600:]]  # 800 events reach both writers
    assert len(rows) > 3000
    errors: list[BaseException] = []

    def run(share: list[Row]) -> None:
        try:
            write(pg.dsn, share, batch=200, merge_interval=0.0).close()
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(share,)) for share in shares]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors
    with psycopg.connect(pg.dsn) as conn:
        stored = conn.execute("SELECT count(*) FROM provider_selection_events").fetchone()
    assert stored == (len(rows),)
    assert_exact(pg.dsn)


def test_delete_update_and_truncate_meet_rollups_holding_every_row(pg: ScratchSchema) -> None:
    """With deltas still pending, DELETE and UPDATE merge them first (their subtractions then
    leave exact rollups at once); TRUNCATE drops them with the rows."""
    writer = write(pg.dsn, make_rows(1500, seed=4), merge_interval=NEVER)
    try:
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            assert pending(conn) > 0
            conn.execute(
                "DELETE FROM provider_selection_events WHERE selected_at < %s",
                [END - timedelta(hours=12)],
            )
            assert pending(conn) == 0
        assert_exact(pg.dsn)
        writer.write(make_rows(500, seed=5))
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            assert pending(conn) > 0
            conn.execute(
                "UPDATE provider_selection_events SET provider_name = 'renamed' "
                "WHERE tenant_id = (SELECT min(tenant_id) FROM provider_selection_events)"
            )
        assert_exact(pg.dsn)
        writer.write(make_rows(300, seed=6))
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            conn.execute("TRUNCATE provider_selection_events")
            assert pending(conn) == 0
            for table in ROLLUP_TABLES:
                assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)
    finally:
        writer.close()
    assert selections(pg.dsn) == 0


def test_consume_until_idle_returns_with_every_event_in_the_rollups(
    kafka_bootstrap: str, topic: str, pg: ScratchSchema
) -> None:
    """The consumer merges at the end of its run: when it returns nothing is pending."""
    from confluent_kafka import Producer

    from provider_events.publish._producer import kafka_config

    settings = settings_for(kafka_bootstrap, topic)
    producer = Producer(kafka_config(settings))
    n = 0
    for s in synthetic_selections(600, end=END, days=1, seed=7):
        e = build_provider_selection(settings=settings, **s.fields())
        produce_waiting(producer, topic, e.value, e.key)
        n += 1
    assert producer.flush(60) == 0
    options = ConsumerOptions(
        topic=topic,
        dlq_topic=f"{topic}.dlq",
        group_id=f"g-{uuid.uuid4().hex[:8]}",
        batch_size=100,
        batch_timeout=0.3,
        until_idle=3.0,
    )
    totals = IngestConsumer(settings, options, pg.dsn).run()
    assert totals.inserted == n
    assert totals.rollups_merged_at is not None
    assert selections(pg.dsn) == n
    assert_exact(pg.dsn)
