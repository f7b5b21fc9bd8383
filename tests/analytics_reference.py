"""A naive in-memory backend: the same primitive answers, computed straight from raw events.

No rollups, no SQL: every call walks the events. It is the oracle the tests hold both real
stores to (the same events must give the same answers from PostgreSQL, from the embedded
store and from here), and it makes :func:`~provider_events.analytics._answers.collect_stats` usable on
a list of selections without any store.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from provider_events.analytics._answers import QUANTILES, Backend, Measures, Quantiles
from provider_events.analytics._model import (
    METRIC_CODES,
    Window,
    bin_of,
    derive,
    floor_day,
    floor_hour,
    percentile_from_bins,
)
from provider_events.analytics._sql import Dim

__all__ = ["RawEvent", "ReferenceBackend"]


@dataclass(frozen=True, slots=True)
class RawEvent:
    """The fields analytics reads from one event."""

    tenant_id: str
    provider_name: str
    model_name: str
    selection_reason: str
    selection_criteria: Mapping[str, Any]
    selected_at: datetime

    @classmethod
    def of(cls, selection: Any) -> RawEvent:
        """From anything with these attributes (a synthetic ``Selection``, say)."""
        return cls(
            selection.tenant_id,
            selection.provider_name,
            selection.model_name,
            selection.selection_reason,
            dict(selection.selection_criteria),
            selection.selected_at.astimezone(UTC),
        )


def _measures(e: RawEvent) -> Measures:
    d = derive(e.selection_criteria)
    m = Measures(selections=1)
    for prefix, v in (("cpt", d.cost_per_token), ("lat", d.latency_ms), ("q", d.quality_score)):
        if v is not None:
            setattr(m, f"{prefix}_n", 1)
            setattr(m, f"{prefix}_sum", v)
            setattr(m, f"{prefix}_sumsq", v * v)
            setattr(m, f"{prefix}_min", v)
            setattr(m, f"{prefix}_max", v)
    if d.tokens is not None:
        m.token_n, m.tokens = 1, d.tokens
    m.input_tokens = d.input_tokens or 0.0
    m.output_tokens = d.output_tokens or 0.0
    if d.cost_usd is not None:
        m.costed_n, m.cost_usd = 1, d.cost_usd
    return m


class ReferenceBackend(Backend):
    """Answers from a list of :class:`RawEvent` (or anything :meth:`RawEvent.of` accepts)."""

    name = "reference"

    def __init__(self, events: Iterable[Any]) -> None:
        self.events = [e if isinstance(e, RawEvent) else RawEvent.of(e) for e in events]
        self.location = f"{len(self.events)} events in memory"

    def _in(self, window: Window) -> list[RawEvent]:
        return [
            e
            for e in self.events
            if window.since <= e.selected_at < window.until
            and (window.tenant is None or e.tenant_id == window.tenant)
        ]

    @staticmethod
    def _event_key(dims: Sequence[Dim], e: RawEvent) -> tuple[Any, ...]:
        out: list[Any] = []
        for dim in dims:
            if dim == "hour":
                out.append(floor_hour(e.selected_at))
            elif dim == "day":
                out.append(floor_day(e.selected_at))
            else:
                out.append(getattr(e, dim))
        return tuple(out)

    def totals(self, window: Window, dims: Sequence[Dim]) -> dict[tuple[Any, ...], Measures]:
        out: dict[tuple[Any, ...], Measures] = {}
        for e in self._in(window):
            key = self._event_key(dims, e)
            out[key] = out[key].merge(_measures(e)) if key in out else _measures(e)
        return out

    def quantiles(
        self, window: Window, dims: Sequence[Dim], qs: Sequence[float] = QUANTILES
    ) -> dict[tuple[Any, ...], dict[int, Quantiles]]:
        hists: dict[tuple[Any, ...], dict[int, dict[int, tuple[int, float]]]] = defaultdict(
            lambda: defaultdict(dict)
        )
        for e in self._in(window):
            d = derive(e.selection_criteria)
            for name, code in METRIC_CODES.items():
                v = getattr(d, name)
                if v is None:
                    continue
                bins = hists[self._event_key(dims, e)][code]
                n, total = bins.get(bin_of(v), (0, 0.0))
                bins[bin_of(v)] = (n + 1, total + v)
        return {
            key: {
                code: (
                    sum(n for n, _ in bins.values()),
                    [percentile_from_bins(bins, q) for q in qs],
                )
                for code, bins in by_metric.items()
            }
            for key, by_metric in hists.items()
        }

    def reasons(
        self, window: Window, limit: int
    ) -> list[tuple[str, int, dict[tuple[str, str], int]]]:
        counts: dict[str, int] = defaultdict(int)
        split: dict[str, dict[tuple[str, str], int]] = defaultdict(lambda: defaultdict(int))
        for e in self._in(window):
            reason = e.selection_reason or ""
            counts[reason] += 1
            split[reason][(e.provider_name, e.model_name)] += 1
        top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0].encode("utf-8")))[:limit]
        return [(r, n, dict(split[r])) for r, n in top]

    def extent(self, tenant: str | None = None) -> tuple[datetime | None, datetime | None, int]:
        times = [e.selected_at for e in self.events if tenant is None or e.tenant_id == tenant]
        if not times:
            return None, None, 0
        return floor_hour(min(times)), floor_hour(max(times)) + timedelta(hours=1), len(times)
