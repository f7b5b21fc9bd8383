"""The same events give the same answers from PostgreSQL and from the embedded store.

Both stores are loaded through their real ingest paths (the consumer's COPY writer with the
migration's rollup triggers; the local store's ``add``) and every answer is held to the naive
in-memory reference computed straight from the raw events.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest

from provider_events.analytics._answers import (
    Backend,
    LocalBackend,
    PostgresBackend,
    collect_stats,
    model_profiles,
    to_jsonable,
)
from provider_events.analytics._model import BIN_SCALE, Window, bin_of, derive
from provider_events.analytics._recommend import RecommendOptions, recommend
from provider_events.analytics._synth import Selection, synthetic_selections
from provider_events.events._envelope import build_provider_selection
from provider_events.events._validation import decode_envelope
from provider_events.settings import load_settings
from provider_events.store import ROLLUP_TABLES, BatchWriter, migrate, row_from_envelope
from provider_events.store._local import LocalEventStore
from provider_events.store._scratch import scratch_schema
from tests.analytics_reference import RawEvent, ReferenceBackend

pytestmark = pytest.mark.integration

END = datetime(2025, 11, 13, 12, 30, tzinfo=UTC)
SETTINGS = load_settings(environ={}, dotenv=Path("/nonexistent"))


def _edge_cases() -> list[Selection]:
    """Selections that exercise every branch of the derivations and the escaping."""
    base = datetime(2025, 11, 11, 9, 0, tzinfo=UTC)
    rows: list[tuple[str, dict[str, Any], str, datetime]] = [
        ('<script>alert("x")</script> & "quotes"', {"cost_per_token": 1e-6}, "acme-us", base),
        ("no criteria at all", {}, "acme-us", base + timedelta(minutes=1)),
        ("billed", {"cost_usd": 0.42, "quality_score": 0.5}, "other", base + timedelta(hours=3)),
        ("total only", {"total_tokens": 1000, "cost_per_token": 2e-6}, "other", base),
        ("zeros", {"latency_ms": 0, "quality_score": 0, "cost_per_token": 0}, "acme-eu", base),
        ("Günstig — 速い", {"latency_ms": 1, "quality_score": 1.0}, "acme-eu", base),
        ("input only", {"input_tokens": 10, "cost_per_token": 1e-5}, "acme-eu", base),
        ("", {"latency_ms": 123.456, "extra": {"nested": [1, 2]}}, "globex", base),
    ]
    return [
        Selection("edge", f"edge-model-{i}", f"edge-{i}", reason, criteria, tenant, at)
        for i, (reason, criteria, tenant, at) in enumerate(rows)
    ]


@pytest.fixture(scope="module")
def selections() -> list[Selection]:
    """About 3,000 synthetic selections over three days, plus the edge cases."""
    return [*synthetic_selections(3000, end=END, days=3, seed=11), *_edge_cases()]


@pytest.fixture(scope="module")
def envelopes(selections: list[Selection]) -> list[Any]:
    """The selections as validated outgoing events (envelope bytes)."""
    return [build_provider_selection(settings=SETTINGS, **s.fields()) for s in selections]


def _load_postgres(dsn: str, events: list[Any]) -> None:
    migrate(dsn)
    writer = BatchWriter(dsn)
    try:
        for start in range(0, len(events), 700):
            rows = []
            for offset, e in enumerate(events[start : start + 700], start):
                env = decode_envelope(e.value)
                criteria = msgspec.json.encode(env.payload.selection_criteria)
                rows.append(row_from_envelope(env, offset % 6, offset, criteria))
            writer.write(rows)
    finally:
        writer.close()


@pytest.fixture(scope="module", params=["local", "postgresql"])
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, envelopes: list[Any]
) -> Iterator[Backend]:
    """Each store loaded with the same events through its real ingest path."""
    if request.param == "local":
        path = tmp_path_factory.mktemp("local") / "events.sqlite3"
        store = LocalEventStore(path)
        for start in range(0, len(envelopes), 500):
            store.add(envelopes[start : start + 500])
        store.close()
        backend: Backend = LocalBackend(path)
        try:
            yield backend
        finally:
            backend.close()
        return
    dsn = request.getfixturevalue("database_url")
    with scratch_schema(dsn, "analytics") as scratch:
        _load_postgres(scratch.dsn, envelopes)
        backend = PostgresBackend(scratch.dsn)
        try:
            yield backend
        finally:
            backend.close()


def assert_same(actual: Any, expected: Any, path: str = "$") -> None:
    """Equal structures; floats equal up to summation order (relative 1e-9)."""
    if isinstance(expected, float) and isinstance(actual, float | int):
        assert math.isclose(actual, expected, rel_tol=1e-9, abs_tol=1e-15), (
            f"{path}: {actual!r} != {expected!r}"
        )
    elif isinstance(expected, dict):
        assert isinstance(actual, dict) and actual.keys() == expected.keys(), (
            f"{path}: keys {sorted(actual)} != {sorted(expected)}"
        )
        for key in expected:
            assert_same(actual[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), (
            f"{path}: {len(actual)} items != {len(expected)}"
        )
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_same(a, e, f"{path}[{i}]")
    else:
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"


CASES = [
    ("3 days by provider", END - timedelta(days=3), END, None, "provider", None),
    ("3 days by model, hourly trends", END - timedelta(days=3), END, None, "model", "hour"),
    ("one tenant by day", END - timedelta(days=3), END, "acme-us", "day", None),
    (
        "partial days by hour",
        datetime(2025, 11, 10, 18, 20, tzinfo=UTC),
        datetime(2025, 11, 12, 20, 5, tzinfo=UTC),
        None,
        "hour",
        "day",
    ),
    ("by tenant", END - timedelta(days=2), END, None, "tenant", None),
    ("empty window", END + timedelta(days=30), END + timedelta(days=31), None, "provider", None),
]


def _answers(backend: Backend) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, since, until, tenant, group_by, interval in CASES:
        window = Window.of(since, until, tenant)
        data = collect_stats(backend, window, group_by, interval, top_reasons=7).to_dict()
        data.pop("backend")
        if data["total_selections"] == 0:
            extent = backend.extent(tenant)
            data["extent"] = to_jsonable(list(extent))
        out[name] = data
    window = Window.of(END - timedelta(days=3), END)
    out["profiles"] = to_jsonable(model_profiles(backend, window))
    opts = RecommendOptions(min_samples=20)
    out["recommend"] = [r.to_dict() for r in recommend(backend, window, opts)]
    return out


def test_same_answers_from_both_stores(store: Backend, selections: list[Selection]) -> None:
    """Every stats section, profile and recommendation equals the naive reference's answer."""
    expected = _answers(ReferenceBackend(selections))
    actual = _answers(store)
    assert expected["3 days by provider"]["total_selections"] == len(selections)
    assert any(r["status"] == "alternatives" for r in expected["recommend"])
    for key in expected:
        assert_same(actual[key], expected[key], key)


