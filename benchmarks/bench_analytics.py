"""Analytics at 10M events: every stats and dashboard query on the rollups vs the raw table.

N events (10,000,000 at scale 1) are generated inside PostgreSQL (``generate_series``, the
synthetic week's providers, models, prices, log-normal latencies, quality scores, token
counts, tenants and reasons) and inserted in chunks of 1M rows into a freshly migrated table,
so the migration's statement triggers maintain the rollups AT INGEST exactly as they do for the
consumer. The secondary indexes are dropped for the bulk load and rebuilt after it.

Then, over the default `stats` window (the 7 days up to the end of the current hour), every
question `stats`, `recommend` and `report` ask, and every SQL panel of the Grafana dashboard
(deploy/grafana/dashboards/provider-events.json, macros expanded for that window at 1 h), is
timed twice in the same run: as we answer it (the rollups) and naively (the raw table, exact
percentiles with percentile_disc). p50 and p95 over repeated runs; target: p50 <= 100 ms.

Before the load, the ingest cost of the rollups: the same rows written with the consumer's
BatchWriter (binary COPY, 5,000 and 20,000-row batches) into the table with and without the
rollups (staged by the writer, merged every 2 s and at the end: the timing includes the final
merge).

Environment: BENCH_ANALYTICS_RUNS (ours, default 15); BENCH_ANALYTICS_NAIVE_RUNS (default 3;
a naive question is repeated only while its runs so far took under BENCH_ANALYTICS_NAIVE_BUDGET
seconds, default 30: at 10M rows one naive run can take minutes); BENCH_ANALYTICS_KEEP=1 keeps
the scratch schema (its name is printed); BENCH_ANALYTICS_REUSE=<schema> times the questions on
a schema a kept run loaded (no ingest-cost run, no load).
"""

from __future__ import annotations

import json
import os
import re
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import psycopg
from rich.console import Console

from benchmarks._dashboard_naive import RAW_PANEL_SQL
from benchmarks._harness import Comparison, Context, percentile
from provider_events.analytics._answers import PostgresBackend, collect_stats
from provider_events.analytics._model import Window, ceil_hour
from provider_events.analytics._recommend import recommend
from provider_events.analytics._sql import MEASURES
from provider_events.analytics._synth import MODELS, TENANTS, synthetic_selections
from provider_events.store import ROLLUP_TABLES, TABLE, BatchWriter, migrate
from provider_events.store._scratch import dsn_for_schema

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "provider-events.json"
CHUNK = 1_000_000
TARGET_MS = 100.0
RUNS = int(os.environ.get("BENCH_ANALYTICS_RUNS", "15"))
NAIVE_RUNS = int(os.environ.get("BENCH_ANALYTICS_NAIVE_RUNS", "3"))
NAIVE_BUDGET = float(os.environ.get("BENCH_ANALYTICS_NAIVE_BUDGET", "30"))


# -- loading ------------------------------------------------------------------------------------
def _specs_sql() -> str:
    total = sum(m.weight for m in MODELS)
    rows, lo = [], 0.0
    for m in MODELS:
        hi = lo + m.weight / total
        reasons = "ARRAY[" + ", ".join("'" + r.replace("'", "''") + "'" for r in m.reasons) + "]"
        rows.append(
            f"('{m.provider}', '{m.model}', {lo!r}::float8, {hi!r}::float8, "
            f"{m.cost_per_token!r}::float8, {m.latency_median_ms!r}::float8, "
            f"{m.latency_sigma!r}::float8, {m.quality!r}::float8, {m.quality_sd!r}::float8, "
            f"{reasons})"
        )
        lo = hi
    return ",\n".join(rows)


def _tenants_sql() -> str:
    return "ARRAY[" + ", ".join(f"'{t}'" for t in TENANTS) + "]"


