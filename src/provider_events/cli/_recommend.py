"""``provider-events recommend``: cheaper models with equal or better quality, from the data.

For each model in use over the window: cheaper models whose recorded ``quality_score`` is
equal or better and whose p95 ``latency_ms`` is acceptable, the estimated saving over the
window and the sample counts behind it; it says plainly when there is too little data.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from provider_events.analytics._recommend import Recommendation, RecommendOptions

CSV_FIELDS = (
    "provider_name",
    "model_name",
    "status",
    "selections",
    "samples",
    "avg_cost_per_token",
    "avg_quality_score",
    "latency_p95_ms",
    "total_cost_usd",
    "cost_basis",
    "alternative_provider_name",
    "alternative_model_name",
    "alternative_selections",
    "alternative_avg_cost_per_token",
    "alternative_avg_quality_score",
    "alternative_latency_p95_ms",
    "quality_delta",
    "quality_delta_se",
    "latency_change",
    "price_ratio",
    "estimated_saving_usd",
    "saving_per_million_tokens_usd",
    "confidence",
    "message",
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from provider_events.cli._analytics_common import add_window_arguments
    from provider_events.cli._common import float_arg, int_arg

    p.description = (
        "For each model in use: cheaper models with equal or better quality_score and "
        "acceptable latency_ms, the estimated saving over the window, and the data behind it."
    )
    add_window_arguments(p)
    p.add_argument(
        "--min-samples",
        type=int_arg(1, 1_000_000_000),
        default=30,
        metavar="N",
        help="selections with cost, quality and latency a model needs to be judged (default 30)",
    )
    p.add_argument(
        "--quality-tolerance",
        type=float_arg(0.0, 1.0),
        default=0.01,
        metavar="Q",
        help="a candidate's average quality_score may be this much lower (default 0.01)",
    )
    p.add_argument(
        "--latency-tolerance",
        type=float_arg(0.0, 1000.0),
        default=0.20,
        metavar="FRACTION",
        help="a candidate's p95 latency_ms may be this much higher, 0.2 = 20%% (default 0.2)",
    )
    p.add_argument(
        "--max-latency-ms",
        type=float_arg(0.0, 1e9, exclude_minimum=True),
        default=None,
        metavar="MS",
        help="and never above this",
    )
    p.add_argument(
        "--alternatives",
        type=int_arg(1, 1000),
        default=3,
        metavar="N",
        help="at most N per model (default 3)",
    )
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="JSON")
    fmt.add_argument("--csv", action="store_true", help="CSV, one row per model and alternative")


def options_from_args(args: argparse.Namespace) -> RecommendOptions:
    from provider_events.analytics._recommend import RecommendOptions

    return RecommendOptions(
        min_samples=args.min_samples,
        quality_tolerance=args.quality_tolerance,
        latency_tolerance=args.latency_tolerance,
        max_latency_ms=args.max_latency_ms,
        max_alternatives=args.alternatives,
    )


def csv_rows(recs: list[Recommendation]) -> list[dict[str, object]]:
    """One row per (model, alternative); a model without alternatives gets one row."""
    from dataclasses import asdict

    own = {"provider_name", "model_name", "selections", "avg_cost_per_token"}
    own |= {"avg_quality_score", "latency_p95_ms"}
    rows: list[dict[str, object]] = []
    for r in recs:
        base = r.to_dict()
        base.pop("alternatives")
        if not r.alternatives:
            rows.append(base)
        for a in r.alternatives:
            row = dict(base)
            for key, value in asdict(a).items():
                row[f"alternative_{key}" if key in own else key] = value
            rows.append(row)
    return rows


def run(args: argparse.Namespace) -> int:
    from provider_events.analytics._answers import to_jsonable
    from provider_events.analytics._recommend import recommend
    from provider_events.cli._analytics_common import (
        open_backend_or_exit,
        window_from_args,
        write_csv,
        write_json,
    )
    from provider_events.cli._common import EXIT_BAD_INPUT, EXIT_FAILED, fail
    from provider_events.errors import DatabaseError

    if args.min_samples < 1:
        return fail("--min-samples must be >= 1", EXIT_BAD_INPUT)
    if args.quality_tolerance < 0 or args.latency_tolerance < 0:
        return fail("tolerances must be >= 0", EXIT_BAD_INPUT)
    if args.alternatives < 1:
        return fail("--alternatives must be >= 1", EXIT_BAD_INPUT)
    window = window_from_args(args)
    opts = options_from_args(args)
    with open_backend_or_exit(args) as backend:
        try:
            recs = recommend(backend, window, opts)
        except DatabaseError as exc:
            return fail(str(exc), EXIT_FAILED)
        where = f"{backend.name} ({backend.location})"
        backend_name = backend.name
    measured = _measured_costs(args, window)
    if args.json:
        write_json(
            {
                "window": {
                    "since": to_jsonable(window.since),
                    "until": to_jsonable(window.until),
                    "tenant": window.tenant,
                },
                "backend": backend_name,
                "options": to_jsonable(opts),
                "recommendations": [_with_measured(r.to_dict(), measured) for r in recs],
            }
        )
        return 0
    if args.csv:
        write_csv(csv_rows(recs), CSV_FIELDS)
        return 0
    from provider_events.analytics._render import make_console, render_recommendations

    console = make_console()
    render_recommendations(console, recs, window, where, opts)
    for r in recs:
        d = _with_measured(r.to_dict(), measured)
        if d["saving_basis"] == "measured" and d["alternatives"]:
            best = max(a["estimated_saving_measured_usd"] for a in d["alternatives"])
            console.print(
                f"Measured: {d['provider_name']}/{d['model_name']} cost "
                f"${d['measured_cost_usd']:,.2f} in this window (Claude Code's records); "
                f"the best alternative would have saved about ${best:,.2f} at its price ratio."
            )
    return 0


def _measured_costs(args: argparse.Namespace, window: object) -> dict[tuple[str, str], float]:
    """Measured cost per (provider, model) in the window; empty where the store has none
    (or no outcome tables yet: a PostgreSQL not migrated to 0005)."""
    from provider_events.cli._common import EXIT_FAILED, fail, settings_or_exit
    from provider_events.errors import DatabaseError, OutboxError
    from provider_events.usage._answers import measured_by_model, open_usage_store

    try:
        store = open_usage_store(settings_or_exit(), args.store)
    except DatabaseError as exc:
        if "outcome tables are missing" in str(exc):
            return {}
        raise SystemExit(fail(str(exc), EXIT_FAILED)) from None
    except OutboxError as exc:
        raise SystemExit(fail(str(exc), EXIT_FAILED)) from None
    try:
        rows = measured_by_model(store, window.since, window.until, window.tenant)  # type: ignore[attr-defined]
    except DatabaseError as exc:
        raise SystemExit(fail(str(exc), EXIT_FAILED)) from None
    finally:
        store.close()
    return {k: m["cost_usd"] for k, m in rows.items() if m["outcomes"] > m["unpriced"]}


def _with_measured(rec: dict, measured: dict[tuple[str, str], float]) -> dict:  # type: ignore[type-arg]
    """``rec`` plus ``saving_basis`` (``measured`` when Claude Code's records priced this
    model in the window, else ``declared``), ``measured_cost_usd`` and, per alternative,
    ``estimated_saving_measured_usd`` = measured cost x (1 - price ratio)."""
    cost = measured.get((rec["provider_name"], rec["model_name"]))
    rec["saving_basis"] = "declared" if cost is None else "measured"
    rec["measured_cost_usd"] = cost
    for alt in rec["alternatives"]:
        alt["estimated_saving_measured_usd"] = (
            None if cost is None else round(cost * (1 - alt["price_ratio"]), 9)
        )
    return rec
