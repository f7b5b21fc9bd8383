"""The SQL of analytics, side by side for PostgreSQL and the embedded SQLite store.

Both stores hold the same tables: ``provider_selection_events`` (the raw rows) and the rollups
of ``store/migrations/0002_rollups.sql``: hourly counts/sums, hourly reasons, hourly and daily
histograms. In PostgreSQL statement triggers maintain the rollups and keep histograms as sparse
arrays (plus all-tenant copies); in SQLite the local store runs the upserts below in the
inserting transaction and keeps a row per histogram bin. The read queries differ only in
dialect (time arithmetic, placeholders, unnesting the arrays), so both stores answer alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "MEASURES",
    "SQLITE_SCHEMA",
    "SQLITE_UPSERTS",
    "Dialect",
    "Dim",
    "extent_sql",
    "quantiles_sql",
    "reasons_breakdown_sql",
    "reasons_sql",
    "totals_sql",
]

Dialect = Literal["postgresql", "sqlite"]
#: Grouping dimensions a query may ask for.
Dim = Literal["hour", "day", "tenant_id", "provider_name", "model_name"]

ROLLUP = "provider_selection_rollup_hourly"
REASONS = "provider_selection_reasons_hourly"
HIST_HOURLY = "provider_selection_hist_hourly"
HIST_DAILY = "provider_selection_hist_daily"

#: Rollup measures and how they combine across rows, in result order.
MEASURES: tuple[tuple[str, str], ...] = (
    ("selections", "sum"),
    ("cpt_n", "sum"),
    ("cpt_sum", "sum"),
    ("cpt_sumsq", "sum"),
    ("cpt_min", "min"),
    ("cpt_max", "max"),
    ("lat_n", "sum"),
    ("lat_sum", "sum"),
    ("lat_sumsq", "sum"),
    ("lat_min", "min"),
    ("lat_max", "max"),
    ("q_n", "sum"),
    ("q_sum", "sum"),
    ("q_sumsq", "sum"),
    ("q_min", "min"),
    ("q_max", "max"),
    ("token_n", "sum"),
    ("input_tokens", "sum"),
    ("output_tokens", "sum"),
    ("tokens", "sum"),
    ("costed_n", "sum"),
    ("cost_usd", "sum"),
)

# -- SQLite: schema and ingest-time upserts --------------------------------------------------
_SQLITE_ROLLUP_COLUMNS = ",\n    ".join(
    f"{name} {'INTEGER' if name.endswith('_n') or name == 'selections' else 'REAL'}"
    + ("" if agg in ("min", "max") else " NOT NULL")
    for name, agg in MEASURES
)

SQLITE_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS provider_selection_events (
    id                 INTEGER PRIMARY KEY,
    event_id           TEXT    NOT NULL UNIQUE,
    correlation_id     TEXT    NOT NULL,
    provider_name      TEXT    NOT NULL,
    model_name         TEXT    NOT NULL,
    selection_reason   TEXT,
    selection_criteria TEXT    NOT NULL DEFAULT '{{}}',
    selected_at        TEXT    NOT NULL,
    created_at         TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    tenant_id          TEXT    NOT NULL DEFAULT 'default',
    namespace          TEXT    NOT NULL,
    source             TEXT    NOT NULL,
    causation_id       TEXT,
    event_timestamp    TEXT    NOT NULL,
    kafka_partition    INTEGER,
    kafka_offset       INTEGER
);
CREATE INDEX IF NOT EXISTS idx_provider_selection_events_correlation_id
    ON provider_selection_events (correlation_id);
CREATE INDEX IF NOT EXISTS idx_provider_selection_events_provider_name
    ON provider_selection_events (provider_name);
CREATE INDEX IF NOT EXISTS idx_provider_selection_events_selected_at
    ON provider_selection_events (selected_at DESC);
CREATE INDEX IF NOT EXISTS idx_provider_selection_events_tenant_selected_at
    ON provider_selection_events (tenant_id, selected_at);

CREATE TABLE IF NOT EXISTS {ROLLUP} (
    bucket_start  INTEGER NOT NULL,
    tenant_id     TEXT    NOT NULL,
    provider_name TEXT    NOT NULL,
    model_name    TEXT    NOT NULL,
    {_SQLITE_ROLLUP_COLUMNS},
    PRIMARY KEY (bucket_start, tenant_id, provider_name, model_name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS {REASONS} (
    bucket_start     INTEGER NOT NULL,
    tenant_id        TEXT    NOT NULL,
    provider_name    TEXT    NOT NULL,
    model_name       TEXT    NOT NULL,
    selection_reason TEXT    NOT NULL,
    selections       INTEGER NOT NULL,
    PRIMARY KEY (bucket_start, tenant_id, provider_name, model_name, selection_reason)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS {HIST_HOURLY} (
    bucket_start  INTEGER NOT NULL,
    tenant_id     TEXT    NOT NULL,
    provider_name TEXT    NOT NULL,
    model_name    TEXT    NOT NULL,
    metric        INTEGER NOT NULL,
    bin           INTEGER NOT NULL,
    selections    INTEGER NOT NULL,
    value_sum     REAL    NOT NULL,
    PRIMARY KEY (bucket_start, tenant_id, provider_name, model_name, metric, bin)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS {HIST_DAILY} (
    day_start     INTEGER NOT NULL,
    tenant_id     TEXT    NOT NULL,
    provider_name TEXT    NOT NULL,
    model_name    TEXT    NOT NULL,
    metric        INTEGER NOT NULL,
    bin           INTEGER NOT NULL,
    selections    INTEGER NOT NULL,
    value_sum     REAL    NOT NULL,
    PRIMARY KEY (day_start, tenant_id, provider_name, model_name, metric, bin)
) WITHOUT ROWID;
"""