_GENERATE = """
INSERT INTO provider_selection_events (event_id, correlation_id, provider_name, model_name,
    selection_reason, selection_criteria, selected_at, tenant_id, namespace, source,
    event_timestamp)
SELECT gen_random_uuid(), 'bench-' || r.g, s.provider, s.model,
       s.reasons[1 + floor(r.u5 * array_length(s.reasons, 1))::int],
       CASE WHEN r.u6 < 0.97 THEN jsonb_build_object(
                'cost_per_token', s.cpt,
                'latency_ms', round(s.lat * exp(s.sigma * r.z1)),
                'quality_score', round(least(1.0, greatest(0.0, s.q + s.qsd * r.z2))::numeric, 3),
                'input_tokens', round(2400 * exp(0.8 * r.z3)),
                'output_tokens', round(528 * exp(0.8 * r.z3 + 0.4 * r.z4)))
            ELSE jsonb_build_object(
                'cost_per_token', s.cpt,
                'latency_ms', round(s.lat * exp(s.sigma * r.z1)),
                'quality_score', round(least(1.0, greatest(0.0, s.q + s.qsd * r.z2))::numeric, 3))
       END,
       %(start)s::timestamptz + r.u7 * %(span)s * interval '1 second',
       (%(tenants)s::text[])[1 + floor(r.u8 * %(n_tenants)s)::int], 'omninode', 'bench',
       %(start)s::timestamptz + r.u7 * %(span)s * interval '1 second'
FROM (
    SELECT g, u0, u5, u6, u7, u8,
           sqrt(-2 * ln(1 - u1)) * cos(2 * pi() * u2) AS z1,
           sqrt(-2 * ln(1 - u1)) * sin(2 * pi() * u2) AS z2,
           sqrt(-2 * ln(1 - u3)) * cos(2 * pi() * u4) AS z3,
           sqrt(-2 * ln(1 - u3)) * sin(2 * pi() * u4) AS z4
    FROM (SELECT g, random() AS u0, random() AS u1, random() AS u2, random() AS u3,
                 random() AS u4, random() AS u5, random() AS u6, random() AS u7, random() AS u8
          FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) g) raw
) r
JOIN (VALUES {specs}) s(provider, model, lo, hi, cpt, lat, sigma, q, qsd, reasons)
  ON r.u0 >= s.lo AND r.u0 < s.hi
"""


def _secondary_indexes(conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
    rows = conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
        "AND tablename = 'provider_selection_events' AND indexname LIKE 'idx_%'"
    ).fetchall()
    return [(str(a), str(b)) for a, b in rows]


def load(dsn: str, n: int, start: datetime, span: timedelta, console: Console) -> dict[str, float]:
    """Insert ``n`` generated rows with the rollup triggers on; returns timings (seconds)."""
    out: dict[str, float] = {}
    sql = _GENERATE.replace("{specs}", _specs_sql())
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        indexes = _secondary_indexes(conn)
        for name, _ in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        conn.execute(
            "ALTER TABLE provider_selection_events DROP CONSTRAINT provider_selection_events_event_id_key"
        )
        started = time.perf_counter()
        for lo in range(1, n + 1, CHUNK):
            hi = min(n, lo + CHUNK - 1)
            t = time.perf_counter()
            conn.execute(
                sql,
                {
                    "lo": lo,
                    "hi": hi,
                    "start": start,
                    "span": span.total_seconds(),
                    "tenants": list(TENANTS),
                    "n_tenants": len(TENANTS),
                },
            )
            console.print(
                f"  loaded {hi:,}/{n:,} rows ({(hi - lo + 1) / (time.perf_counter() - t):,.0f} rows/s "
                "with the rollup trigger)"
            )
        out["insert_seconds"] = time.perf_counter() - started
        t = time.perf_counter()
        conn.execute(
            "ALTER TABLE provider_selection_events ADD CONSTRAINT "
            "provider_selection_events_event_id_key UNIQUE (event_id)"
        )
        for _, definition in indexes:
            conn.execute(definition)
        out["index_seconds"] = time.perf_counter() - t
        t = time.perf_counter()
        conn.execute("VACUUM (ANALYZE) provider_selection_events")
        for table in (
            "provider_selection_rollup_hourly",
            "provider_selection_reasons_hourly",
            "provider_selection_hist_hourly",
            "provider_selection_hist_daily",
        ):
            conn.execute(f"VACUUM (ANALYZE) {table}")
        out["vacuum_seconds"] = time.perf_counter() - t
    return out


