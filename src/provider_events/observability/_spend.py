"""Spend against budgets as Prometheus gauges, read from PostgreSQL at scrape time.

``provider_events_budget_daily_usd{tenant,provider}`` and
``provider_events_budget_spend_today_usd{tenant,provider}`` (today = the current UTC day,
from the outcome rollup), one pair per budget set with ``provider-events budget set``; ``*``
stands for "all". The alert ``ProviderEventsSpendOverBudget`` compares them
(deploy/prometheus/alerts.yml). Registered by ``provider-events consume`` on its /metrics;
each scrape runs two small queries on their own short-lived connection (5 s statement
timeout); a failed read yields no sample and counts in
``provider_events_budget_read_errors_total``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from provider_events.observability._metrics import REGISTRY

__all__ = ["SpendCollector", "register_spend_collector"]

BUDGET_READ_ERRORS = Counter(
    "provider_events_budget_read_errors_total",
    "Scrapes whose budget or spend read from PostgreSQL failed.",
    registry=REGISTRY,
)


class SpendCollector(Collector):
    def __init__(self, dsn: str) -> None:
        self._dsn = dsn

    def describe(self) -> list[Any]:
        return []  # samples depend on the database: collected only at scrape time

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from provider_events.errors import DatabaseError
        from provider_events.store._pg import connect
        from provider_events.usage._answers import UsageStore
        from provider_events.usage._budgets import budget_status

        daily = GaugeMetricFamily(
            "provider_events_budget_daily_usd",
            "Daily spend budget in USD (provider-events budget set).",
            labels=["tenant", "provider"],
        )
        spent = GaugeMetricFamily(
            "provider_events_budget_spend_today_usd",
            "Measured spend today (UTC) in USD within the budget's scope.",
            labels=["tenant", "provider"],
        )
        try:
            conn = connect(self._dsn, application_name="provider-events-metrics", connect_timeout=3)
            try:
                conn.execute("SET statement_timeout = 5000")
                status = budget_status(UsageStore("postgresql", conn, ""))
            finally:
                conn.close()
        except (DatabaseError, Exception):
            BUDGET_READ_ERRORS.inc()
            return
        for b in status:
            labels = [b["tenant"] or "*", b["provider"] or "*"]
            daily.add_metric(labels, b["daily_usd"])
            spent.add_metric(labels, b["today_usd"])
        yield daily
        yield spent


_registered: list[SpendCollector] = []


def register_spend_collector(dsn: str) -> None:
    """Add the spend gauges to the /metrics registry (once per process)."""
    if not _registered:
        collector = SpendCollector(dsn)
        REGISTRY.register(collector)
        _registered.append(collector)