def test_percentiles_are_within_one_percent_of_exact(
    store: Backend, selections: list[Selection]
) -> None:
    """Rollup percentiles of latency per provider are within one bin (2 %) of the exact rank."""
    window = Window.of(END - timedelta(days=3), END)
    stats = collect_stats(store, window)
    by_provider: dict[str, list[float]] = {}
    for s in selections:
        latency = derive(s.selection_criteria).latency_ms
        if latency is not None and window.since <= s.selected_at < window.until:
            by_provider.setdefault(s.provider_name, []).append(latency)
    checked = 0
    for row in stats.criteria:
        if row.metric != "latency_ms":
            continue
        values = sorted(by_provider[row.provider_name])
        for q, got in ((0.5, row.p50), (0.95, row.p95)):
            exact = values[max(1, math.ceil(q * len(values))) - 1]
            assert got is not None and abs(got - exact) <= 0.02 * exact + 1e-9, (row, q, exact)
            checked += 1
    assert checked >= 14


# -- PostgreSQL only: the triggers keep the rollups exact through every write path -------------


def _snapshot(conn: psycopg.Connection[Any]) -> dict[str, list[list[Any]]]:
    """Every rollup row, in key order (the first columns up to the measures are the key)."""
    keys = {"provider_selection_reasons_hourly": 5, "provider_selection_hist_hourly": 5}
    keys["provider_selection_hist_daily"] = 5
    keys["provider_selection_hist_hourly_tenant"] = 4
    out = {}
    for table in ROLLUP_TABLES:
        k = 3 if table.endswith("_provider") else keys.get(table, 4)
        order = ", ".join(str(i) for i in range(1, k + 1))
        rows = conn.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()
        out[table] = [list(r) for r in rows]
    return out


