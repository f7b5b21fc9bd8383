"""Recommendations: cheaper models the data shows to be as good and fast enough.

For each model in use over the window, a candidate is any other model that

* has at least ``min_samples`` selections carrying ``cost_per_token``, ``quality_score`` and
  ``latency_ms`` (both the model and the candidate: otherwise we say there is too little data);
* costs at least 1 % less per token (selection-weighted average ``cost_per_token``);
* scores an average ``quality_score`` no more than ``quality_tolerance`` below the model's
  (default 0.01: "equal" at the two decimals quality scores are usually given with);
* has a p95 ``latency_ms`` at most ``latency_tolerance`` (default 20 %) above the model's, and
  under ``max_latency_ms`` when given.

The estimated saving is what the model's costed selections in the window would have cost at
the candidate's price: ``cost * (1 - candidate_price / model_price)``. When no selection
carries token counts (or ``cost_usd``), only the price difference per million tokens is known,
and the output says so. ``confidence`` is ``high`` when the quality difference minus two
standard errors still clears the tolerance, ``low`` when only the averages do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from provider_events.analytics._answers import ModelProfile, model_profiles, to_jsonable
from provider_events.analytics._model import Window

__all__ = ["Alternative", "RecommendOptions", "Recommendation", "recommend"]

#: A candidate must be at least this much cheaper per token (equal prices are not savings).
MIN_PRICE_DROP = 0.01


@dataclass(frozen=True, slots=True)
class RecommendOptions:
    """The knobs of ``provider-events recommend``."""

    min_samples: int = 30
    quality_tolerance: float = 0.01
    latency_tolerance: float = 0.20
    max_latency_ms: float | None = None
    max_alternatives: int = 3


@dataclass(frozen=True, slots=True)
class Alternative:
    """A cheaper model for the same work, with the evidence for it."""

    provider_name: str
    model_name: str
    selections: int
    avg_cost_per_token: float
    avg_quality_score: float
    quality_delta: float
    quality_delta_se: float | None
    latency_p95_ms: float
    latency_change: float
    price_ratio: float
    #: USD saved over the window had the model's costed selections used this one.
    estimated_saving_usd: float | None
    saving_per_million_tokens_usd: float
    confidence: str


@dataclass(frozen=True, slots=True)
class Recommendation:
    """One model in use: ``status`` says whether alternatives were found, and why not."""

    provider_name: str
    model_name: str
    #: ``alternatives``, ``none_cheaper``, ``too_little_data`` or ``no_criteria``.
    status: str
    message: str
    selections: int
    samples: int
    avg_cost_per_token: float | None
    avg_quality_score: float | None
    latency_p95_ms: float | None
    total_cost_usd: float | None
    cost_basis: str
    alternatives: list[Alternative] = field(default_factory=list)

    @property
    def best_saving(self) -> float | None:
        savings = [a.estimated_saving_usd for a in self.alternatives if a.estimated_saving_usd]
        return max(savings) if savings else None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = to_jsonable(self)
        return data


def _samples(p: ModelProfile) -> int:
    m = p.measures
    return min(m.samples("cost_per_token"), m.samples("quality_score"), m.samples("latency_ms"))


def _se(p: ModelProfile) -> float | None:
    sd = p.measures.stddev("quality_score")
    n = p.measures.samples("quality_score")
    return None if sd is None or n < 2 else sd / math.sqrt(n)


def _alternative(p: ModelProfile, c: ModelProfile, opts: RecommendOptions) -> Alternative | None:
    m, cm = p.measures, c.measures
    price, cprice = m.mean("cost_per_token"), cm.mean("cost_per_token")
    q, cq = m.mean("quality_score"), cm.mean("quality_score")
    lat, clat = p.latency_p95, c.latency_p95
    if None in (price, cprice, q, cq, lat, clat) or not price:
        return None
    assert price is not None and cprice is not None and q is not None and cq is not None
    assert lat is not None and clat is not None
    if cprice > price * (1.0 - MIN_PRICE_DROP):
        return None
    delta = cq - q
    if delta < -opts.quality_tolerance:
        return None
    if clat > lat * (1.0 + opts.latency_tolerance):
        return None
    if opts.max_latency_ms is not None and clat > opts.max_latency_ms:
        return None
    se_a, se_b = _se(p), _se(c)
    se = math.sqrt(se_a**2 + se_b**2) if se_a is not None and se_b is not None else None
    confident = se is not None and delta - 2.0 * se >= -opts.quality_tolerance
    ratio = cprice / price
    saving = m.cost_usd * (1.0 - ratio) if m.costed_n else None
    return Alternative(
        provider_name=c.provider_name,
        model_name=c.model_name,
        selections=cm.selections,
        avg_cost_per_token=cprice,
        avg_quality_score=cq,
        quality_delta=delta,
        quality_delta_se=se,
        latency_p95_ms=clat,
        latency_change=clat / lat - 1.0 if lat else 0.0,
        price_ratio=ratio,
        estimated_saving_usd=saving,
        saving_per_million_tokens_usd=(price - cprice) * 1_000_000,
        confidence="high" if confident else "low",
    )


def _base(p: ModelProfile, status: str, message: str) -> Recommendation:
    m = p.measures
    return Recommendation(
        provider_name=p.provider_name,
        model_name=p.model_name,
        status=status,
        message=message,
        selections=m.selections,
        samples=_samples(p),
        avg_cost_per_token=m.mean("cost_per_token"),
        avg_quality_score=m.mean("quality_score"),
        latency_p95_ms=p.latency_p95,
        total_cost_usd=m.total_cost,
        cost_basis=m.cost_basis,
    )


def recommend_from_profiles(
    profiles: list[ModelProfile], opts: RecommendOptions | None = None
) -> list[Recommendation]:
    """Recommendations for every profiled model (the I/O-free half of :func:`recommend`)."""
    opts = opts or RecommendOptions()
    enough = [p for p in profiles if _samples(p) >= opts.min_samples]
    out = []
    for p in profiles:
        n = _samples(p)
        if n == 0:
            missing = [
                k
                for k in ("cost_per_token", "quality_score", "latency_ms")
                if not p.measures.samples(k)
            ]
            out.append(
                _base(
                    p,
                    "no_criteria",
                    f"no {', '.join(missing)} in its selection criteria: nothing to compare",
                )
            )
            continue
        if n < opts.min_samples:
            out.append(
                _base(
                    p,
                    "too_little_data",
                    f"too little data: {n} selection(s) with cost, quality and latency "
                    f"(need {opts.min_samples})",
                )
            )
            continue
        alternatives = [a for c in enough if c is not p if (a := _alternative(p, c, opts))]
        alternatives.sort(
            key=lambda a: (
                -(a.estimated_saving_usd or 0.0),
                a.price_ratio,
                a.provider_name,
                a.model_name,
            )
        )
        alternatives = alternatives[: opts.max_alternatives]
        if alternatives:
            best = alternatives[0]
            saving = (
                f"saves about ${best.estimated_saving_usd:,.2f} over the window"
                if best.estimated_saving_usd is not None
                else f"saves ${best.saving_per_million_tokens_usd:,.2f} per million tokens "
                "(no token counts to total it)"
            )
            message = (
                f"{best.provider_name}/{best.model_name} is {1 - best.price_ratio:.0%} cheaper "
                f"per token with quality {best.quality_delta:+.3f}; {saving}"
            )
            rec = _base(p, "alternatives", message)
            out.append(Recommendation(**{**_fields(rec), "alternatives": alternatives}))
        else:
            out.append(
                _base(
                    p,
                    "none_cheaper",
                    "no cheaper model with enough data matches its quality and latency",
                )
            )
    order = {"alternatives": 0, "none_cheaper": 1, "too_little_data": 2, "no_criteria": 3}
    out.sort(key=lambda r: (order[r.status], -(r.best_saving or 0.0), -r.selections))
    return out


def _fields(rec: Recommendation) -> dict[str, Any]:
    return {name: getattr(rec, name) for name in rec.__dataclass_fields__}


def recommend(
    backend: Any, window: Window, opts: RecommendOptions | None = None
) -> list[Recommendation]:
    """Recommendations for every model with selections in ``window``."""
    return recommend_from_profiles(model_profiles(backend, window), opts)
