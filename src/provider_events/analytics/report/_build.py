"""Gather the answers for one window and lay them out as the report's charts and tables."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from provider_events.analytics._answers import Backend, Measures, Stats, collect_stats
from provider_events.analytics._model import HOUR, Window
from provider_events.analytics._recommend import Recommendation, RecommendOptions, recommend
from provider_events.analytics._render import fixed
from provider_events.analytics.report import _svg
from provider_events.analytics.report._page import card, kpi, legend, page, table
from provider_events.analytics.report._svg import Bar, Series, esc

__all__ = ["build_report", "render_report"]

_PROVIDER_COLORS = {
    "claude": "#d97757",
    "openrouter": "#6366f1",
    "gemini-pro": "#1a73e8",
    "gemini-flash": "#34a853",
    "gemini-2.5-flash": "#0f9d9a",
    "zai": "#9333ea",
    "together": "#f59e0b",
}
_PALETTE = ("#ef4444", "#0ea5e9", "#84cc16", "#ec4899", "#64748b", "#a16207", "#14b8a6")


class _Colors:
    def __init__(self) -> None:
        self.extra: dict[str, str] = {}

    def __call__(self, provider: str) -> str:
        if provider in _PROVIDER_COLORS:
            return _PROVIDER_COLORS[provider]
        if provider not in self.extra:
            self.extra[provider] = _PALETTE[len(self.extra) % len(_PALETTE)]
        return self.extra[provider]


def _money(v: float) -> str:
    return f"${v:,.2f}" if v >= 0.01 or v == 0 else f"${v:,.4f}"


def _per_m(v: float | None) -> str:
    return "-" if v is None else f"${v * 1_000_000:,.2f}/M"


def _ms(v: float) -> str:
    return f"{v:,.0f} ms"


def _count(v: float) -> str:
    return f"{v:,.0f}"


#: Most periods (columns, points) a time chart draws: a longer window is drawn in coarser bins
#: (whole days), so the report stays small (docs/analytics.md: under 5 MB) whatever the window.
MAX_PERIODS = 400


def _coarse(window: Window, step: timedelta) -> timedelta:
    """``step``, or a multiple of a day coarse enough for at most :data:`MAX_PERIODS` periods."""
    if (window.until - window.since) / step <= MAX_PERIODS:
        return step
    days = -(-window.hours // (24 * MAX_PERIODS))  # ceiling
    return timedelta(days=max(1, days))


def _unit(step: timedelta) -> str:
    if step < timedelta(days=1):
        return "hour" if step == HOUR else f"{step // HOUR} h"
    return "day" if step.days == 1 else f"{step.days} days"


def _periods(window: Window, step: timedelta) -> list[datetime]:
    out, t = [], window.since
    while t < window.until:
        out.append(t)
        t += step
    return out


def _bucket(moment: datetime, window: Window, step: timedelta) -> datetime:
    return window.since + ((moment - window.since) // step) * step


def _provider_layers(
    hourly: dict[tuple[Any, ...], Measures],
    window: Window,
    step: timedelta,
    periods: list[datetime],
    providers: list[str],
    value: Callable[[Measures], float],
) -> dict[str, list[float]]:
    """Per provider, the sum of ``value`` over its hourly measures in each period."""
    index = {p: i for i, p in enumerate(periods)}
    layers = {p: [0.0] * len(periods) for p in providers}
    for (hour, provider), m in hourly.items():
        i = index.get(_bucket(hour, window, step))
        if i is not None and provider in layers:
            layers[provider][i] += value(m)
    return layers


def _trend_step(window: Window) -> timedelta:
    """About 28 points across the window, in whole hours that divide a day."""
    target = max(1, window.hours // 28)
    hours = next((h for h in (1, 2, 3, 4, 6, 12, 24) if h >= target), 24)
    return timedelta(hours=hours if window.hours <= 24 * 60 else 24)


def build_report(
    backend: Backend,
    window: Window,
    opts: RecommendOptions | None = None,
    now: datetime | None = None,
) -> str:
    """The report for ``window`` as one self-contained HTML document."""
    stats = collect_stats(backend, window, "provider")
    recs = recommend(backend, window, opts) if stats.total_selections else []
    hourly = backend.totals(window, ("hour", "provider_name")) if stats.total_selections else {}
    return render_report(
        stats,
        recs,
        hourly,
        now=now,
        measured=_measured(backend, window),
        routing=_routing(backend, window),
    )


def _routing(backend: Backend, window: Window) -> dict[str, Any] | None:
    """What routers (the LiteLLM callback) recorded in the window, from the same store."""
    from provider_events.analytics._routing import routing_answer
    from provider_events.usage._answers import UsageStore

    conn = getattr(backend, "_conn", None)
    if conn is None:
        return None
    dialect = "sqlite" if backend.dialect == "sqlite" else "postgresql"
    store = UsageStore(dialect, conn, backend.location)  # borrowed: not closed here
    answer = routing_answer(store, window.since, window.until, window.tenant)
    return answer if answer["providers"] else None


def _measured(backend: Backend, window: Window) -> dict[tuple[str, str], dict[str, Any]]:
    """Measured usage per (provider, model) from the same store (docs/usage.md); empty when
    it holds no outcomes, or is a PostgreSQL not migrated to 0005."""
    from provider_events.usage._answers import UsageStore, measured_by_model

    conn = getattr(backend, "_conn", None)
    if conn is None:
        return {}
    dialect = "sqlite" if backend.dialect == "sqlite" else "postgresql"
    store = UsageStore(dialect, conn, backend.location)  # borrowed: not closed here
    if dialect == "postgresql":
        found = store.fetch("SELECT to_regclass('provider_outcomes_hourly') IS NOT NULL", [])
        if not found[0][0]:
            return {}
    return measured_by_model(store, window.since, window.until, window.tenant)


def render_report(
    stats: Stats,
    recs: Sequence[Recommendation],
    hourly: dict[tuple[Any, ...], Measures],
    now: datetime | None = None,
    measured: dict[tuple[str, str], dict[str, Any]] | None = None,
    routing: dict[str, Any] | None = None,
) -> str:
    """Lay out already-computed answers (I/O free; the tests feed it directly too)."""
    window = stats.window
    color = _Colors()
    providers = [c.provider_name for c in stats.cost if c.level == "provider"]
    for p in providers:
        color(p)
    now = now or datetime.now(UTC)
    where = {"postgresql": "PostgreSQL", "local": "the local event store"}.get(
        stats.backend, stats.backend
    )
    subtitle = (
        f"{window.label()} · {stats.total_selections:,} selections · read from {where} · "
        f"generated {now:%Y-%m-%d %H:%M} UTC"
    )
    sections: list[str] = []
    if stats.total_selections:
        sections += _usage_sections(stats, hourly, providers, color)
        sections += _cost_sections(stats, hourly, providers, color)
        sections += _criteria_sections(stats, hourly, providers, color)
        sections.append(_reasons_section(stats, color))
        sections.append(_recommendations_section(recs, color))
        if measured and any(m["outcomes"] for m in measured.values()):
            sections.append(_measured_section(stats, measured, color))
        if routing:
            sections.append(_routing_section(routing, color))
    else:
        sections.append(
            card(
                "No selections in this window",
                "Publish some selections, or run `provider-events demo`.",
                "",
                wide=True,
            )
        )
    return page(
        "Provider selections",
        subtitle,
        _kpis(stats, recs),
        sections,
        _footer(stats),
    )


def _kpis(stats: Stats, recs: Sequence[Recommendation]) -> str:
    models = sum(1 for c in stats.cost if c.level == "model")
    providers = sum(1 for c in stats.cost if c.level == "provider")
    total = stats.total_cost_usd
    coverage = stats.overall.costed_n / stats.total_selections if stats.total_selections else 0
    saving = sum(r.best_saving or 0.0 for r in recs)
    latency = stats.overall.mean("latency_ms")
    return "".join(
        [
            kpi("Selections", f"{stats.total_selections:,}", f"{stats.window.hours} hours"),
            kpi("Providers", str(providers), f"{models} models"),
            kpi(
                "Total cost",
                _money(total) if total is not None else "unknown",
                f"{coverage:.0%} of selections costed" if total is not None else "no token counts",
            ),
            kpi(
                "Avg price",
                _per_m(stats.overall.mean("cost_per_token")),
                "selection-weighted",
            ),
            kpi(
                "Avg latency",
                _ms(latency) if latency is not None else "-",
                "expected, per selection",
            ),
            kpi(
                "Possible saving",
                _money(saving) if saving else "-",
                f"{sum(1 for r in recs if r.status == 'alternatives')} recommendation(s)",
            ),
        ]
    )


def _usage_sections(
    stats: Stats, hourly: dict[tuple[Any, ...], Measures], providers: list[str], color: _Colors
) -> list[str]:
    window = stats.window
    step = _coarse(window, HOUR if window.hours <= 24 * 21 else timedelta(days=1))
    periods = _periods(window, step)
    layers = _provider_layers(hourly, window, step, periods, providers, lambda m: m.selections)
    area = _svg.stacked_area(
        "selections-over-time",
        "Selections over time, stacked by provider",
        periods,
        step,
        [(p, color(p), layers[p]) for p in providers],
        _count,
    )
    models = [c for c in stats.cost if c.level == "model"]
    models.sort(key=lambda c: (-c.selections, c.provider_name, c.model_name or ""))
    bars = [
        Bar(
            f"{c.provider_name}/{c.model_name}",
            c.selections,
            color(c.provider_name),
            f"{c.selections:,} ({c.selections / stats.total_selections:.1%})",
        )
        for c in models[:15]
    ]
    more = f"; {len(models) - 15} more not shown" if len(models) > 15 else ""
    return [
        card(
            "Selections over time",
            f"per {_unit(step)}, stacked by provider (UTC)",
            area + legend([(p, color(p)) for p in providers]),
            wide=True,
            ident="usage",
        ),
        card(
            "Model distribution",
            f"selections per model, top 15{more}",
            _svg.hbars("model-distribution", "Selections per model", bars),
        ),
    ]


def _cost_sections(
    stats: Stats, hourly: dict[tuple[Any, ...], Measures], providers: list[str], color: _Colors
) -> list[str]:
    window = stats.window
    day = timedelta(days=1)
    if window.hours > 24 * 14:
        step = day
    else:
        step = timedelta(hours=6 if window.hours > 72 else (2 if window.hours > 24 else 1))
    step = _coarse(window, step)
    periods = _periods(window, step)
    has_cost = stats.total_cost_usd is not None
    layers = _provider_layers(
        hourly,
        window,
        step,
        periods,
        providers,
        (lambda m: m.cost_usd) if has_cost else (lambda m: m.selections),
    )
    unit = _unit(step)
    if has_cost:
        columns = _svg.stacked_columns(
            "cost-over-time",
            "Cost over time by provider",
            periods,
            step,
            [(p, color(p), layers[p]) for p in providers],
            _money,
            width=1240,
            height=260,
        )
        per_period = card(
            "Cost over time",
            f"USD per {unit}, stacked by provider; from token counts times cost_per_token "
            "(or cost_usd)",
            columns + legend([(p, color(p)) for p in providers]),
            wide=True,
        )
    else:
        per_period = card(
            "Cost over time",
            "no selection carries token counts or cost_usd, so there is no total to chart",
            _svg.stacked_columns(
                "cost-over-time", "Cost over time", [], step, [], _money, width=1240, height=260
            ),
            wide=True,
        )
    models = [c for c in stats.cost if c.level == "model"]
    if has_cost:
        models.sort(key=lambda c: (-(c.total_cost_usd or 0.0), c.provider_name))
        bars = [
            Bar(
                f"{c.provider_name}/{c.model_name}",
                c.total_cost_usd or 0.0,
                color(c.provider_name),
                f"{_money(c.total_cost_usd or 0.0)} · {_per_m(c.avg_cost_per_token)}",
            )
            for c in models[:15]
        ]
        sub = "total USD in the window and average price per million tokens"
    else:
        models.sort(key=lambda c: (-(c.avg_cost_per_token or 0.0), c.provider_name))
        bars = [
            Bar(
                f"{c.provider_name}/{c.model_name}",
                (c.avg_cost_per_token or 0.0) * 1_000_000,
                color(c.provider_name),
                _per_m(c.avg_cost_per_token),
            )
            for c in models[:15]
        ]
        sub = "no token counts: selection-weighted average price per million tokens"
    # Cost by model pairs with the model distribution; the wide cost-over-time chart follows.
    return [
        card("Cost by model", sub, _svg.hbars("cost-by-model", "Cost by model", bars)),
        per_period,
    ]


def _criteria_sections(
    stats: Stats, hourly: dict[tuple[Any, ...], Measures], providers: list[str], color: _Colors
) -> list[str]:
    window = stats.window
    interval = timedelta(days=1) if stats.interval == "day" else HOUR
    step = _coarse(window, interval)
    series: list[Series] = []
    for p in providers:
        # p50 and p95 of each interval; a coarser bin shows the mean of its intervals' values
        bins: dict[datetime, list[tuple[float, float]]] = defaultdict(list)
        for t in stats.trends:
            if (
                t.provider_name == p
                and t.metric == "latency_ms"
                and t.period_start
                and t.p50 is not None
                and t.p95 is not None
            ):
                bins[_bucket(t.period_start, window, step)].append((t.p50, t.p95))
        pts = sorted(
            (m, sum(v[0] for v in vs) / len(vs), sum(v[1] for v in vs) / len(vs))
            for m, vs in bins.items()
        )
        if pts:
            series.append(Series(f"{p} p50", color(p), [(m + step / 2, a) for m, a, _ in pts]))
            series.append(
                Series(f"{p} p95", color(p), [(m + step / 2, b) for m, _, b in pts], dashed=True)
            )
    latency = _svg.lines(
        "latency-trend", "Latency p50 and p95 by provider", window.since, window.until, series, _ms
    )
    qstep = _coarse(window, _trend_step(window))
    sums: dict[tuple[str, datetime], Measures] = defaultdict(Measures)
    for (hour, provider), m in hourly.items():
        key = (provider, _bucket(hour, window, qstep))
        sums[key] = sums[key].merge(m)
    qseries = []
    for p in providers:
        means = sorted((t, m.mean("quality_score")) for (pp, t), m in sums.items() if pp == p)
        if any(v is not None for _, v in means):
            qseries.append(Series(p, color(p), [(t + qstep / 2, v) for t, v in means]))
    quality = _svg.lines(
        "quality-trend",
        "Average quality score by provider",
        window.since,
        window.until,
        qseries,
        lambda v: f"{v:.2f}",
    )
    rows = []
    by_provider: dict[str, dict[str, Any]] = defaultdict(dict)
    for c in stats.criteria:
        by_provider[c.provider_name][c.metric] = c
    for p in providers:
        lat = by_provider[p].get("latency_ms")
        q = by_provider[p].get("quality_score")
        cpt = by_provider[p].get("cost_per_token")
        rows.append(
            [
                f'<span class="sw" style="background:{esc(color(p))}"></span>{esc(p)}',
                esc(_per_m(cpt.avg) if cpt else "-"),
                esc(_ms(lat.p50) if lat and lat.p50 is not None else "-"),
                esc(_ms(lat.p95) if lat and lat.p95 is not None else "-"),
                esc(f"{q.avg:.3f}" if q and q.avg is not None else "-"),
                esc(f"{q.p50:.3f}" if q and q.p50 is not None else "-"),
                esc(f"{lat.samples:,}" if lat else "0"),
            ]
        )
    criteria = table(
        [
            ("provider", False),
            ("avg price", True),
            ("latency p50", True),
            ("latency p95", True),
            ("quality avg", True),
            ("quality p50", True),
            ("samples", True),
        ],
        rows,
    )
    unit = "day" if step.days else "hour"
    return [
        card(
            "Latency trend",
            f"expected latency_ms per {unit}: p50 solid, p95 dashed",
            latency + legend([(p, color(p)) for p in providers], "p95"),
        ),
        card(
            "Quality trend",
            f"average quality_score per {qstep // HOUR} h",
            quality + legend([(p, color(p)) for p in providers]),
        ),
        card("Criteria by provider", "over the whole window", criteria, wide=True),
    ]


def _measured_section(
    stats: Stats, measured: dict[tuple[str, str], dict[str, Any]], color: _Colors
) -> str:
    """Measured cost per provider (from Claude Code's records) beside the declared one."""
    declared = {c.provider_name: c.total_cost_usd for c in stats.cost if c.level == "provider"}
    per: dict[str, list[float]] = {}
    for (provider, _model), m in measured.items():
        acc = per.setdefault(provider, [0.0, 0.0, 0.0])
        acc[0] += m["cost_usd"]
        acc[1] += m["outcomes"]
        acc[2] += m["unpriced"]
    bars = []
    for provider, (cost, outcomes, unpriced) in sorted(per.items(), key=lambda kv: -kv[1][0]):
        dec = declared.get(provider)
        text = f"{_money(cost)} measured · " + (
            f"{_money(dec)} declared" if dec is not None else "no declared cost"
        )
        if unpriced:
            text += f" · {int(unpriced):,} unpriced"
        bars.append(
            Bar(provider, cost, color(provider), text, title=f"{int(outcomes):,} responses")
        )
    return card(
        "Measured cost by provider",
        "what responses cost according to Claude Code's own records, priced offline "
        "(unpriced responses are counted apart, never as $0), beside what selections declared",
        _svg.hbars("measured-cost", "Measured cost by provider", bars, width=1240, label_width=260),
        wide=True,
        ident="measured",
    )


def _routing_section(routing: dict[str, Any], color: _Colors) -> str:
    """Per provider: calls a router recorded, with how many a fallback served, how many were
    served by another model than the one asked for, and how many failed."""
    bars = [
        Bar(
            r["provider_name"],
            r["calls"],
            color(r["provider_name"]),
            f"{r['calls']:,} calls · {r['fallback_share']:.0%} by a fallback · "
            f"{r['served_differs_share']:.0%} served by another model · "
            f"{r['error_share']:.0%} failed",
            title=r["provider_name"],
        )
        for r in routing["providers"]
    ]
    return card(
        "Routing (LiteLLM)",
        "calls a router recorded: requested vs served model, fallbacks and failures",
        _svg.hbars("routing", "Routing by provider", bars, width=1240, label_width=260),
        wide=True,
        ident="routing",
    )


def _reasons_section(stats: Stats, color: _Colors) -> str:
    bars = [
        Bar(
            r.selection_reason or "(empty)",
            r.selections,
            color(r.top_provider),
            f"{r.selections:,} ({r.share:.1%}) · mostly {r.top_provider}",
            title=r.selection_reason or "(empty)",
        )
        for r in stats.reasons
    ]
    return card(
        "Top selection reasons",
        "free text as recorded; coloured by the provider it was given for most",
        _svg.hbars("top-reasons", "Top selection reasons", bars, width=1240, label_width=420),
        wide=True,
        ident="reasons",
    )


def _recommendations_section(recs: Sequence[Recommendation], color: _Colors) -> str:
    found = [r for r in recs if r.status == "alternatives"]
    bars = [
        Bar(
            f"{r.provider_name}/{r.model_name}",
            r.best_saving or 0.0,
            color(r.alternatives[0].provider_name),
            f"{_money(r.best_saving or 0.0)} → {r.alternatives[0].provider_name}/"
            f"{r.alternatives[0].model_name}",
        )
        for r in found
        if r.best_saving
    ]
    chart = _svg.hbars(
        "recommendation-savings",
        "Estimated saving per recommendation",
        bars,
        width=1240,
        label_width=420,
    )
    items = []
    for r in found:
        quality = "-" if r.avg_quality_score is None else f"{r.avg_quality_score:.3f}"
        alts = "".join(
            '<div class="alt">→ <b>'
            + esc(f"{a.provider_name}/{a.model_name}")
            + "</b> "
            + esc(
                f"{_per_m(a.avg_cost_per_token)} ({fixed(a.price_ratio - 1, '+.0%')}) · quality "
                f"{fixed(a.quality_delta, '+.3f')} · p95 {fixed(a.latency_change, '+.0%')} · "
                + (
                    f"saves {_money(a.estimated_saving_usd)}"
                    if a.estimated_saving_usd is not None
                    else f"saves {_money(a.saving_per_million_tokens_usd)} per million tokens"
                )
                + f" · {a.selections:,} selections"
            )
            + f'<span class="pill {"low" if a.confidence == "low" else ""}">'
            + esc(f"{a.confidence} confidence")
            + "</span></div>"
            for a in r.alternatives
        )
        items.append(
            '<div class="rec"><h3>'
            + esc(f"{r.provider_name}/{r.model_name}")
            + '</h3><div class="now">'
            + esc(
                f"now {r.selections:,} selections · {_per_m(r.avg_cost_per_token)} · quality "
                f"{quality} · p95 {_ms(r.latency_p95_ms) if r.latency_p95_ms else '-'}"
            )
            + "</div>"
            + alts
            + "</div>"
        )
    rest = [r for r in recs if r.status != "alternatives"]
    if rest:
        items.append(
            '<h3 class="rest">No change suggested</h3><ul class="rest">'
            + "".join(
                f"<li><b>{esc(f'{r.provider_name}/{r.model_name}')}</b> "
                f'<span class="muted">{esc(f"({r.selections:,} selections): {r.message}")}'
                "</span></li>"
                for r in rest
            )
            + "</ul>"
        )
    if not found:
        items.insert(0, "<p>No cheaper model with enough data matches quality and latency.</p>")
    return card(
        "Recommendations",
        "cheaper models with equal or better quality_score and acceptable p95 latency_ms",
        chart + "".join(items),
        wide=True,
        ident="recommendations",
    )


def _footer(stats: Stats) -> str:
    basis = {
        "full": "Total cost is computed from token counts times cost_per_token (or cost_usd) of every selection.",
        "partial": (
            f"Total cost covers the {stats.overall.costed_n:,} of {stats.total_selections:,} "
            "selections that carry token counts (times cost_per_token) or cost_usd; the rest carry a "
            "price only."
        ),
        "per_token": "No selection carries token counts: prices are selection-weighted averages per token.",
        "none": "No selection carries cost information.",
    }[stats.cost_basis]
    return (
        esc(basis)
        + "<br>"
        + esc(
            "Latency and quality are the expected values recorded in each selection's criteria. "
            "Percentiles come from histograms with 2 % wide bins (within 2 % of the exact value). "
            "Windows are whole UTC hours."
        )
    )
