"""``provider-events stats``: usage, reasons, criteria trends and cost over a window.

Reads PostgreSQL when ``DATABASE_URL`` is set, else the local event store (the embedded
default). Tables for people; ``--json`` (every section) or ``--csv`` (one section) for scripts,
with the stable field names documented in docs/analytics.md.
"""

from __future__ import annotations

import argparse
from typing import Any

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
    measured = _measured(args, window, data["cost"]) if args.section == "all" else None
    if measured is not None:
        data["measured"] = measured
    routing = _routing(args, window) if args.section == "all" else None
    if routing is not None:
        data["routing"] = routing
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
    from provider_events.analytics._render import make_console, render_stats

    console = make_console()
    render_stats(console, stats, args.section)
    if measured:
        _render_measured(console, measured)
    if routing:
        _render_routing(console, routing)
    return 0


def _routing(args: argparse.Namespace, window: Any) -> dict[str, Any] | None:
    """What routers (the LiteLLM callback) recorded: requested vs served model, fallback and
    error rates per provider; ``None`` when no router recorded a call in the window."""
    from provider_events.analytics._routing import routing_answer

    answer = _answer(
        args, lambda store: routing_answer(store, window.since, window.until, window.tenant)
    )
    return answer if answer and answer["providers"] else None


def _render_routing(console: Any, routing: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title="Routing (LiteLLM): requested vs served, fallbacks", title_justify="left")
    for col in ("provider", "calls", "served != requested", "fallbacks", "errors"):
        table.add_column(col, justify="left" if col == "provider" else "right")
    for r in routing["providers"]:
        table.add_row(
            r["provider_name"],
            str(r["calls"]),
            f"{r['served_differs']} ({r['served_differs_share']:.0%})",
            f"{r['fallbacks']} ({r['fallback_share']:.0%})",
            f"{r['errors']} ({r['error_share']:.0%})",
        )
    console.print(table)
    pairs = Table(title="Requested -> served model", title_justify="left")
    for col in ("provider", "requested", "served", "calls", "fallbacks", "errors"):
        pairs.add_column(
            col, justify="right" if col in ("calls", "fallbacks", "errors") else "left"
        )
    for r in routing["pairs"]:
        pairs.add_row(
            r["provider_name"],
            r["requested_model"],
            r["served_model"],
            str(r["calls"]),
            str(r["fallbacks"]),
            str(r["errors"]),
        )
    console.print(pairs)


def _usage_store(args: argparse.Namespace) -> Any:
    """The store holding outcomes and router calls; ``None`` for a PostgreSQL not migrated to
    0005 yet (those answers are then left out). Other errors end the command."""
    from provider_events.cli._common import EXIT_FAILED, fail, settings_or_exit
    from provider_events.errors import DatabaseError, OutboxError
    from provider_events.usage._answers import open_usage_store

    try:
        return open_usage_store(settings_or_exit(), args.store)
    except DatabaseError as exc:
        if "outcome tables are missing" in str(exc):
            return None
        raise SystemExit(fail(str(exc), EXIT_FAILED)) from None
    except OutboxError as exc:
        raise SystemExit(fail(str(exc), EXIT_FAILED)) from None


def _answer(args: argparse.Namespace, ask: Any) -> Any:
    """``ask(store)`` on the usage store; ``None`` when it has no outcome tables."""
    from provider_events.cli._common import EXIT_FAILED, fail
    from provider_events.errors import DatabaseError

    store = _usage_store(args)
    if store is None:
        return None
    try:
        return ask(store)
    except DatabaseError as exc:
        raise SystemExit(fail(str(exc), EXIT_FAILED)) from None
    finally:
        store.close()


def _measured(args: argparse.Namespace, window: Any, declared: Any) -> list[dict[str, Any]] | None:
    """Measured cost beside the declared one per provider and model (docs/usage.md); ``None``
    where the store has no outcome tables yet (a PostgreSQL not migrated to 0005)."""
    from provider_events.usage._answers import measured_beside_declared

    rows = _answer(
        args,
        lambda store: measured_beside_declared(
            store, window.since, window.until, window.tenant, declared
        ),
    )
    if rows is None:
        return None
    return rows if any(r["outcomes"] for r in rows) else []


def _render_measured(console: Any, rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table(title="Declared vs measured cost (USD) by model", title_justify="left")
    for col in (
        "provider",
        "model",
        "selections",
        "declared",
        "outcomes",
        "measured",
        "difference",
    ):
        table.add_column(col, justify="left" if col in ("provider", "model") else "right")

    def money(v: Any) -> str:
        return "-" if v is None else f"{v:,.4f}"

    for r in rows:
        measured = money(r["measured_cost_usd"]) + (
            f" (+{r['unpriced']} unpriced)" if r["unpriced"] else ""
        )
        table.add_row(
            r["provider_name"],
            r["model_name"],
            str(r["selections"]),
            money(r["declared_cost_usd"]),
            str(r["outcomes"]),
            measured,
            money(r["difference_usd"]),
        )
    console.print(table)