# -- what the rollups cost the ingest path ---------------------------------------------------
def _rows(n: int, end: datetime, per_week: int) -> list[tuple[Any, ...]]:
    """``n`` table rows (the consumer's COPY row shape) in time order, as dense as a stream
    of ``per_week`` events a week (a 5,000-row batch then spans minutes, not days)."""
    import uuid

    rows = []
    days = 7.0 * n / per_week
    for i, s in enumerate(synthetic_selections(n, end=end, days=days, seed=5)):
        rows.append(
            (
                uuid.uuid4(),
                s.correlation_id,
                s.provider_name,
                s.model_name,
                s.selection_reason,
                msgspec.json.encode(s.selection_criteria),
                s.selected_at,
                s.tenant_id,
                "omninode",
                "bench",
                None,
                s.selected_at,
                i % 6,
                i,
            )
        )
    return rows


def ingest_cost(
    dsn_with: str, dsn_without: str, rows: list[tuple[Any, ...]], batch: int = 5_000
) -> dict[str, list[float]]:
    """rows/s writing ``rows`` with BatchWriter into each table, alternating, two rounds each."""
    rates: dict[str, list[float]] = {"with rollups": [], "without rollups": []}
    for label, dsn in (
        ("without rollups", dsn_without),
        ("with rollups", dsn_with),
        ("with rollups", dsn_with),
        ("without rollups", dsn_without),
    ):
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("TRUNCATE provider_selection_events")
        writer = BatchWriter(dsn, application_name="bench-analytics")
        try:
            started = time.perf_counter()
            for i in range(0, len(rows), batch):
                writer.write(rows[i : i + batch])
            writer.close()  # the final merge of the staged rollups is part of the cost
            rates[label].append(len(rows) / (time.perf_counter() - started))
        finally:
            writer.close()
    return rates


# -- the questions, ours and naive --------------------------------------------------------------
def _num(key: str) -> str:
    j = f"selection_criteria->'{key}'"
    return f"CASE WHEN jsonb_typeof({j}) = 'number' THEN ({j})::float8 END"


_RAW = f"""
SELECT selected_at, tenant_id, provider_name, model_name, selection_reason,
       cpt, lat, q, inp, outp, tok, coalesce(cost_given, cpt * tok) AS cost
FROM (SELECT selected_at, tenant_id, provider_name, model_name, selection_reason,
             {_num("cost_per_token")} AS cpt, {_num("latency_ms")} AS lat,
             {_num("quality_score")} AS q, {_num("input_tokens")} AS inp,
             {_num("output_tokens")} AS outp,
             coalesce({_num("total_tokens")}, CASE WHEN {_num("input_tokens")} IS NOT NULL
                 OR {_num("output_tokens")} IS NOT NULL THEN coalesce({_num("input_tokens")}, 0)
                 + coalesce({_num("output_tokens")}, 0) END) AS tok,
             {_num("cost_usd")} AS cost_given
      FROM provider_selection_events
      WHERE selected_at >= %(since)s AND selected_at < %(until)s {{tenant}}) raw
"""
_NAIVE_DIMS = {
    "hour": "date_bin('1 hour', selected_at, TIMESTAMPTZ '2000-01-01 00:00:00+00')",
    "day": "date_bin('1 day', selected_at, TIMESTAMPTZ '2000-01-01 00:00:00+00')",
    "tenant_id": "tenant_id",
    "provider_name": "provider_name",
    "model_name": "model_name",
}


def _raw(tenant: str | None) -> str:
    return _RAW.replace("{tenant}", "AND tenant_id = %(tenant)s" if tenant else "")


