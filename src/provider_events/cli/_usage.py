"""``provider-events usage``: measured tokens and cost (from completion events) by day,
session, project, provider or model, with today's spend against the daily budgets.

Same answer from PostgreSQL (``DATABASE_URL``) and the local store. ``--json`` holds
``totals`` and ``rows``; ``--csv`` the rows.
"""

from __future__ import annotations

import argparse
from typing import Any


def add_arguments(p: argparse.ArgumentParser) -> None:
    from provider_events.cli._analytics_common import add_window_arguments

    add_window_arguments(p)
    p.add_argument(
        "--by",
        choices=("day", "session", "project", "provider", "model"),
        default="day",
        help="rows (default day)",
    )
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="JSON: window, totals, rows, budgets")
    fmt.add_argument("--csv", action="store_true", help="CSV of the rows")


def run(args: argparse.Namespace) -> int:
    from provider_events.cli._analytics_common import window_from_args, write_csv, write_json
    from provider_events.cli._common import EXIT_FAILED, fail, settings_or_exit
    from provider_events.errors import DatabaseError, OutboxError
    from provider_events.usage._answers import MEASURES, open_usage_store, usage_answer

    window = window_from_args(args)
    settings = settings_or_exit()
    try:
        store = open_usage_store(settings, args.store)
    except (DatabaseError, OutboxError) as exc:
        return fail(str(exc), EXIT_FAILED)
    try:
        answer = usage_answer(store, window.since, window.until, args.by, window.tenant)
    except (DatabaseError, OutboxError) as exc:
        return fail(str(exc), EXIT_FAILED)
    finally:
        store.close()
    if args.json:
        write_json(answer)
    elif args.csv:
        write_csv(answer["rows"], [args.by, *MEASURES])
    else:
        _render(answer, args.by)
    return 0


def _render(answer: dict, by: str, console: Any = None) -> None:  # type: ignore[type-arg]
    from rich.table import Table

    from provider_events.analytics._render import make_console

    if console is None:  # 200 columns when piped, not rich's 80: no figure cut short
        console = make_console()
    w = answer["window"]
    table = Table(title=f"Measured usage by {by}, {w['since']} .. {w['until']} ({answer['store']})")
    table.add_column(by, overflow="fold")  # a narrow terminal folds names, never a figure
    for name in ("outcomes", "input", "output", "cache read", "cache write", "cost USD"):
        table.add_column(name, justify="right", no_wrap=True)
    for row in [*answer["rows"], {by: "total", **answer["totals"]}]:
        cost = f"{row['cost_usd']:.4f}" + (
            f" (+{row['unpriced']} unpriced)" if row["unpriced"] else ""
        )
        table.add_row(
            str(row[by]),
            str(row["outcomes"]),
            f"{row['input_tokens']:,}",
            f"{row['output_tokens']:,}",
            f"{row['cache_read_tokens']:,}",
            f"{row['cache_write_tokens']:,}",
            cost,
        )
    console.print(table)
    for b in answer["budgets"]:
        scope = f"tenant {b['tenant'] or 'all'}, provider {b['provider'] or 'all'}"
        state = "[red]OVER[/]" if b["over"] else "ok"
        console.print(
            f"budget ({scope}): today ${b['today_usd']:.2f} of ${b['daily_usd']:.2f} {state}"
        )
