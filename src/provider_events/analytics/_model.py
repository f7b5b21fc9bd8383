"""The analytics vocabulary both stores share: derived measures, histogram bins and windows.

Import-light on purpose (the local store uses it on the publish path). Every figure the
``stats``, ``recommend`` and ``report`` commands print is computed from the same per-event
derivation (:func:`derive`) and the same logarithmic histogram bins (:func:`bin_of`), whether
the events live in PostgreSQL or in the embedded SQLite store, so the two give the same answers.

Cost of one event, in order of preference:

1. ``selection_criteria.cost_usd`` when it is a number (the caller knew the price);
2. ``cost_per_token * tokens`` where tokens is ``total_tokens``, else
   ``input_tokens + output_tokens`` (either may be missing);
3. unknown: the event only contributes to the selection-weighted average ``cost_per_token``.

Percentiles come from histograms with bins growing by :data:`GAMMA` (2 %) that also keep the
sum of their values: a reported percentile is the mean of the bin holding that rank, so it is
within one bin (2 %) of the true sample value (exact when the bin holds one distinct value,
as list prices do), clamped to the observed min/max.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = [
    "BIN_MAX",
    "BIN_MIN",
    "BIN_SCALE",
    "GAMMA",
    "HOUR",
    "METRICS",
    "ZERO_BIN",
    "Derived",
    "Window",
    "bin_of",
    "bin_value",
    "ceil_hour",
    "derive",
    "floor_day",
    "floor_hour",
    "parse_when",
    "percentile_from_bins",
]

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
#: Relative width of one histogram bin: bin i holds values in (GAMMA**(i-1), GAMMA**i].
GAMMA = 1.02
#: ``1 / ln(GAMMA)``, multiplied rather than divided so SQL and Python round alike. The same
#: double is written into the PostgreSQL migration as ``50.4983497918439::float8``.
BIN_SCALE = 1.0 / math.log(GAMMA)
#: The bin range (migration 0004): bins are clamped to [BIN_MIN, BIN_MAX], so a histogram has at
#: most 2,802 bins however many distinct values arrive. Values in [GAMMA**BIN_MIN, GAMMA**BIN_MAX]
#: (about [9e-13, 1.1e12]) keep the relative error; the rest fall into the end bins.
BIN_MIN = -1400
BIN_MAX = 1400
#: The bin of exact zeros (``ln 0`` is undefined); negative values never pass validation.
ZERO_BIN = -1_000_000
#: Histogram metrics: code stored in the ``metric`` column -> criteria key.
METRICS: dict[int, str] = {1: "cost_per_token", 2: "latency_ms", 3: "quality_score"}
METRIC_CODES: dict[str, int] = {name: code for code, name in METRICS.items()}


def _num(criteria: Mapping[str, Any], key: str) -> float | None:
    value = criteria.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


@dataclass(frozen=True, slots=True)
class Derived:
    """The numbers analytics reads from one event's ``selection_criteria``."""

    cost_per_token: float | None
    latency_ms: float | None
    quality_score: float | None
    input_tokens: float | None
    output_tokens: float | None
    #: ``total_tokens``, else ``input_tokens + output_tokens`` when either is given.
    tokens: float | None
    #: ``cost_usd``, else ``cost_per_token * tokens`` when both are known.
    cost_usd: float | None

    def metric(self, code: int) -> float | None:
        return (self.cost_per_token, self.latency_ms, self.quality_score)[code - 1]


def derive(criteria: Mapping[str, Any]) -> Derived:
    """Derive the analytics measures of one event (mirrored by the SQL in both stores)."""
    cpt = _num(criteria, "cost_per_token")
    inp = _num(criteria, "input_tokens")
    out = _num(criteria, "output_tokens")
    total = _num(criteria, "total_tokens")
    tokens = total
    if tokens is None and (inp is not None or out is not None):
        tokens = (inp if inp is not None else 0.0) + (out if out is not None else 0.0)
    cost = _num(criteria, "cost_usd")
    if cost is None and cpt is not None and tokens is not None:
        cost = cpt * tokens
    return Derived(
        cost_per_token=cpt,
        latency_ms=_num(criteria, "latency_ms"),
        quality_score=_num(criteria, "quality_score"),
        input_tokens=inp,
        output_tokens=out,
        tokens=tokens,
        cost_usd=cost,
    )


