"""Rich tables for people: the terminal face of ``stats`` and ``recommend`` (and ``demo``).

Prices are shown per million tokens ($/M), which people read more easily than 6e-06 per token;
the JSON and CSV outputs keep the raw per-token fields.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

from provider_events.settings import process_environ

if TYPE_CHECKING:
    from provider_events.analytics._answers import CriteriaRow, Stats
    from provider_events.analytics._model import Window
    from provider_events.analytics._recommend import Recommendation, RecommendOptions

__all__ = [
    "fixed",
    "make_console",
    "money",
    "per_million",
    "render_recommendations",
    "render_stats",
]

#: Width of the output when stdout is not a terminal (a pipe, a file, CI) and COLUMNS is unset:
#: wide enough that no table wraps a model name or a reason in the middle of a word.
PIPE_WIDTH = 200

_SPARK = "▁▂▃▄▅▆▇█"
_METRIC_TITLES = {
    "latency_ms": "Latency (latency_ms)",
    "quality_score": "Quality (quality_score)",
    "cost_per_token": "Price (cost_per_token, $ per million tokens)",
}
_BASIS = {
    "full": "total cost from token counts (or cost_usd) of every selection",
    "partial": "total cost from the selections that carry token counts (or cost_usd); "
    "the others carry only a price",
    "per_token": "no token counts: selection-weighted average price per token only",
    "none": "no cost information in the selection criteria",
}


def make_console(file: TextIO | None = None, **options: Any) -> Console:
    """A Console for command output: as wide as the terminal on a terminal; when the output
    is not a terminal (piped, redirected, CI) and ``COLUMNS`` is unset, :data:`PIPE_WIDTH`
    columns instead of rich's 80, so tables do not wrap in the middle of a word."""
    stream = file if file is not None else sys.stdout
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    columns = process_environ().get("COLUMNS", "").strip()
    if not tty and "width" not in options and not columns:
        options["width"] = PIPE_WIDTH
    return Console(file=file, **options)


def fixed(value: float, spec: str) -> str:
    """``format(value, spec)`` that never shows a negative zero: a value that rounds to zero
    prints as ``0.000`` (or ``+0.000`` with a ``+`` spec), not ``-0.000``."""
    text = format(value, spec)
    if text.startswith("-") and not any(c in "123456789" for c in text):
        text = ("+" if "+" in spec else "") + text[1:]
    return text