#: The staging table the local store fills with each batch's new rows (derived in Python).
SQLITE_NEW_ROWS = """
CREATE TEMP TABLE IF NOT EXISTS new_rows (
    h INTEGER, d INTEGER, tenant_id TEXT, provider_name TEXT, model_name TEXT, reason TEXT,
    cpt REAL, lat REAL, q REAL, inp REAL, outp REAL, tok REAL, cost REAL,
    b1 INTEGER, b2 INTEGER, b3 INTEGER
)
"""
SQLITE_NEW_ROWS_INSERT = "INSERT INTO temp.new_rows VALUES (" + ", ".join("?" * 16) + ")"


def _sqlite_rollup_upsert() -> str:
    aggs = []
    sets = []
    for name, agg in MEASURES:
        prefix, _, part = name.partition("_")
        col = {"cpt": "cpt", "lat": "lat", "q": "q"}.get(prefix)
        if name == "selections":
            aggs.append("count(*)")
        elif col and part == "n":
            aggs.append(f"count({col})")
        elif col and part == "sum":
            aggs.append(f"coalesce(sum({col}), 0)")
        elif col and part == "sumsq":
            aggs.append(f"coalesce(sum({col} * {col}), 0)")
        elif col and part in ("min", "max"):
            aggs.append(f"{part}({col})")
        else:
            aggs.append(
                {
                    "token_n": "count(tok)",
                    "input_tokens": "coalesce(sum(inp), 0)",
                    "output_tokens": "coalesce(sum(outp), 0)",
                    "tokens": "coalesce(sum(tok), 0)",
                    "costed_n": "count(cost)",
                    "cost_usd": "coalesce(sum(cost), 0)",
                }[name]
            )
        if agg == "sum":
            sets.append(f"{name} = {name} + excluded.{name}")
        else:  # SQLite's two-argument min/max return NULL if either side is NULL
            sets.append(
                f"{name} = coalesce({agg}({name}, excluded.{name}), {name}, excluded.{name})"
            )
    names = ", ".join(name for name, _ in MEASURES)
    return (
        f"INSERT INTO {ROLLUP} (bucket_start, tenant_id, provider_name, model_name, {names})\n"
        f"SELECT h, tenant_id, provider_name, model_name, {', '.join(aggs)}\n"
        "FROM temp.new_rows WHERE true GROUP BY 1, 2, 3, 4\n"
        "ON CONFLICT (bucket_start, tenant_id, provider_name, model_name) DO UPDATE SET\n    "
        + ",\n    ".join(sets)
    )


def _sqlite_hist_upsert(table: str, time_col: str, source_col: str) -> str:
    parts = " UNION ALL ".join(
        f"SELECT {source_col} AS t, tenant_id, provider_name, model_name, {code} AS metric, "
        f"b{code} AS bin, {col} AS v FROM temp.new_rows WHERE b{code} IS NOT NULL"
        for code, col in ((1, "cpt"), (2, "lat"), (3, "q"))
    )
    return (
        f"INSERT INTO {table} ({time_col}, tenant_id, provider_name, model_name, metric, bin, "
        f"selections, value_sum)\nSELECT t, tenant_id, provider_name, model_name, metric, bin, "
        f"count(*), sum(v) FROM ({parts}) WHERE true GROUP BY 1, 2, 3, 4, 5, 6\n"
        f"ON CONFLICT ({time_col}, tenant_id, provider_name, model_name, metric, bin) "
        "DO UPDATE SET selections = selections + excluded.selections, "
        "value_sum = value_sum + excluded.value_sum"
    )


