"""``provider-events stats``: usage, reasons, criteria trends and cost over a window.

Reads PostgreSQL when ``DATABASE_URL`` is set, else the local event store (the embedded
default). Tables for people; ``--json`` (every section) or ``--csv`` (one section) for scripts,
with the stable field names documented in docs/analytics.md.
"""

from __future__ import annotations

import argparse

SECTIONS = ("all", "groups", "reasons", "criteria", "trends", "cost")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from provider_events.cli._analytics_common import add_window_arguments
    from provider_events.cli._common import int_arg

    p.description = (
        "Selections by provider, model, hour or day with shares; the top selection reasons; "
        "average and p50/p95 of cost_per_token, latency_ms and quality_score per provider over "
        "time; cost per provider and model. Windows are whole UTC hours."
    )
    add_window_arguments(p)
    p.add_argument(
        "--group-by",
        choices=("provider", "model", "hour", "day", "tenant"),
        default="provider",
        help="rows of the main table (default provider)",
    )
    p.add_argument(
        "--interval",
        choices=("hour", "day"),
        default=None,
        help="period of the criteria trends (default: hour for windows up to 48 h, else day)",
    )
    p.add_argument(
        "--top", type=int_arg(1, 10_000), default=10, metavar="N", help="top N reasons (default 10)"
    )
    p.add_argument(
        "--section",
        choices=SECTIONS,
        default="all",
        help="only this section (--csv needs one; it defaults to groups)",
    )
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="JSON with every section")
    fmt.add_argument("--csv", action="store_true", help="CSV of one section")


def run(args: argparse.Namespace) -> int:
    from provider_events.analytics._answers import (
        CostRow,
        CriteriaRow,
        GroupRow,
        ReasonRow,
        collect_stats,
        field_names,
    )
    from provider_events.cli._analytics_common import (
        open_backend_or_exit,
        window_from_args,
        write_csv,
        write_json,
    )
    from provider_events.cli._common import EXIT_BAD_INPUT, EXIT_FAILED, fail
    from provider_events.errors import DatabaseError

    if args.top < 1:
        return fail("--top must be >= 1", EXIT_BAD_INPUT)
    window = window_from_args(args)
    with open_backend_or_exit(args) as backend:
        try:
            stats = collect_stats(backend, window, args.group_by, args.interval, args.top)
        except DatabaseError as exc:
            return fail(str(exc), EXIT_FAILED)
    data = stats.to_dict()
    if args.json:
        if args.section != "all":
            data = {k: v for k, v in data.items() if k not in SECTIONS or k == args.section}
        write_json(data)
        return 0
    if args.csv:
        section = "groups" if args.section == "all" else args.section
        row_type = {
            "groups": GroupRow,
            "reasons": ReasonRow,
            "criteria": CriteriaRow,
            "trends": CriteriaRow,
            "cost": CostRow,
        }[section]
        write_csv(data[section], field_names(row_type))
        return 0
    from rich.console import Console

    from provider_events.analytics._render import render_stats

    render_stats(Console(), stats, args.section)
    return 0
