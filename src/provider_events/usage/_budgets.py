"""Daily budgets: kept in the store (``provider_budgets``), compared with today's measured
spend (UTC day, from the hourly rollup). ``''`` as tenant or provider means "all"."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from provider_events.usage._answers import UsageStore

__all__ = ["MAX_DAILY_USD", "budget_status", "check_daily", "set_budget", "today_spend"]

MAX_DAILY_USD = 1e9


def check_daily(value: float) -> float:
    """``value`` if it is a usable daily budget; ``ValueError`` otherwise."""
    if not isinstance(value, float | int) or isinstance(value, bool):
        raise ValueError("the daily budget must be a number")
    if not math.isfinite(value) or not 0 <= value <= MAX_DAILY_USD:
        raise ValueError(f"the daily budget must be a finite number in [0, {MAX_DAILY_USD:g}] USD")
    return float(value)


def set_budget(
    store: UsageStore, daily_usd: float, tenant: str | None, provider: str | None
) -> None:
    daily = check_daily(daily_usd)
    now = datetime.now(UTC)
    stamp: Any = now.isoformat() if store.dialect == "sqlite" else now
    store.execute(
        "INSERT INTO provider_budgets (tenant_id, provider_name, daily_usd, updated_at) "
        "VALUES (%s, %s, %s, %s) ON CONFLICT (tenant_id, provider_name) DO UPDATE SET "
        "daily_usd = excluded.daily_usd, updated_at = excluded.updated_at",
        [tenant or "", provider or "", daily, stamp],
    )
    if store.dialect == "sqlite" and store.conn.in_transaction:
        store.conn.execute("COMMIT")


def today_spend(
    store: UsageStore, tenant: str | None, provider: str | None, now: datetime | None = None
) -> float:
    """USD of today's (UTC) priced outcomes for ``tenant`` / ``provider`` (``None``: all)."""
    now = now or datetime.now(UTC)
    start = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    sql = "SELECT coalesce(sum(cost_usd), 0) FROM provider_outcomes_hourly WHERE hour >= %s AND hour < %s"
    params: list[Any] = [store.time_param(start), store.time_param(start + timedelta(days=1))]
    if tenant:
        sql += " AND tenant_id = %s"
        params.append(tenant)
    if provider:
        sql += " AND provider_name = %s"
        params.append(provider)
    return float(store.fetch(sql, params)[0][0] or 0.0)


def budget_status(
    store: UsageStore, tenant: str | None = None, now: datetime | None = None
) -> list[dict[str, Any]]:
    """Each budget (of ``tenant`` and the all-tenant ones) with today's spend against it."""
    sql = "SELECT tenant_id, provider_name, daily_usd FROM provider_budgets"
    params: list[Any] = []
    if tenant:
        sql += " WHERE tenant_id IN (%s, '')"
        params.append(tenant)
    out = []
    for t, p, daily in store.fetch(sql + " ORDER BY 1, 2", params):
        spent = today_spend(store, t or None, p or None, now)
        out.append(
            {
                "tenant": t or None,
                "provider": p or None,
                "daily_usd": float(daily),
                "today_usd": round(spent, 9),
                "ratio": round(spent / daily, 6) if daily > 0 else None,
                "over": spent > daily,
            }
        )
    return out
