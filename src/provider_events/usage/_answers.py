"""``usage``: measured tokens and cost over a window, by day, session, project, provider or
model, with today's spend against the daily budgets. The same answer from both stores.

Reads the hourly rollup (``provider_outcomes_hourly``) except ``--by session``, which reads
``provider_outcomes`` (the rollup has no session). A window is whole UTC hours, so both
give the same totals. ``cost_usd`` sums the priced outcomes; ``unpriced`` counts the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from provider_events.errors import DatabaseError
from provider_events.settings import Settings

__all__ = [
    "BY",
    "UsageStore",
    "measured_beside_declared",
    "measured_by_model",
    "open_usage_store",
    "usage_answer",
]

BY = ("day", "session", "project", "provider", "model")
MEASURES = (
    "outcomes",
    "unpriced",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cost_usd",
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ROLLUP_KEY = {"project": "project", "provider": "provider_name", "model": "model_name"}


@dataclass
class UsageStore:
    """One open store: ``dialect`` is ``postgresql`` or ``sqlite``."""

    dialect: str
    conn: Any
    location: str

    def fetch(self, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        if self.dialect == "sqlite":
            return list(self.conn.execute(sql.replace("%s", "?"), params).fetchall())
        import psycopg

        from provider_events.store._pg import translate_error

        try:
            return list(self.conn.execute(sql, params).fetchall())
        except psycopg.Error as exc:
            raise translate_error(exc, "reading usage") from None

    def execute(self, sql: str, params: list[Any]) -> None:
        if self.dialect == "sqlite":
            self.conn.execute(sql.replace("%s", "?"), params)
            return
        import psycopg

        from provider_events.store._pg import translate_error

        try:
            self.conn.execute(sql, params)
        except psycopg.Error as exc:
            raise translate_error(exc, "writing usage") from None

    def time_param(self, moment: datetime) -> Any:
        """An hour bound as the rollup stores it (SQLite: epoch seconds)."""
        return int((moment - _EPOCH).total_seconds()) if self.dialect == "sqlite" else moment

    def micros_param(self, moment: datetime) -> Any:
        """A ``completed_at`` bound (SQLite: epoch microseconds)."""
        if self.dialect == "sqlite":
            return int((moment - _EPOCH).total_seconds()) * 1_000_000
        return moment

    def close(self) -> None:
        self.conn.close()


def open_usage_store(settings: Settings, store: str = "auto") -> UsageStore:
    """PostgreSQL when ``DATABASE_URL`` is set (or ``store="postgresql"``), else the local
    store. Raises ``DatabaseError`` / ``OutboxError``."""
    dsn = settings.database_url.reveal()
    if store == "postgresql" or (store == "auto" and dsn):
        if not dsn:
            raise DatabaseError("DATABASE_URL is not set")
        from provider_events.store._pg import connect, describe_dsn

        conn = connect(dsn, application_name="provider-events-usage")
        try:
            conn.execute("SELECT 1 FROM provider_outcomes_hourly LIMIT 0")
        except Exception as exc:
            conn.close()
            raise DatabaseError(
                "the outcome tables are missing in this database: run `provider-events migrate` "
                f"({type(exc).__name__})"
            ) from None
        return UsageStore("postgresql", conn, describe_dsn(dsn))
    from provider_events.store._local import LocalEventStore

    local = LocalEventStore.for_settings(settings)
    return UsageStore("sqlite", local.connection(), str(local.path))


def _key_sql(store: UsageStore, by: str) -> str:
    if by == "day":
        if store.dialect == "sqlite":
            return "(hour / 86400) * 86400"
        return "date_trunc('day', hour AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
    return _ROLLUP_KEY[by]


def _label(store: UsageStore, by: str, value: Any) -> str:
    if by == "day":
        day = _EPOCH + timedelta(seconds=int(value)) if store.dialect == "sqlite" else value
        return str(day.astimezone(UTC).date().isoformat())
    return "" if value is None else str(value)


def _rows(
    store: UsageStore, by: str, since: datetime, until: datetime, tenant: str | None
) -> list[tuple[Any, ...]]:
    params: list[Any]
    if by == "session":
        sql = (
            "SELECT correlation_id, count(*), "
            "sum(CASE WHEN cost_usd IS NULL THEN 1 ELSE 0 END), sum(input_tokens), "
            "sum(output_tokens), sum(cache_read_tokens), "
            "sum(cache_write_5m_tokens + cache_write_1h_tokens), coalesce(sum(cost_usd), 0) "
            "FROM provider_outcomes WHERE completed_at >= %s AND completed_at < %s"
        )
        params = [store.micros_param(since), store.micros_param(until)]
    else:
        key = _key_sql(store, by)
        sql = (
            f"SELECT {key}, sum(outcomes), sum(unpriced), sum(input_tokens), "
            "sum(output_tokens), sum(cache_read_tokens), sum(cache_write_tokens), "
            "sum(cost_usd) FROM provider_outcomes_hourly WHERE hour >= %s AND hour < %s"
        )
        params = [store.time_param(since), store.time_param(until)]
    if tenant:
        sql += " AND tenant_id = %s"
        params.append(tenant)
    sql += " GROUP BY 1 ORDER BY 1"
    return store.fetch(sql, params)


def _measures(row: tuple[Any, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in zip(MEASURES, row, strict=True):
        if name == "cost_usd":
            out[name] = round(float(value or 0.0), 9)
        else:
            out[name] = int(value or 0)
    return out


def usage_answer(
    store: UsageStore,
    since: datetime,
    until: datetime,
    by: str = "day",
    tenant: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """``{"window", "by", "totals", "rows", "budgets"}`` (see docs/usage.md)."""
    if by not in BY:
        raise ValueError(f"by must be one of {', '.join(BY)}")
    rows = []
    totals = dict.fromkeys(MEASURES, 0)
    total_cost = 0.0
    for raw in _rows(store, by, since, until, tenant):
        m = _measures(raw[1:])
        rows.append({by: _label(store, by, raw[0]), **m})
        for name in MEASURES:
            if name == "cost_usd":
                total_cost += float(raw[-1] or 0.0)
            else:
                totals[name] += m[name]
    totals["cost_usd"] = round(total_cost, 9)  # type: ignore[assignment]
    from provider_events.usage._budgets import budget_status

    return {
        "window": {"since": _iso(since), "until": _iso(until), "tenant": tenant},
        "by": by,
        "store": store.dialect,
        "totals": totals,
        "rows": rows,
        "budgets": budget_status(store, tenant, now),
    }


def _iso(moment: datetime) -> str:
    # isoformat, not strftime("%Y"): glibc writes year 999 as "999", not "0999"
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def measured_by_model(
    store: UsageStore, since: datetime, until: datetime, tenant: str | None
) -> dict[tuple[str, str], dict[str, Any]]:
    """``{(provider, model): measures}`` over the window (the hourly rollup)."""
    sql = (
        "SELECT provider_name, model_name, sum(outcomes), sum(unpriced), sum(input_tokens), "
        "sum(output_tokens), sum(cache_read_tokens), sum(cache_write_tokens), sum(cost_usd) "
        "FROM provider_outcomes_hourly WHERE hour >= %s AND hour < %s"
    )
    params: list[Any] = [store.time_param(since), store.time_param(until)]
    if tenant:
        sql += " AND tenant_id = %s"
        params.append(tenant)
    return {(r[0], r[1]): _measures(r[2:]) for r in store.fetch(sql + " GROUP BY 1, 2", params)}


def measured_beside_declared(
    store: UsageStore,
    since: datetime,
    until: datetime,
    tenant: str | None,
    declared: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """Per provider and model: the declared cost (``stats``' cost rows of ``level="model"``)
    beside the measured one, and their difference where both are known."""
    measured = measured_by_model(store, since, until, tenant)
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for d in declared:
        if d.get("level") != "model" or d.get("model_name") is None:
            continue
        rows[(d["provider_name"], d["model_name"])] = {
            "selections": d["selections"],
            "declared_cost_usd": d["total_cost_usd"],
            "declared_cost_basis": d["cost_basis"],
        }
    out = []
    for key in sorted(set(rows) | set(measured)):
        dec = rows.get(
            key, {"selections": 0, "declared_cost_usd": None, "declared_cost_basis": "none"}
        )
        m = measured.get(key)
        cost = m["cost_usd"] if m and m["outcomes"] > m["unpriced"] else None
        out.append(
            {
                "provider_name": key[0],
                "model_name": key[1],
                **dec,
                "outcomes": m["outcomes"] if m else 0,
                "unpriced": m["unpriced"] if m else 0,
                "input_tokens": m["input_tokens"] if m else 0,
                "output_tokens": m["output_tokens"] if m else 0,
                "measured_cost_usd": cost,
                "difference_usd": None
                if cost is None or dec["declared_cost_usd"] is None
                else round(cost - dec["declared_cost_usd"], 9),
            }
        )
    return out