def bin_of(value: float) -> int:
    """Histogram bin of a value >= 0: ``ceil(ln(v) * BIN_SCALE)`` clamped to
    [:data:`BIN_MIN`, :data:`BIN_MAX`], or :data:`ZERO_BIN`."""
    if value <= 0.0:
        return ZERO_BIN
    return min(BIN_MAX, max(BIN_MIN, math.ceil(math.log(value) * BIN_SCALE)))


def bin_value(b: int) -> float:
    """The representative value of bin ``b``: within 1 % of every value the bin holds."""
    if b == ZERO_BIN:
        return 0.0
    return 2.0 * GAMMA**b / (GAMMA + 1.0)


def percentile_from_bins(
    bins: Mapping[int, tuple[int, float]],
    q: float,
    lo: float | None = None,
    hi: float | None = None,
) -> float | None:
    """The ``q`` quantile (nearest rank) of a histogram ``{bin: (count, sum of values)}``.

    The answer is the mean of the bin holding that rank (exact when the bin holds one distinct
    value, within one bin width, 2 %, otherwise), clamped to the observed ``[lo, hi]``.
    """
    items = sorted((b, c) for b, c in bins.items() if c[0] > 0)
    total = sum(c[0] for _, c in items)
    if total <= 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    value = 0.0
    for b, (n, value_sum) in items:
        seen += n
        if seen >= rank:
            value = value_sum / n if b != ZERO_BIN else 0.0
            break
    if lo is not None:
        value = max(value, lo)
    if hi is not None:
        value = min(value, hi)
    return value


# -- time windows ----------------------------------------------------------------------------
def floor_hour(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    return moment.replace(minute=0, second=0, microsecond=0)


def ceil_hour(moment: datetime) -> datetime:
    floored = floor_hour(moment)
    return floored if floored == moment.astimezone(UTC) else floored + HOUR


def floor_day(moment: datetime) -> datetime:
    return floor_hour(moment).replace(hour=0)


#: The moments a window may span: what every store (and Python's datetime arithmetic) holds.
EARLIEST = datetime(1, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 1, 1, tzinfo=UTC)

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_when(text: str, now: datetime | None = None) -> datetime:
    """``7d``/``24h``/``90m`` (before ``now``), ``now``, or an ISO date or time (UTC if naive).

    Raises ``ValueError`` with a readable message.
    """
    now = now or datetime.now(UTC)
    raw = text.strip()
    if raw.lower() == "now":
        return now
    match = _RELATIVE.match(raw)
    try:
        if match:
            moment = now - timedelta(seconds=float(match[1]) * _UNITS[match[2].lower()])
        else:
            moment = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
            moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
            moment = moment.astimezone(UTC)
    except ValueError:
        raise ValueError(
            f"{text[:80]!r} is neither a duration (7d, 24h, 90m) nor an ISO date/time "
            "(2025-11-13, 2025-11-13T14:00Z)"
        ) from None
    except OverflowError:
        moment = None
    if moment is None or not EARLIEST <= moment <= LATEST:
        raise ValueError(
            f"{text[:80]!r} is outside {EARLIEST.date().isoformat()} .. {LATEST.date().isoformat()} (UTC)"
        )
    return moment


@dataclass(frozen=True, slots=True)
class Window:
    """A half-open time window ``[since, until)`` in whole UTC hours (rollup granularity)."""

    since: datetime
    until: datetime
    tenant: str | None = None

    @classmethod
    def of(
        cls,
        since: datetime | None = None,
        until: datetime | None = None,
        tenant: str | None = None,
        *,
        now: datetime | None = None,
        default_span: timedelta = timedelta(days=7),
    ) -> Window:
        """Widen ``[since, until)`` to whole hours; defaults: the 7 days up to the current hour's end."""
        end = ceil_hour(until or now or datetime.now(UTC))
        start = floor_hour(since) if since is not None else end - default_span
        if start >= end:
            raise ValueError(
                f"empty window: since {start:%Y-%m-%dT%H:%MZ} is not before until {end:%Y-%m-%dT%H:%MZ}"
            )
        return cls(start, end, tenant or None)

    @property
    def hours(self) -> int:
        return int((self.until - self.since) / HOUR)

    def whole_days(self) -> tuple[datetime, datetime] | None:
        """The whole UTC days inside the window as ``[start, end)``, or ``None``."""
        first = floor_day(self.since)
        if first < self.since:
            first += DAY
        last = floor_day(self.until)
        return (first, last) if first < last else None

    def label(self) -> str:
        tenant = f", tenant {self.tenant}" if self.tenant else ""
        return f"{self.since:%Y-%m-%d %H:%M} to {self.until:%Y-%m-%d %H:%M} UTC{tenant}"