def naive_totals(dims: tuple[str, ...], tenant: str | None = None) -> str:
    """The rollup's measures, straight from the raw rows."""
    aggs = []
    for name, agg in MEASURES:
        col = {"selections": "*", "token_n": "tok", "costed_n": "cost", "tokens": "tok"}.get(name)
        prefix, _, part = name.partition("_")
        if name in ("input_tokens", "output_tokens"):
            aggs.append(f"sum({'inp' if name == 'input_tokens' else 'outp'})")
        elif name == "cost_usd":
            aggs.append("sum(cost)")
        elif col is not None:
            aggs.append(f"{'sum' if name == 'tokens' else 'count'}({col})")
        else:
            c = {"cpt": "cpt", "lat": "lat", "q": "q"}[prefix]
            aggs.append(
                {"n": f"count({c})", "sum": f"sum({c})", "sumsq": f"sum({c} * {c})"}.get(
                    part, f"{agg}({c})"
                )
            )
    exprs = [_NAIVE_DIMS[d] for d in dims]
    group = f" GROUP BY {', '.join(str(i + 1) for i in range(len(exprs)))}" if exprs else ""
    return f"SELECT {', '.join([*exprs, *aggs])} FROM ({_raw(tenant)}) r{group}"


def naive_percentiles(dims: tuple[str, ...], tenant: str | None = None) -> str:
    """Exact p50 and p95 of the three criteria per group (percentile_disc)."""
    exprs = [_NAIVE_DIMS[d] for d in dims]
    pcts = [
        f"percentile_disc(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY {c})"
        for c in ("cpt", "lat", "q")
    ]
    group = f" GROUP BY {', '.join(str(i + 1) for i in range(len(exprs)))}"
    return f"SELECT {', '.join([*exprs, *pcts])} FROM ({_raw(tenant)}) r{group}"


def naive_reasons(tenant: str | None = None) -> list[str]:
    top = (
        f"SELECT selection_reason, count(*) AS n FROM ({_raw(tenant)}) r GROUP BY 1 "
        'ORDER BY 2 DESC, selection_reason COLLATE "C" LIMIT 10'
    )
    split = (
        f"SELECT selection_reason, provider_name, model_name, count(*) FROM ({_raw(tenant)}) r "
        f"WHERE selection_reason IN (SELECT selection_reason FROM ({top}) t) GROUP BY 1, 2, 3"
    )
    return [top, split]


# -- the Grafana dashboard's panels -------------------------------------------------------------
def dashboard_queries(
    since: datetime, until: datetime, tenants: tuple[str, ...] = ()
) -> list[tuple[str, str]]:
    """(title, SQL) of every rawSql panel target and SQL variable, macros expanded (1 h)."""
    if not DASHBOARD.exists():
        return []
    doc = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    out: list[tuple[str, str]] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for p in panels:
            for i, t in enumerate(p.get("targets", [])):
                if t.get("rawSql"):
                    suffix = f" #{i + 1}" if len(p.get("targets", [])) > 1 else ""
                    out.append((f"{p.get('title', '?')}{suffix}", t["rawSql"]))
            walk(p.get("panels", []))

    walk(doc.get("panels", []))
    for var in doc.get("templating", {}).get("list", []):
        query = var.get("query")
        if isinstance(query, str) and var.get("type") == "query" and "SELECT" in query.upper():
            out.append((f"variable ${var['name']}", query))
    return _expand(out, since, until, tenants)


def _expand(
    out: list[tuple[str, str]], since: datetime, until: datetime, tenants: tuple[str, ...] = ()
) -> list[tuple[str, str]]:
    """Grafana's macros and $tenant (default: All) expanded for the window, at a 1 h interval."""
    chosen = ", ".join(f"'{t}'" for t in (tenants or tuple(TENANTS)))
    lo, hi = f"'{since.isoformat()}'", f"'{until.isoformat()}'"
    expanded = []
    for title, sql in out:
        sql = re.sub(
            r"\$__timeGroupAlias\((\w+),\s*\$__interval\)",
            r"""date_bin('1 hour', \1, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS "time\"""",
            sql,
        )
        sql = re.sub(r"\$__timeFilter\((\w+)\)", rf"\1 BETWEEN {lo} AND {hi}", sql)
        sql = sql.replace("$__timeFrom()", lo).replace("$__timeTo()", hi)
        sql = sql.replace("$__interval_ms", "3600000")
        sql = sql.replace("${tenant}", chosen).replace("$tenant", chosen)
        expanded.append((title, sql))
    return expanded