def test_postgres_rollups_match_a_rebuild_after_every_write_path(
    database_url: str, envelopes: list[Any]
) -> None:
    """COPY, a redelivered batch, DELETE and UPDATE leave the rollups equal to a full rebuild."""
    sample = envelopes[:1200]
    with scratch_schema(database_url, "rollups") as scratch:
        _load_postgres(scratch.dsn, sample)
        _load_postgres(scratch.dsn, sample[:700])  # redelivery: the staged ON CONFLICT path
        with psycopg.connect(scratch.dsn, autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM provider_selection_events").fetchone() == (
                1200,
            )
            conn.execute(
                "DELETE FROM provider_selection_events WHERE tenant_id = 'globex' "
                "AND selected_at < %s",
                [END - timedelta(days=2)],
            )
            conn.execute(
                "UPDATE provider_selection_events SET provider_name = 'renamed' "
                "WHERE model_name = 'glm-4.6'"
            )
            tables = conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
                "AND tablename LIKE 'provider\\_selection\\_%' "
                "AND tablename <> 'provider_selection_events'"
            ).fetchall()
            assert sorted(t for (t,) in tables) == sorted(ROLLUP_TABLES)  # the list is complete
            maintained = _snapshot(conn)
            total = conn.execute("SELECT count(*) FROM provider_selection_events").fetchone()
            rebuilt_total = conn.execute("SELECT provider_events_rebuild_rollups()").fetchone()
            assert rebuilt_total == total
            rebuilt = _snapshot(conn)
            assert_same(rebuilt, maintained)
            assert len(maintained["provider_selection_rollup_hourly"]) > 100
            conn.execute("TRUNCATE provider_selection_events")
            assert all(
                conn.execute(f"SELECT count(*) FROM {t}").fetchone() == (0,) for t in ROLLUP_TABLES
            )


def test_sql_derivations_match_python(database_url: str) -> None:
    """PostgreSQL's bin and number extraction agree with the Python definitions exactly."""
    rng = random.Random(5)
    values = [0.0, 1.0, 1e-300, 1e300, 0.85, 3e-6, 250.0, 1.02, 1.0404]
    values += [rng.lognormvariate(0, 6) for _ in range(300)]
    migration = Path(__file__).parents[2] / "src/provider_events/store/migrations/0002_rollups.sql"
    line = next(ln for ln in migration.read_text().splitlines() if "ceil(ln(v) *" in ln)
    assert repr(BIN_SCALE) in line
    with scratch_schema(database_url, "derive") as scratch:
        migrate(scratch.dsn)
        with psycopg.connect(scratch.dsn, autocommit=True) as sconn:
            got = sconn.execute(
                "SELECT v, provider_events_bin(v) FROM unnest(%s::float8[]) v", [values]
            ).fetchall()
            assert [(v, b) for v, b in got] == [(v, bin_of(v)) for v in values]
            criteria = [
                {"cost_per_token": 2e-6, "total_tokens": 10, "input_tokens": 3},
                {"cost_per_token": 2e-6, "input_tokens": 3},
                {"cost_usd": 1.5, "cost_per_token": 2e-6, "output_tokens": 7},
                {"latency_ms": True, "quality_score": "high", "cost_per_token": None},
                {},
            ]
            for c in criteria:
                d = derive(c)
                row = sconn.execute(
                    "SELECT provider_events_num(%s::jsonb, 'latency_ms'), "
                    "provider_events_num(%s::jsonb, 'quality_score'), "
                    "provider_events_num(%s::jsonb, 'total_tokens')",
                    [msgspec.json.encode(c).decode()] * 3,
                ).fetchone()
                assert row == (d.latency_ms, d.quality_score, c.get("total_tokens"))