SQLITE_UPSERTS: tuple[str, ...] = (
    _sqlite_rollup_upsert(),
    f"INSERT INTO {REASONS} (bucket_start, tenant_id, provider_name, model_name, "
    "selection_reason, selections)\n"
    "SELECT h, tenant_id, provider_name, model_name, reason, count(*) FROM temp.new_rows "
    "WHERE true GROUP BY 1, 2, 3, 4, 5\n"
    "ON CONFLICT (bucket_start, tenant_id, provider_name, model_name, selection_reason) "
    "DO UPDATE SET selections = selections + excluded.selections",
    _sqlite_hist_upsert(HIST_HOURLY, "bucket_start", "h"),
    _sqlite_hist_upsert(HIST_DAILY, "day_start", "d"),
)


# -- read queries ------------------------------------------------------------------------------
_PG_DAY = "date_bin('1 day', {col}, TIMESTAMPTZ '2000-01-01 00:00:00+00')"


@dataclass(frozen=True, slots=True)
class Query:
    """SQL text with its parameters, in the placeholder style of its dialect."""

    sql: str
    params: tuple[object, ...]


def _ph(dialect: Dialect) -> str:
    return "%s" if dialect == "postgresql" else "?"


def _dim_exprs(
    dialect: Dialect, dims: Sequence[Dim], time_col: str, daily_table: bool
) -> list[str]:
    out = []
    for dim in dims:
        if dim == "hour":
            if daily_table:
                raise ValueError("hourly periods cannot come from the daily histogram")
            out.append(time_col)
        elif dim == "day":
            if daily_table:
                out.append(time_col)
            elif dialect == "postgresql":
                out.append(_PG_DAY.format(col=time_col))
            else:
                out.append(f"({time_col} - {time_col} % 86400)")
        else:
            out.append(dim)
    return out


def _where(
    dialect: Dialect, time_col: str, ranges: Sequence[tuple[object, object]], tenant: str | None
) -> tuple[str, list[object]]:
    ph = _ph(dialect)
    params: list[object] = []
    terms = []
    for lo, hi in ranges:
        terms.append(f"({time_col} >= {ph} AND {time_col} < {ph})")
        params += [lo, hi]
    clause = "(" + " OR ".join(terms) + ")"
    if tenant is not None:
        clause += f" AND tenant_id = {ph}"
        params.append(tenant)
    return clause, params


def _group(n: int) -> str:
    return f" GROUP BY {', '.join(str(i) for i in range(1, n + 1))}" if n else ""


def totals_sql(
    dialect: Dialect, dims: Sequence[Dim], since: object, until: object, tenant: str | None
) -> Query:
    """Rollup measures (:data:`MEASURES` order) per ``dims`` over ``[since, until)``."""
    exprs = _dim_exprs(dialect, dims, "bucket_start", daily_table=False)
    where, params = _where(dialect, "bucket_start", [(since, until)], tenant)
    measures = ", ".join(f"{agg}({name})" for name, agg in MEASURES)
    select = ", ".join([*exprs, measures])
    sql = f"SELECT {select} FROM {ROLLUP} WHERE {where}{_group(len(exprs))}"
    return Query(sql, tuple(params))


def _rank(dialect: Dialect, q: float) -> str:
    """Nearest rank ``max(1, ceil(q * total))`` (``ceil`` spelled out: SQLite may lack it)."""
    if dialect == "postgresql":
        return f"greatest(1, ceil({q!r}::float8 * c.total::float8))"
    x = f"({q!r} * c.total)"
    return f"max(1, CAST({x} AS INTEGER) + ({x} > CAST({x} AS INTEGER)))"