# -- timing -------------------------------------------------------------------------------------
def _time(
    fn: Callable[[], Any], runs: int, warmup: bool, budget: float | None = None
) -> list[float]:
    """Wall times in ms of ``runs`` calls (after one unmeasured call with ``warmup``); with a
    ``budget`` (seconds), stop repeating once the calls so far took longer than it."""
    if warmup:
        fn()
    samples: list[float] = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000.0)
        if budget is not None and sum(samples) / 1000.0 > budget:
            break
    return samples


def _comparison(
    name: str, ours: list[float], naive: list[float], notes: dict[str, Any]
) -> Comparison:
    p50, p95 = percentile(ours, 0.5), percentile(ours, 0.95)
    n50, n95 = percentile(naive, 0.5), percentile(naive, 0.95)
    return Comparison(
        name=name,
        ours=p50,
        peer=n50,
        unit="ms",
        peer_name="raw table (naive)",
        better="lower",
        # The target is absolute (p50 <= 100 ms); as a ratio of this run's naive p50:
        target=TARGET_MS / n50 if n50 else None,
        notes={
            "p50 / p95 ms": f"{p50:,.1f} / {p95:,.1f}",
            "naive p50 / p95 ms": f"{n50:,.0f} / {n95:,.0f}",
            f"p50 <= {TARGET_MS:g} ms": "yes" if p50 <= TARGET_MS else "NO",
            **notes,
        },
    )


_SIZED = (TABLE, *ROLLUP_TABLES)


def _ingest(
    dsn: str, plain: str, m: int, now: datetime, n: int, console: Console
) -> list[Comparison]:
    console.print(f"ingest cost: {m:,} rows through the consumer's BatchWriter, both ways")
    rows = _rows(m, now, n)
    out = []
    for batch in (5_000, 20_000):
        rates = ingest_cost(dsn, plain, rows, batch)
        mean = {k: statistics.mean(v) for k, v in rates.items()}
        out.append(
            Comparison(
                name=f"ingest rows/s with rollups (batch {batch:,})",
                ours=mean["with rollups"],
                peer=mean["without rollups"],
                unit="rows/s",
                peer_name="same table, no rollups",
                better="higher",
                notes={"rounds": {k: [round(x) for x in v] for k, v in rates.items()}},
            )
        )
        console.print(f"  batch {batch:,}: {mean}")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE provider_selection_events")
    return out