def money(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 0.01 or value == 0:
        return "$" + fixed(value, ",.2f")
    return "$" + fixed(value, ".4f")


def per_million(value: float | None) -> str:
    return "-" if value is None else "$" + fixed(value * 1_000_000, ",.2f")


def _metric(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    if metric == "latency_ms":
        return fixed(value, ",.0f") + " ms"
    if metric == "quality_score":
        return fixed(value, ".3f")
    return per_million(value)


def sparkline(values: Sequence[float | None]) -> str:
    present = [v for v in values if v is not None]
    if not present:
        return ""
    lo, hi = min(present), max(present)
    # Small wobbles stay flat: the scale spans at least 10 % of the typical value.
    floor = 0.10 * abs(sum(present) / len(present))
    if hi - lo < floor:
        middle = (hi + lo) / 2
        lo, hi = middle - floor / 2, middle + floor / 2
    span = hi - lo
    out = []
    for v in values:
        if v is None:
            out.append(" ")
        else:
            index = 0 if span <= 0 else round((v - lo) / span * (len(_SPARK) - 1))
            out.append(_SPARK[index])
    return "".join(out)


def _period(moment: datetime | None, interval: str) -> str:
    if moment is None:
        return ""
    return f"{moment:%Y-%m-%d %H:00}" if interval == "hour" else f"{moment:%Y-%m-%d}"


def _header(stats: Stats) -> Text:
    where = "PostgreSQL" if stats.backend == "postgresql" else "local event store"
    text = Text.assemble(
        ("provider-events stats", "bold"),
        f"  ·  {where} ({stats.location})\n",
        ("window ", "dim"),
        stats.window.label(),
        ("  ·  ", "dim"),
        (f"{stats.total_selections:,}", "bold"),
        " selections",
    )
    return text


def render_stats(console: Console, stats: Stats, section: str = "all") -> None:
    """Print the sections of ``stats`` as tables."""
    console.print(_header(stats))
    if stats.total_selections == 0:
        first, last, total = stats.extent or (None, None, 0)
        if total:
            console.print(
                f"[yellow]No selections in this window.[/] The store holds {total:,} from "
                f"{first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC: try "
                f"[bold]--since {first:%Y-%m-%dT%H:%M}Z --until {last:%Y-%m-%dT%H:%M}Z[/]."
            )
        else:
            console.print(
                "[yellow]No selections yet.[/] Publish some (or run [bold]provider-events demo[/])."
            )
        return
    if section in ("all", "groups"):
        console.print(_groups_table(stats, console.width))
    if section in ("all", "reasons") and stats.reasons:
        console.print(_reasons_table(stats))
    if section in ("all", "criteria", "trends"):
        for metric in ("latency_ms", "quality_score", "cost_per_token"):
            table = _criteria_table(stats, metric)
            if table is not None:
                console.print(table)
    if section in ("all", "cost"):
        console.print(_cost_table(stats))
        console.print(f"[dim]Cost basis: {_BASIS[stats.cost_basis]}.[/]")


def _groups_table(stats: Stats, width: int) -> Table:
    by = stats.group_by
    table = Table(title=f"Selections by {by}", title_justify="left", title_style="bold")
    labels = []
    for g in stats.groups:
        if by in ("hour", "day"):
            labels.append(_period(g.period_start, by))
        elif by == "model":
            labels.append(f"{g.provider_name}/{g.model_name}")
        else:
            labels.append(g.group)
    table.add_column(
        {"hour": "hour (UTC)", "day": "day (UTC)"}.get(by, by),
        overflow="fold",
        min_width=10,
    )
    # The bar gives way first on a narrow terminal: ~66 columns go to the figures.
    longest = max((len(label) for label in labels), default=10)
    bar_room = max(0, min(12, width - 70 - longest))
    for name in ("selections", "share", "bar", "price $/M", "latency", "quality", "cost"):
        if name == "bar":
            if bar_room >= 4:
                table.add_column("", no_wrap=True)
            continue
        table.add_column(name, justify="right", no_wrap=True)
    peak = max((g.selections for g in stats.groups), default=1)
    for label, g in zip(labels, stats.groups, strict=True):
        bar = []
        if bar_room >= 4:
            length = max(1, round(bar_room * g.selections / peak)) if g.selections else 0
            bar = [Text("█" * length, style="cyan")]
        table.add_row(
            Text(label),
            f"{g.selections:,}",
            fixed(g.share, ".1%"),
            *bar,
            per_million(g.avg_cost_per_token),
            _metric("latency_ms", g.avg_latency_ms),
            _metric("quality_score", g.avg_quality_score),
            money(g.total_cost_usd),
        )
    table.caption = "price, latency and quality are averages of the selection criteria"
    return table


def _reasons_table(stats: Stats) -> Table:
    table = Table(title="Top selection reasons", title_justify="left", title_style="bold")
    table.add_column("reason", overflow="fold")
    table.add_column("selections", justify="right")
    table.add_column("share", justify="right")
    table.add_column("mostly", overflow="fold")
    for r in stats.reasons:
        # Text() keeps user-provided reasons literal: no rich markup is interpreted.
        table.add_row(
            Text(r.selection_reason or "(empty)"),
            f"{r.selections:,}",
            f"{r.share:.1%}",
            Text(f"{r.top_provider}/{r.top_model}"),
        )
    return table


def _criteria_table(stats: Stats, metric: str) -> Table | None:
    rows = [c for c in stats.criteria if c.metric == metric]
    if not rows:
        return None
    series: dict[str, dict[datetime, CriteriaRow]] = defaultdict(dict)
    periods = sorted({t.period_start for t in stats.trends if t.period_start is not None})
    for t in stats.trends:
        if t.metric == metric and t.period_start is not None:
            series[t.provider_name][t.period_start] = t
    table = Table(title=_METRIC_TITLES[metric], title_justify="left", title_style="bold")
    for name in ("provider", "samples", "avg", "p50", "p95", "min", "max"):
        table.add_column(name, justify="left" if name == "provider" else "right")
    table.add_column(f"p50 per {stats.interval}")
    for c in rows:
        points = [series[c.provider_name].get(p) for p in periods]
        spark = sparkline([pt.p50 if pt else None for pt in points])
        table.add_row(
            c.provider_name,
            f"{c.samples:,}",
            _metric(metric, c.avg),
            _metric(metric, c.p50),
            _metric(metric, c.p95),
            _metric(metric, c.min),
            _metric(metric, c.max),
            Text(spark, style="magenta"),
        )
    return table


def _cost_table(stats: Stats) -> Table:
    table = Table(title="Cost by provider and model", title_justify="left", title_style="bold")
    table.add_column("provider / model", overflow="fold")
    for name in ("selections", "with tokens", "tokens", "price $/M", "total cost"):
        table.add_column(name, justify="right")
    for c in stats.cost:
        provider_row = c.level == "provider"
        label = Text(c.provider_name if provider_row else f"  {c.model_name}")
        style = "bold" if provider_row else ""
        table.add_row(
            label,
            f"{c.selections:,}",
            f"{c.costed_selections / c.selections:.0%}" if c.selections else "-",
            f"{c.tokens:,.0f}" if c.tokens else "-",
            per_million(c.avg_cost_per_token),
            money(c.total_cost_usd),
            style=style,
        )
    total = stats.total_cost_usd
    table.caption = (
        f"total {money(total)} over {stats.overall.costed_n:,} costed selections"
        if total is not None
        else "no selection carries token counts or cost_usd"
    )
    return table


def render_recommendations(
    console: Console,
    recs: Sequence[Recommendation],
    window: Window,
    where: str,
    opts: RecommendOptions,
) -> None:
    """Print recommendations: a table of alternatives, then what could not be judged."""
    console.print(
        Text.assemble(
            ("provider-events recommend", "bold"),
            f"  ·  {where}\n",
            ("window ", "dim"),
            window.label(),
        )
    )
    if not recs:
        console.print("[yellow]No selections in this window: nothing to recommend.[/]")
        return
    found = [r for r in recs if r.status == "alternatives"]
    if found:
        console.print(
            Text("Cheaper models with equal or better quality and acceptable latency", style="bold")
        )
        for r in found:
            quality = "-" if r.avg_quality_score is None else fixed(r.avg_quality_score, ".3f")
            console.print(
                Text.assemble(("• ", "dim"), (f"{r.provider_name}/{r.model_name}", "bold"))
            )
            console.print(
                Text(
                    f"    now {r.selections:,} selections · {per_million(r.avg_cost_per_token)}/M"
                    f" · quality {quality} · p95 {_metric('latency_ms', r.latency_p95_ms)}"
                    f" · cost {money(r.total_cost_usd)}",
                    style="dim",
                )
            )
            for a in r.alternatives:
                saving = (
                    f"saves {money(a.estimated_saving_usd)}"
                    if a.estimated_saving_usd is not None
                    else f"saves {money(a.saving_per_million_tokens_usd)} per million tokens"
                )
                console.print(
                    Text.assemble(
                        ("    → ", "green"),
                        (f"{a.provider_name}/{a.model_name}", "green"),
                        "  ",
                        (saving, "bold"),
                    )
                )
                console.print(
                    f"      {per_million(a.avg_cost_per_token)}/M ({fixed(a.price_ratio - 1, '+.0%')})"
                    f" · quality {fixed(a.quality_delta, '+.3f')}"
                    f" · p95 {fixed(a.latency_change, '+.0%')}"
                    f" · {a.confidence} confidence · {a.selections:,} selections",
                    highlight=False,
                )
        total = sum(r.best_saving or 0.0 for r in found)
        if total:
            console.print(
                f"Following the first suggestion for each model would have saved about "
                f"[bold green]{money(total)}[/] over this window."
            )
        console.print(
            "[dim]Quality and latency are what the selection criteria recorded (expected, not "
            f"measured). Accepted: p95 latency up to {opts.latency_tolerance:.0%} higher "
            f"(--latency-tolerance), quality at most {opts.quality_tolerance:g} lower "
            f"(--quality-tolerance), at least {opts.min_samples} samples each (--min-samples).[/]"
        )
    rest = [r for r in recs if r.status != "alternatives"]
    if rest:
        console.print(Text("No change suggested", style="bold"))
        for r in rest:
            style = {"none_cheaper": "", "too_little_data": "yellow", "no_criteria": "yellow"}[
                r.status
            ]
            console.print(
                Text.assemble(
                    ("  • ", "dim"),
                    (f"{r.provider_name}/{r.model_name}", "bold"),
                    f" ({r.selections:,} selections): ",
                    (r.message, style),
                )
            )
    if all(r.status in ("too_little_data", "no_criteria") for r in recs):
        console.print(
            f"[yellow]Too little data to recommend anything: each model needs at least "
            f"{opts.min_samples} selections with cost_per_token, quality_score and latency_ms.[/]"
        )