def quantiles_sql(
    dialect: Dialect,
    dims: Sequence[Dim],
    hourly_ranges: Sequence[tuple[object, object]],
    daily_range: tuple[object, object] | None,
    tenant: str | None,
    qs: Sequence[float] = (0.5, 0.95),
) -> Query:
    """``(dims..., metric, count, quantile per q)``: nearest-rank quantiles of the histograms,
    each the mean of the bin holding that rank, computed in the database (window functions).

    Whole days come from the daily histogram (``daily_range``), the hours around them from the
    hourly one. In PostgreSQL questions about all tenants read the ``_all`` (per model) or
    ``_provider`` tables, and a group that is exactly one ``_provider`` row is answered by a
    binary search over its cumulative counts instead of unnesting.
    """
    pg = dialect == "postgresql"
    if not pg or tenant is not None or "tenant_id" in dims:
        suffix = ""
    else:
        suffix = "_all" if "model_name" in dims else "_provider"
    keys = [f"k{i}" for i in range(len(dims))]
    parts = [
        (HIST_DAILY + suffix, "day_start", [daily_range] if daily_range else [], True),
        (HIST_HOURLY + suffix, "bucket_start", list(hourly_ranges), False),
    ]
    general: list[str] = []
    blocks: list[str] = []
    params: list[object] = []
    general_params: list[object] = []
    for table, time_col, ranges, daily in parts:
        if not ranges:
            continue
        exprs = _dim_exprs(dialect, dims, time_col, daily_table=daily)
        where, p = _where(dialect, time_col, ranges, tenant)
        head = ", ".join([*(f"{e} AS {k}" for e, k in zip(exprs, keys, strict=True)), "metric"])
        one_row = suffix == "_provider" and tuple(dims) == (
            "day" if daily else "hour",
            "provider_name",
        )
        if one_row:
            values = ", ".join(
                f"provider_events_hist_quantile(counts, sums, cum, {q!r}::float8)" for q in qs
            )
            blocks.append(
                f"SELECT {head}, cum[cardinality(cum)] AS total, {values} FROM {table} "
                f"WHERE {where} AND cardinality(cum) > 0"
            )
            params += p
        elif pg:
            general.append(
                f"SELECT {head}, u.bin, u.n, u.vs FROM {table} t "
                f"CROSS JOIN LATERAL unnest(t.bins, t.counts, t.sums) AS u(bin, n, vs) WHERE {where}"
            )
            general_params += p
        else:
            general.append(
                f"SELECT {head}, bin, selections AS n, value_sum AS vs FROM {table} WHERE {where}"
            )
            general_params += p
    if general:
        part = ", ".join([*keys, "metric"])
        picks = ", ".join(
            f"max(CASE WHEN c.cum >= {_rank(dialect, q)} AND c.cum - c.n < {_rank(dialect, q)} "
            f"THEN c.vs / c.n END)"
            for q in qs
        )
        blocks.insert(
            0,
            f"SELECT {part}, max(c.total) AS total, {picks} FROM ("
            f"SELECT g.*, sum(g.n) OVER (PARTITION BY {part} ORDER BY g.bin) AS cum, "
            f"sum(g.n) OVER (PARTITION BY {part}) AS total FROM ("
            f"SELECT {part}, bin, sum(n) AS n, sum(vs) AS vs FROM ("
            + " UNION ALL ".join(general)
            + f") h GROUP BY {part}, bin) g) c GROUP BY {part}",
        )
        params = general_params + params
    if not blocks:
        raise ValueError("a quantile query needs at least one time range")
    return Query(" UNION ALL ".join(blocks), tuple(params))


def reasons_sql(
    dialect: Dialect, since: object, until: object, tenant: str | None, limit: int
) -> Query:
    """The ``limit`` most frequent reasons with their counts, ties broken by byte order."""
    where, params = _where(dialect, "bucket_start", [(since, until)], tenant)
    order = 'selection_reason COLLATE "C"' if dialect == "postgresql" else "selection_reason"
    sql = (
        f"SELECT selection_reason, sum(selections) AS n FROM {REASONS} WHERE {where} "
        f"GROUP BY selection_reason ORDER BY n DESC, {order} LIMIT {int(limit)}"
    )
    return Query(sql, tuple(params))


def reasons_breakdown_sql(
    dialect: Dialect, since: object, until: object, tenant: str | None, reasons: Sequence[str]
) -> Query:
    """Selections per (reason, provider, model) for the given reasons."""
    where, params = _where(dialect, "bucket_start", [(since, until)], tenant)
    if dialect == "postgresql":
        where += " AND selection_reason = ANY(%s)"
        params.append(list(reasons))
    else:
        where += f" AND selection_reason IN ({', '.join('?' * len(reasons))})"
        params += list(reasons)
    sql = (
        f"SELECT selection_reason, provider_name, model_name, sum(selections) FROM {REASONS} "
        f"WHERE {where} GROUP BY 1, 2, 3"
    )
    return Query(sql, tuple(params))


def extent_sql(dialect: Dialect, tenant: str | None) -> Query:
    """First and last hour with selections, and the total (optionally for one tenant)."""
    ph = _ph(dialect)
    where = f" WHERE tenant_id = {ph}" if tenant is not None else ""
    return Query(
        f"SELECT min(bucket_start), max(bucket_start), sum(selections) FROM {ROLLUP}{where}",
        (tenant,) if tenant is not None else (),
    )