def run(ctx: Context, console: Console) -> list[Comparison]:
    if not ctx.database_url:
        console.print("[yellow]DATABASE_URL is not set: analytics benchmark not run[/]")
        return []
    n = ctx.n(10_000_000, minimum=20_000)
    now = datetime.now(UTC)
    reuse = os.environ.get("BENCH_ANALYTICS_REUSE")
    schema = reuse or f"bench_analytics_{os.getpid()}"
    dsn = dsn_for_schema(ctx.database_url, schema)
    plain = dsn_for_schema(ctx.database_url, schema + "_plain")
    results: list[Comparison] = []
    timings: dict[str, float] = {}
    if not reuse:
        with psycopg.connect(ctx.database_url, autocommit=True) as admin:
            for s in (schema, schema + "_plain"):
                admin.execute(f'DROP SCHEMA IF EXISTS "{s}" CASCADE')
                admin.execute(f'CREATE SCHEMA "{s}"')
    try:
        if not reuse:
            migrate(dsn)
            migrate(plain, target=1)
            results += _ingest(dsn, plain, ctx.n(300_000, minimum=10_000), now, n, console)
            since = ceil_hour(now) - timedelta(days=7)
            console.print(f"loading {n:,} events over 7 days (rollups maintained at ingest)…")
            timings = load(dsn, n, since, now - since, console)
        with psycopg.connect(dsn) as conn:
            last = conn.execute(
                "SELECT max(bucket_start) FROM provider_selection_rollup_hourly"
            ).fetchone()
            sizes = {
                t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # type: ignore[index]
                for t in _SIZED
            }
        until = (last[0] if last and last[0] else ceil_hour(now) - timedelta(hours=1)) + timedelta(
            hours=1
        )
        since = until - timedelta(days=7)
        window = Window.of(since, until)
        tenant_window = Window.of(since, until, next(iter(TENANTS)))
        console.print(f"  window {window.label()}; load {timings}; rows {sizes}")
        results += _questions(ctx, console, dsn, window, tenant_window)
        results += _dashboard(console, dsn, since, until)
        if results:
            results[-1].notes["load seconds"] = {k: round(v, 1) for k, v in timings.items()}
            results[-1].notes["table rows"] = sizes
    finally:
        if reuse:
            pass
        elif os.environ.get("BENCH_ANALYTICS_KEEP") != "1":
            with psycopg.connect(ctx.database_url, autocommit=True) as admin:
                for s in (schema, schema + "_plain"):
                    admin.execute(f'DROP SCHEMA IF EXISTS "{s}" CASCADE')
        else:
            console.print(f"kept schema {schema} (BENCH_ANALYTICS_REUSE={schema} times it again)")
    return results


def _questions(
    ctx: Context, console: Console, dsn: str, window: Window, tenant_window: Window
) -> list[Comparison]:
    backend = PostgresBackend(dsn)
    naive_conn = psycopg.connect(dsn, autocommit=True)
    params = {"since": window.since, "until": window.until, "tenant": tenant_window.tenant}

    def naive(*sqls: str) -> Callable[[], Any]:
        return lambda: [naive_conn.execute(q, params).fetchall() for q in sqls]

    w, tw = window, tenant_window
    items: list[tuple[str, Callable[[], Any], Callable[[], Any]]] = [
        (
            "stats --group-by provider",
            lambda: backend.totals(w, ("provider_name",)),
            naive(naive_totals(("provider_name",))),
        ),
        (
            "stats --group-by model / cost table",
            lambda: backend.totals(w, ("provider_name", "model_name")),
            naive(naive_totals(("provider_name", "model_name"))),
        ),
        (
            "stats --group-by hour",
            lambda: backend.totals(w, ("hour",)),
            naive(naive_totals(("hour",))),
        ),
        (
            "stats --group-by day",
            lambda: backend.totals(w, ("day",)),
            naive(naive_totals(("day",))),
        ),
        (
            "stats --group-by tenant",
            lambda: backend.totals(w, ("tenant_id",)),
            naive(naive_totals(("tenant_id",))),
        ),
        ("stats top reasons", lambda: backend.reasons(w, 10), naive(*naive_reasons())),
        (
            "stats criteria p50/p95 by provider",
            lambda: backend.quantiles(w, ("provider_name",)),
            naive(naive_percentiles(("provider_name",))),
        ),
        (
            "stats trends: sums by day x provider",
            lambda: backend.totals(w, ("day", "provider_name")),
            naive(naive_totals(("day", "provider_name"))),
        ),
        (
            "stats trends: p50/p95 by day x provider",
            lambda: backend.quantiles(w, ("day", "provider_name")),
            naive(naive_percentiles(("day", "provider_name"))),
        ),
        (
            "stats --interval hour: p50/p95 by hour x provider",
            lambda: backend.quantiles(w, ("hour", "provider_name")),
            naive(naive_percentiles(("hour", "provider_name"))),
        ),
        (
            "recommend: p50/p95 by model",
            lambda: backend.quantiles(w, ("provider_name", "model_name")),
            naive(naive_percentiles(("provider_name", "model_name"))),
        ),
        (
            "report: selections by hour x provider",
            lambda: backend.totals(w, ("hour", "provider_name")),
            naive(naive_totals(("hour", "provider_name"))),
        ),
        (
            "stats --tenant: by provider",
            lambda: backend.totals(tw, ("provider_name",)),
            naive(naive_totals(("provider_name",), tw.tenant)),
        ),
        (
            "stats --tenant: p50/p95 by provider",
            lambda: backend.quantiles(tw, ("provider_name",)),
            naive(naive_percentiles(("provider_name",), tw.tenant)),
        ),
    ]
    samples: dict[str, tuple[list[float], list[float]]] = {}
    out = []
    try:
        for name, ours, peer in items:
            mine = _time(ours, RUNS, warmup=True)
            theirs = _time(peer, NAIVE_RUNS, warmup=False, budget=NAIVE_BUDGET)
            samples[name] = (mine, theirs)
            out.append(_comparison(name, mine, theirs, {}))
            console.print(
                f"  {name}: {percentile(mine, 0.5):,.1f} ms vs {percentile(theirs, 0.5):,.0f} ms"
            )
        # Whole commands: ours end to end; naive = the same questions' naive times, run by run.
        whole = {
            "stats (whole command)": (
                lambda: collect_stats(backend, w),
                [
                    "stats --group-by model / cost table",
                    "stats --group-by provider",
                    "stats top reasons",
                    "stats criteria p50/p95 by provider",
                    "stats trends: sums by day x provider",
                    "stats trends: p50/p95 by day x provider",
                ],
            ),
            "recommend (whole command)": (
                lambda: recommend(backend, w),
                ["stats --group-by model / cost table", "recommend: p50/p95 by model"],
            ),
        }
        for name, (fn, parts) in whole.items():
            mine = _time(fn, RUNS, warmup=True)
            runs = min(len(samples[p][1]) for p in parts)
            theirs = [sum(samples[p][1][i] for p in parts) for i in range(runs)]
            out.append(
                _comparison(name, mine, theirs, {"naive": "sum of its questions' naive runs"})
            )
            console.print(
                f"  {name}: {percentile(mine, 0.5):,.1f} ms vs {percentile(theirs, 0.5):,.0f} ms"
            )
    finally:
        naive_conn.close()
        backend.close()
    return out