def test_migrating_a_populated_table_folds_its_rows_into_the_rollups(
    database_url: str, envelopes: list[Any]
) -> None:
    """Rows ingested before migration 0002 are in the rollups once it has run."""
    with scratch_schema(database_url, "backfill") as scratch:
        migrate(scratch.dsn, target=1)
        _load_postgres(scratch.dsn, envelopes[:500])
        migrate(scratch.dsn)
        backend = PostgresBackend(scratch.dsn)
        try:
            window = Window.of(END - timedelta(days=3), END)
            got = collect_stats(backend, window).to_dict()
        finally:
            backend.close()
        with psycopg.connect(scratch.dsn, autocommit=True) as conn:
            backfilled = _snapshot(conn)  # 0003 adds up 0002's histograms for its new table
            conn.execute("SELECT provider_events_rebuild_rollups()")
            assert_same(_snapshot(conn), backfilled)
            assert backfilled["provider_selection_hist_hourly_tenant"]
        expected = collect_stats(ReferenceBackend(_raw(envelopes[:500])), window).to_dict()
        got.pop("backend")
        expected.pop("backend")
        assert_same(got, expected)


def _raw(events: list[Any]) -> list[RawEvent]:
    out = []
    for e in events:
        env = decode_envelope(e.value)
        p = env.payload
        out.append(
            RawEvent(
                env.tenant_id,
                p.provider_name,
                p.model_name,
                p.selection_reason,
                p.selection_criteria,
                p.selected_at,
            )
        )
    return out


# -- PostgreSQL only: the dashboard's criteria series (migration 0003) --------------------------
_METRICS = {1: "cost_per_token", 2: "latency_ms", 3: "quality_score"}


def _expected_series(
    raw: list[RawEvent],
    metric: int,
    since: datetime,
    until: datetime,
    tenants: set[str] | None,
    step: timedelta,
    q: float,
) -> dict[tuple[datetime, str], tuple[int, float, float]]:
    """(bucket, provider) -> (values, mean, exact nearest-rank quantile), straight from raw."""
    origin = datetime(2000, 1, 1, tzinfo=UTC)
    groups: dict[tuple[datetime, str], list[float]] = {}
    for e in raw:
        value = getattr(derive(e.selection_criteria), _METRICS[metric])
        if value is None or not since <= e.selected_at < until:
            continue
        if tenants is not None and e.tenant_id not in tenants:
            continue
        bucket = origin + (e.selected_at - origin) // step * step
        groups.setdefault((bucket, e.provider_name), []).append(value)
    out = {}
    for key, values in groups.items():
        values.sort()
        rank = max(1, math.ceil(q * len(values)))
        out[key] = (len(values), math.fsum(values) / len(values), values[rank - 1])
    return out


@pytest.mark.parametrize(
    "tenants",
    [None, ("acme-us", "acme-eu", "globex", "initech", "other"), ("acme-us",), ("globex", "other")],
    ids=["null", "all-listed", "one", "two"],
)
def test_criteria_series_matches_the_raw_events(
    database_url: str, envelopes: list[Any], tenants: tuple[str, ...] | None
) -> None:
    """provider_events_criteria_series: counts and means exact, quantiles within one bin (2 %),
    for all tenants (both spellings), one and a subset, per hour and per 5 hours."""
    raw = _raw(envelopes)
    assert {"acme-us", "acme-eu", "globex", "initech", "other"} >= {e.tenant_id for e in raw}
    since, until = END - timedelta(days=3) + timedelta(minutes=30), END - timedelta(minutes=30)
    since, until = since.replace(minute=0), until.replace(minute=0)
    with scratch_schema(database_url, "series") as scratch:
        _load_postgres(scratch.dsn, envelopes)
        with psycopg.connect(scratch.dsn, autocommit=True) as conn:
            for metric in _METRICS:
                for step, q in ((timedelta(hours=1), 0.95), (timedelta(hours=5), 0.5)):
                    rows = conn.execute(
                        "SELECT * FROM provider_events_criteria_series(%s, %s, %s, %s, %s, %s)",
                        [metric, since, until, list(tenants) if tenants else None, step, q],
                    ).fetchall()
                    want = _expected_series(
                        raw, metric, since, until, set(tenants) if tenants else None, step, q
                    )
                    got = {(b, p): (n, mean, v) for b, p, n, mean, v in rows}
                    assert got.keys() == want.keys(), (metric, step)
                    for key, (n, mean, exact) in want.items():
                        g_n, g_mean, g_v = got[key]
                        assert g_n == n and math.isclose(g_mean, mean, rel_tol=1e-9), key
                        assert abs(g_v - exact) <= 0.02 * exact + 1e-12, (metric, key, g_v, exact)
                    assert len(rows) > 20
