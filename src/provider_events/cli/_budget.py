"""``provider-events budget``: daily spend budgets, kept in the store.

``budget set --daily USD [--tenant ID] [--provider NAME]``; ``budget show``. ``usage``,
``statusline`` and the ``provider_events_budget_*`` gauges compare today's measured spend
with them.
"""

from __future__ import annotations

import argparse


def _usd(raw: str) -> float:
    from provider_events.usage._budgets import check_daily

    try:
        return check_daily(float(raw))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _name(raw: str) -> str:
    if not raw.strip() or len(raw) > 100 or not raw.isprintable():
        raise argparse.ArgumentTypeError("must be a printable name of 1-100 characters")
    return raw


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("set", "show"), help="set a budget, or show them all")
    p.add_argument("--daily", type=_usd, metavar="USD", help="daily budget in USD (set)")
    p.add_argument("--tenant", type=_name, metavar="ID", help="only this tenant (default all)")
    p.add_argument(
        "--provider", type=_name, metavar="NAME", help="only this provider (default all)"
    )
    p.add_argument(
        "--store",
        choices=("auto", "local", "postgresql"),
        default="auto",
        help="PostgreSQL when DATABASE_URL is set, else the local store (default auto)",
    )
    p.add_argument("--json", action="store_true", help="print the budgets as JSON")


def run(args: argparse.Namespace) -> int:
    from provider_events.cli._common import EXIT_BAD_INPUT, EXIT_FAILED, fail, settings_or_exit
    from provider_events.errors import DatabaseError, OutboxError
    from provider_events.usage._answers import open_usage_store
    from provider_events.usage._budgets import budget_status, set_budget

    if args.action == "set" and args.daily is None:
        return fail("budget set needs --daily USD", EXIT_BAD_INPUT)
    settings = settings_or_exit()
    try:
        store = open_usage_store(settings, args.store)
        try:
            if args.action == "set":
                set_budget(store, args.daily, args.tenant, args.provider)
            status = budget_status(store, args.tenant)
        finally:
            store.close()
    except (DatabaseError, OutboxError) as exc:
        return fail(str(exc), EXIT_FAILED)
    if args.json:
        from provider_events.cli._analytics_common import write_json

        write_json(status)
        return 0
    for b in status:
        print(
            f"tenant={b['tenant'] or '*'} provider={b['provider'] or '*'} "
            f"daily=${b['daily_usd']:.2f} today=${b['today_usd']:.4f}"
            + (" OVER" if b["over"] else "")
        )
    if not status:
        print("no budgets set")
    return 0