def _dashboard(console: Console, dsn: str, since: datetime, until: datetime) -> list[Comparison]:
    panels = dashboard_queries(since, until)
    if not panels:
        console.print("[yellow]no dashboard JSON found: dashboard panels not timed[/]")
        return []
    # The shipped panels read the rollups; the naive peer is the same question on the raw
    # table (the panels' SQL before the rollups), expanded the same way.
    naive = dict(_expand(list(RAW_PANEL_SQL.items()), since, until))
    # The latency panel answers "All" from the all-tenant histograms and a tenant subset by
    # merging per-tenant ones: time the subset (one tenant) too.
    one = (next(iter(TENANTS)),)
    for title, sql in _expand(list(RAW_PANEL_SQL.items()), since, until, one):
        if title.startswith("Expected latency"):
            naive[f"{title}, one tenant"] = sql
            panels += [
                (f"{t}, one tenant", q)
                for t, q in dashboard_queries(since, until, one)
                if t == title
            ]
    out = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        for title, shipped_sql in panels:
            mine_sql, naive_sql = shipped_sql, naive.get(title, shipped_sql)
            if title not in naive:
                mine_sql = None
            theirs = _time(
                lambda q=naive_sql: conn.execute(q).fetchall(),
                NAIVE_RUNS,
                warmup=False,
                budget=NAIVE_BUDGET,
            )
            if mine_sql is None:
                console.print(f"  [yellow]dashboard {title}: no rollup version; naive only[/]")
                out.append(_comparison(f"dashboard: {title}", theirs, theirs, {"rollup": "none"}))
                continue
            mine = _time(lambda q=mine_sql: conn.execute(q).fetchall(), RUNS, warmup=True)
            out.append(_comparison(f"dashboard: {title}", mine, theirs, {}))
            console.print(
                f"  dashboard {title}: {percentile(mine, 0.5):,.1f} ms vs "
                f"{percentile(theirs, 0.5):,.0f} ms"
            )
    return out
