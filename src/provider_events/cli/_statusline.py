"""``provider-events statusline``: Claude Code's status line, with today's measured spend.

Claude Code runs the command with a JSON object on stdin (``session_id``, ``model.id`` /
``model.display_name``, ``workspace``, ``cost.total_cost_usd`` ...) and shows the first line
it prints. Ours: ``<model> | session $0.42 | today $3.10 / $20.00 (16%)``. Kept fast: only
the standard library (plus psycopg when ``DATABASE_URL`` is set); a store that cannot be read
leaves the spend out rather than failing the status line. Non-JSON stdin: exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

MAX_STDIN = 1 << 20


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--store",
        choices=("auto", "local", "postgresql"),
        default="auto",
        help="where today's spend is read (default auto: PostgreSQL when DATABASE_URL is set)",
    )


def _money(value: float) -> str:
    return f"${value:,.2f}"


def _text(value: Any, limit: int = 60) -> str | None:
    if isinstance(value, str) and value.strip():
        cleaned = "".join(c for c in value.strip() if c.isprintable())[:limit]
        return cleaned or None
    return None


def _spend(args: argparse.Namespace) -> tuple[float, float | None] | None:
    """(today's spend, daily budget or None) for the configured tenant; None if unreadable."""
    try:
        from provider_events.settings import load_settings
        from provider_events.usage._answers import open_usage_store
        from provider_events.usage._budgets import budget_status, today_spend

        settings = load_settings()
        store = open_usage_store(settings, args.store)
        try:
            budgets = budget_status(store, settings.tenant_id)
            overall = [b for b in budgets if b["provider"] is None]
            overall.sort(key=lambda b: b["tenant"] is None)  # the tenant's own budget first
            if overall:
                return overall[0]["today_usd"], overall[0]["daily_usd"]
            return today_spend(store, settings.tenant_id, None), None
        finally:
            store.close()
    except Exception:  # a status line never fails on the store: the spend is left out
        return None


def run(args: argparse.Namespace) -> int:
    from provider_events.cli._common import EXIT_BAD_INPUT, fail

    raw = sys.stdin.buffer.read(MAX_STDIN + 1)
    if len(raw) > MAX_STDIN:
        return fail("statusline: stdin is larger than 1 MiB", EXIT_BAD_INPUT)
    try:
        doc = json.loads(raw.decode("utf-8")) if raw.strip() else {}
    except (UnicodeDecodeError, ValueError):
        return fail("statusline: stdin is not Claude Code's status JSON", EXIT_BAD_INPUT)
    if not isinstance(doc, dict):
        return fail("statusline: stdin is not a JSON object", EXIT_BAD_INPUT)
    model: dict[str, Any] = doc["model"] if isinstance(doc.get("model"), dict) else {}
    parts = [_text(model.get("display_name")) or _text(model.get("id")) or "Claude"]
    cost: dict[str, Any] = doc["cost"] if isinstance(doc.get("cost"), dict) else {}
    session_cost = cost.get("total_cost_usd")
    if (
        isinstance(session_cost, int | float)
        and not isinstance(session_cost, bool)
        and 0 <= session_cost < 1e9
    ):
        parts.append(f"session {_money(float(session_cost))}")
    spend = _spend(args)
    if spend is not None:
        today, daily = spend
        if daily:
            flag = " OVER BUDGET" if today > daily else ""
            parts.append(f"today {_money(today)} / {_money(daily)} ({today / daily:.0%}){flag}")
        else:
            parts.append(f"today {_money(today)}")
    print(" | ".join(parts))
    return 0
