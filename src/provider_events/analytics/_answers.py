"""Analytics: usage, cost, latency and quality answers from PostgreSQL or the embedded store.

:func:`open_backend` picks PostgreSQL when ``DATABASE_URL`` is set and the local SQLite store
otherwise; both expose the same three primitive reads over the rollups (:meth:`Backend.totals`,
:meth:`Backend.quantiles`, :meth:`Backend.reasons`), and everything else (shares, averages,
clamping, cost basis, trends) is computed here, once, so both stores give the same answers.
:func:`collect_stats` builds the :class:`Stats` that ``provider-events stats`` prints.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, cast

from provider_events.analytics._model import METRICS, Window
from provider_events.analytics._sql import (
    MEASURES,
    Dialect,
    Dim,
    Query,
    extent_sql,
    quantiles_sql,
    reasons_breakdown_sql,
    reasons_sql,
    totals_sql,
)
from provider_events.errors import DatabaseError
from provider_events.settings import Settings

__all__ = [
    "Backend",
    "CostRow",
    "CriteriaRow",
    "GroupRow",
    "Measures",
    "ModelProfile",
    "ReasonRow",
    "Stats",
    "TrendRow",
    "collect_stats",
    "model_profiles",
    "open_backend",
    "selections_over_time",
]

GroupBy = Literal["provider", "model", "hour", "day", "tenant"]
Interval = Literal["hour", "day"]
GROUP_DIMS: dict[str, tuple[Dim, ...]] = {
    "provider": ("provider_name",),
    "model": ("provider_name", "model_name"),
    "hour": ("hour",),
    "day": ("day",),
    "tenant": ("tenant_id",),
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PREFIX = {"cost_per_token": "cpt", "latency_ms": "lat", "quality_score": "q"}


# -- measures -------------------------------------------------------------------------------
@dataclass(slots=True)
class Measures:
    """Aggregated rollup measures of one group (see ``0002_rollups.sql`` for their meaning)."""

    selections: int = 0
    cpt_n: int = 0
    cpt_sum: float = 0.0
    cpt_sumsq: float = 0.0
    cpt_min: float | None = None
    cpt_max: float | None = None
    lat_n: int = 0
    lat_sum: float = 0.0
    lat_sumsq: float = 0.0
    lat_min: float | None = None
    lat_max: float | None = None
    q_n: int = 0
    q_sum: float = 0.0
    q_sumsq: float = 0.0
    q_min: float | None = None
    q_max: float | None = None
    token_n: int = 0
    input_tokens: float = 0.0
    output_tokens: float = 0.0
    tokens: float = 0.0
    costed_n: int = 0
    cost_usd: float = 0.0

    @classmethod
    def from_row(cls, values: Sequence[Any]) -> Measures:
        out = []
        for (name, agg), value in zip(MEASURES, values, strict=True):
            if agg != "sum":
                out.append(None if value is None else float(value))
            elif name == "selections" or name.endswith("_n"):
                out.append(int(value or 0))
            else:
                out.append(float(value or 0.0))
        return cls(*cast(list[Any], out))  # each position holds its field's type (MEASURES)

    def merge(self, other: Measures) -> Measures:
        """The measures of both groups together."""
        values = []
        for name, agg in MEASURES:
            a, b = getattr(self, name), getattr(other, name)
            if agg == "sum":
                values.append(a + b)
            else:
                present = [v for v in (a, b) if v is not None]
                values.append((min if agg == "min" else max)(present) if present else None)
        return Measures(*values)

    def samples(self, metric: str) -> int:
        return int(getattr(self, f"{_PREFIX[metric]}_n"))

    def mean(self, metric: str) -> float | None:
        n = self.samples(metric)
        return getattr(self, f"{_PREFIX[metric]}_sum") / n if n else None

    def stddev(self, metric: str) -> float | None:
        """Sample standard deviation (``None`` below two samples)."""
        p = _PREFIX[metric]
        n = self.samples(metric)
        if n < 2:
            return None
        s, sq = getattr(self, f"{p}_sum"), getattr(self, f"{p}_sumsq")
        variance = (sq - s * s / n) / (n - 1)
        # Sums of squares cancel: below this floor the difference is rounding, not spread.
        if variance <= 1e-9 * (s / n) ** 2:
            return 0.0
        return math.sqrt(variance)

    def bounds(self, metric: str) -> tuple[float | None, float | None]:
        p = _PREFIX[metric]
        return getattr(self, f"{p}_min"), getattr(self, f"{p}_max")

    @property
    def cost_basis(self) -> str:
        """``full``, ``partial``, ``per_token`` or ``none``: what :attr:`cost_usd` covers."""
        if self.costed_n and self.costed_n >= self.selections:
            return "full"
        if self.costed_n:
            return "partial"
        return "per_token" if self.cpt_n else "none"

    @property
    def total_cost(self) -> float | None:
        return self.cost_usd if self.costed_n else None


#: The quantiles every answer reports: p50 and p95.
QUANTILES = (0.5, 0.95)
#: ``(samples, [value per quantile])`` of one metric of one group, before clamping.
Quantiles = tuple[int, list[float | None]]


# -- backends -------------------------------------------------------------------------------
class Backend:
    """Reads the rollups of one store; subclasses only run queries and convert times."""

    name: str = ""
    dialect: Dialect = "sqlite"
    location: str = ""

    def _fetch(self, query: Query) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _param(self, moment: datetime) -> object:
        return moment

    def _time(self, value: Any) -> datetime:
        moment: datetime = value
        return moment

    def close(self) -> None:
        pass

    def gather(self, *calls: Callable[[Backend], Any]) -> list[Any]:
        """Run independent reads; a backend that can runs them concurrently."""
        return [call(self) for call in calls]

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _key(self, dims: Sequence[Dim], row: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(
            self._time(v) if d in ("hour", "day") else v for d, v in zip(dims, row, strict=False)
        )

    def totals(self, window: Window, dims: Sequence[Dim]) -> dict[tuple[Any, ...], Measures]:
        """Measures per ``dims`` key over the window."""
        q = totals_sql(
            self.dialect, dims, self._param(window.since), self._param(window.until), window.tenant
        )
        out: dict[tuple[Any, ...], Measures] = {}
        for row in self._fetch(q):
            if row[len(dims)] is None:  # aggregate over no rows
                continue
            out[self._key(dims, row)] = Measures.from_row(row[len(dims) :])
        return out

    def quantiles(
        self, window: Window, dims: Sequence[Dim], qs: Sequence[float] = QUANTILES
    ) -> dict[tuple[Any, ...], dict[int, Quantiles]]:
        """``{dims key: {metric code: (samples, [value per q])}}``, unclamped; whole days come
        from the daily histograms, the hours around them from the hourly ones."""
        days = None if "hour" in dims else window.whole_days()
        if days is None:
            hourly = [(window.since, window.until)]
        else:
            hourly = [r for r in ((window.since, days[0]), (days[1], window.until)) if r[0] < r[1]]
        q = quantiles_sql(
            self.dialect,
            dims,
            [(self._param(a), self._param(b)) for a, b in hourly],
            None if days is None else (self._param(days[0]), self._param(days[1])),
            window.tenant,
            qs,
        )
        out: dict[tuple[Any, ...], dict[int, Quantiles]] = defaultdict(dict)
        k = len(dims)
        for row in self._fetch(q):
            values = [None if v is None else float(v) for v in row[k + 2 :]]
            out[self._key(dims, row)][int(row[k])] = (int(row[k + 1]), values)
        return out

    def reasons(
        self, window: Window, limit: int
    ) -> list[tuple[str, int, dict[tuple[str, str], int]]]:
        """The top reasons: (reason, selections, {(provider, model): selections})."""
        since, until = self._param(window.since), self._param(window.until)
        top = [
            (str(r), int(n))
            for r, n in self._fetch(reasons_sql(self.dialect, since, until, window.tenant, limit))
        ]
        if not top:
            return []
        split: dict[str, dict[tuple[str, str], int]] = defaultdict(dict)
        q = reasons_breakdown_sql(self.dialect, since, until, window.tenant, [r for r, _ in top])
        for reason, provider, model, n in self._fetch(q):
            split[reason][(provider, model)] = int(n)
        return [(r, n, split[r]) for r, n in top]

    def extent(self, tenant: str | None = None) -> tuple[datetime | None, datetime | None, int]:
        """First hour, last hour and number of selections in the whole store."""
        rows = self._fetch(extent_sql(self.dialect, tenant))
        first, last, total = rows[0] if rows else (None, None, 0)
        if first is None:
            return None, None, 0
        return self._time(first), _end_of_hour(self._time(last)), int(total or 0)


def _end_of_hour(hour: datetime) -> datetime:
    """``hour`` + 1 hour, or the last representable moment for the year 9999's last hour (an
    event stored before the timestamp bounds existed must not crash an answer)."""
    try:
        return hour + timedelta(hours=1)
    except OverflowError:
        return datetime.max.replace(tzinfo=UTC)


class PostgresBackend(Backend):
    """The rollups in PostgreSQL (``DATABASE_URL``), kept by the migration's triggers."""

    name = "postgresql"
    dialect: Dialect = "postgresql"

    def __init__(self, dsn: str) -> None:
        from provider_events.store._pg import connect, describe_dsn

        self.location = describe_dsn(dsn)
        self._dsn = dsn
        #: Extra sessions for :meth:`gather`, opened on first use and kept.
        self._helpers: list[PostgresBackend] = []
        self._conn = connect(dsn, application_name="provider-events-analytics")
        try:
            self._conn.execute("SELECT 1 FROM provider_selection_rollup_hourly LIMIT 0")
        except Exception as exc:
            self._conn.close()
            raise DatabaseError(
                "the analytics rollups are missing in this database: run `provider-events migrate` "
                f"({type(exc).__name__})"
            ) from None

    def _fetch(self, query: Query) -> list[tuple[Any, ...]]:
        import psycopg

        from provider_events.store._pg import translate_error

        try:
            return self._conn.execute(query.sql, query.params).fetchall()
        except psycopg.Error as exc:
            raise translate_error(exc, "reading analytics") from None

    def gather(self, *calls: Callable[[Backend], Any]) -> list[Any]:
        """Independent reads on as many sessions at once: the server works on them in parallel."""
        if len(calls) < 2:
            return super().gather(*calls)
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(len(calls)) as pool:
            missing = len(calls) - 1 - len(self._helpers)
            if missing > 0:
                self._helpers += pool.map(lambda _: PostgresBackend(self._dsn), range(missing))
            sessions: list[Backend] = [self, *self._helpers]
            futures = [pool.submit(call, b) for call, b in zip(calls, sessions, strict=False)]
            return [f.result() for f in futures]

    def close(self) -> None:
        for helper in self._helpers:
            helper.close()
        self._conn.close()


class LocalBackend(Backend):
    """The embedded SQLite store (``<state dir>/events.sqlite3``)."""

    name = "local"
    dialect: Dialect = "sqlite"

    def __init__(self, path: Path) -> None:
        from provider_events.store._local import LocalEventStore

        self.location = str(path)
        self.exists = Path(path).exists()
        self._store = LocalEventStore(path)
        self._conn = self._store.connection() if self.exists else None

    def _fetch(self, query: Query) -> list[tuple[Any, ...]]:
        if self._conn is None:
            return []
        return self._conn.execute(query.sql, query.params).fetchall()

    def _param(self, moment: datetime) -> object:
        return int((moment - _EPOCH).total_seconds())

    def _time(self, value: Any) -> datetime:
        return _EPOCH + timedelta(seconds=int(value))

    def close(self) -> None:
        self._store.close()


def open_backend(settings: Settings, store: str = "auto") -> Backend:
    """PostgreSQL when ``DATABASE_URL`` is set (or ``store="postgresql"``), else the local store."""
    dsn = settings.database_url.reveal()
    if store == "postgresql" or (store == "auto" and dsn):
        if not dsn:
            raise DatabaseError("DATABASE_URL is not set")
        return PostgresBackend(dsn)
    from provider_events.store._local import LocalEventStore

    return LocalBackend(LocalEventStore.for_settings(settings).path)


# -- answers --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class GroupRow:
    """One row of ``stats --group-by``: a provider, a model, a period or a tenant."""

    group: str
    period_start: datetime | None
    tenant_id: str | None
    provider_name: str | None
    model_name: str | None
    selections: int
    share: float
    avg_cost_per_token: float | None
    avg_latency_ms: float | None
    avg_quality_score: float | None
    costed_selections: int
    total_cost_usd: float | None
    cost_basis: str


@dataclass(frozen=True, slots=True)
class ReasonRow:
    """A selection reason, how often it was given, and for which provider most."""

    selection_reason: str
    selections: int
    share: float
    top_provider: str
    top_model: str
    top_model_selections: int


@dataclass(frozen=True, slots=True)
class CriteriaRow:
    """One criterion of one provider over a period (``None``: the whole window)."""

    period_start: datetime | None
    provider_name: str
    metric: str
    samples: int
    avg: float | None
    stddev: float | None
    p50: float | None
    p95: float | None
    min: float | None
    max: float | None


TrendRow = CriteriaRow


@dataclass(frozen=True, slots=True)
class CostRow:
    """Cost of a provider (``level="provider"``) or one of its models (``level="model"``)."""

    level: str
    provider_name: str
    model_name: str | None
    selections: int
    costed_selections: int
    tokens: float
    input_tokens: float
    output_tokens: float
    total_cost_usd: float | None
    avg_cost_per_token: float | None
    cost_basis: str


@dataclass(slots=True)
class Stats:
    """Everything ``provider-events stats`` reports for one window."""

    window: Window
    backend: str
    location: str
    group_by: str
    interval: str
    total_selections: int
    groups: list[GroupRow] = field(default_factory=list)
    reasons: list[ReasonRow] = field(default_factory=list)
    criteria: list[CriteriaRow] = field(default_factory=list)
    trends: list[CriteriaRow] = field(default_factory=list)
    cost: list[CostRow] = field(default_factory=list)
    #: The whole window's measures (all providers and models together).
    overall: Measures = field(default_factory=Measures)
    #: First and last hour with data in the store, when the window holds none.
    extent: tuple[datetime | None, datetime | None, int] | None = None

    @property
    def cost_basis(self) -> str:
        """What ``total_cost_usd`` figures cover over the whole window (see :class:`Measures`)."""
        return self.overall.cost_basis

    @property
    def total_cost_usd(self) -> float | None:
        return self.overall.total_cost

    def to_dict(self) -> dict[str, Any]:
        """Plain data with stable field names (times as RFC 3339 strings)."""
        return {
            "window": {
                "since": _iso(self.window.since),
                "until": _iso(self.window.until),
                "tenant": self.window.tenant,
            },
            "backend": self.backend,
            "group_by": self.group_by,
            "interval": self.interval,
            "total_selections": self.total_selections,
            "cost_basis": self.cost_basis,
            "total_cost_usd": self.total_cost_usd,
            "costed_selections": self.overall.costed_n,
            "groups": [_plain(r) for r in self.groups],
            "reasons": [_plain(r) for r in self.reasons],
            "criteria": [_plain(r) for r in self.criteria],
            "trends": [_plain(r) for r in self.trends],
            "cost": [_plain(r) for r in self.cost],
        }


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    # isoformat, not strftime: %Y does not zero-pad years before 1000 ("1-01-01T00:00:00Z")
    return moment.astimezone(UTC).replace(tzinfo=None, microsecond=0).isoformat() + "Z"


def _plain(row: Any) -> dict[str, Any]:
    return {k: _iso(v) if isinstance(v, datetime) else v for k, v in asdict(row).items()}


def field_names(row_type: type) -> list[str]:
    """The stable column names of a row type (CSV header order)."""
    return [f.name for f in fields(row_type)]


def default_interval(window: Window) -> Interval:
    return "hour" if window.hours <= 48 else "day"


def _group_row(group_by: str, key: tuple[Any, ...], m: Measures, total: int) -> GroupRow:
    period = key[0] if group_by in ("hour", "day") else None
    provider = key[0] if group_by in ("provider", "model") else None
    model = key[1] if group_by == "model" else None
    tenant = key[0] if group_by == "tenant" else None
    label = _iso(period) if period else "/".join(str(k) for k in key)
    return GroupRow(
        group=label or "",
        period_start=period,
        tenant_id=tenant,
        provider_name=provider,
        model_name=model,
        selections=m.selections,
        share=m.selections / total if total else 0.0,
        avg_cost_per_token=m.mean("cost_per_token"),
        avg_latency_ms=m.mean("latency_ms"),
        avg_quality_score=m.mean("quality_score"),
        costed_selections=m.costed_n,
        total_cost_usd=m.total_cost,
        cost_basis=m.cost_basis,
    )


def clamp(value: float | None, lo: float | None, hi: float | None) -> float | None:
    """A quantile kept inside the observed ``[lo, hi]`` (a bin's mean may stray past them)."""
    if value is None:
        return None
    if lo is not None:
        value = max(value, lo)
    if hi is not None:
        value = min(value, hi)
    return value


def _pq(quantiles: dict[int, Quantiles], code: int, m: Measures, metric: str) -> list[float | None]:
    lo, hi = m.bounds(metric)
    _, values = quantiles.get(code, (0, [None] * len(QUANTILES)))
    return [clamp(v, lo, hi) for v in values]


def _criteria_rows(
    period: datetime | None, provider: str, m: Measures, quantiles: dict[int, Quantiles]
) -> Iterator[CriteriaRow]:
    for code, metric in METRICS.items():
        n = m.samples(metric)
        if not n:
            continue
        lo, hi = m.bounds(metric)
        p50, p95 = _pq(quantiles, code, m, metric)
        yield CriteriaRow(
            period_start=period,
            provider_name=provider,
            metric=metric,
            samples=n,
            avg=m.mean(metric),
            stddev=m.stddev(metric),
            p50=p50,
            p95=p95,
            min=lo,
            max=hi,
        )


def _cost_row(level: str, provider: str, model: str | None, m: Measures) -> CostRow:
    return CostRow(
        level=level,
        provider_name=provider,
        model_name=model,
        selections=m.selections,
        costed_selections=m.costed_n,
        tokens=m.tokens,
        input_tokens=m.input_tokens,
        output_tokens=m.output_tokens,
        total_cost_usd=m.total_cost,
        avg_cost_per_token=m.mean("cost_per_token"),
        cost_basis=m.cost_basis,
    )


def _sort_key(group_by: str, key: tuple[Any, ...], m: Measures) -> tuple[Any, ...]:
    if group_by in ("hour", "day"):
        return (key[0],)
    return (-m.selections, *(str(k).encode("utf-8") for k in key))


def collect_stats(
    backend: Backend,
    window: Window,
    group_by: GroupBy = "provider",
    interval: Interval | None = None,
    top_reasons: int = 10,
) -> Stats:
    """Every section of ``stats`` for ``window``, read from the rollups of ``backend``."""
    interval = interval or default_interval(window)
    by_model = backend.totals(window, GROUP_DIMS["model"])
    total = sum(m.selections for m in by_model.values())
    stats = Stats(window, backend.name, backend.location, group_by, interval, total)
    if total == 0:
        stats.extent = backend.extent(window.tenant)
        return stats
    dims: tuple[Dim, ...] = (interval, "provider_name")
    calls: list[Callable[[Backend], Any]] = [
        lambda b: b.reasons(window, top_reasons),
        lambda b: b.quantiles(window, ("provider_name",)),
        lambda b: b.totals(window, dims),
        lambda b: b.quantiles(window, dims),
    ]
    if group_by not in ("model", "provider"):
        calls.append(lambda b: b.totals(window, GROUP_DIMS[group_by]))
    reasons, q_by_provider, period_totals, period_q, *other = backend.gather(*calls)
    if group_by == "model":
        groups = by_model
    elif group_by == "provider":  # the same rows, added up here: one query fewer
        groups = {}
        for (provider, _model), m in by_model.items():
            groups[(provider,)] = groups[(provider,)].merge(m) if (provider,) in groups else m
    else:
        groups = other[0]
    for key, m in sorted(groups.items(), key=lambda kv: _sort_key(group_by, kv[0], kv[1])):
        stats.groups.append(_group_row(group_by, key, m, total))

    for reason, n, split in reasons:
        (provider, model), top_n = min(split.items(), key=lambda kv: (-kv[1], kv[0]))
        stats.reasons.append(ReasonRow(reason, n, n / total, provider, model, top_n))

    providers: dict[str, Measures] = {}
    for (provider, _model), m in by_model.items():
        providers[provider] = providers.get(provider, Measures()).merge(m)
        stats.overall = stats.overall.merge(m)
    for provider, m in sorted(providers.items(), key=lambda kv: (-kv[1].selections, kv[0])):
        stats.criteria.extend(_criteria_rows(None, provider, m, q_by_provider.get((provider,), {})))
        stats.cost.append(_cost_row("provider", provider, None, m))
        models = sorted(
            ((mo, mm) for (p, mo), mm in by_model.items() if p == provider),
            key=lambda kv: (-kv[1].selections, kv[0]),
        )
        stats.cost.extend(_cost_row("model", provider, mo, mm) for mo, mm in models)

    for (period, provider), m in sorted(period_totals.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        stats.trends.extend(
            _criteria_rows(period, provider, m, period_q.get((period, provider), {}))
        )
    return stats


def selections_over_time(
    backend: Backend, window: Window, interval: Interval = "hour"
) -> dict[tuple[datetime, str], int]:
    """Selections per (period start, provider): the report's stacked chart."""
    return {k: m.selections for k, m in backend.totals(window, (interval, "provider_name")).items()}


@dataclass(frozen=True, slots=True)
class ModelProfile:
    """What the window says about one model: volume, cost, latency and quality."""

    provider_name: str
    model_name: str
    measures: Measures
    latency_p50: float | None
    latency_p95: float | None
    quality_p50: float | None

    @property
    def label(self) -> str:
        return f"{self.provider_name}/{self.model_name}"


def model_profiles(backend: Backend, window: Window) -> list[ModelProfile]:
    """One profile per (provider, model) with selections in the window, busiest first."""
    totals, quantiles = backend.gather(
        lambda b: b.totals(window, GROUP_DIMS["model"]),
        lambda b: b.quantiles(window, GROUP_DIMS["model"]),
    )
    out = []
    for (provider, model), m in totals.items():
        q = quantiles.get((provider, model), {})
        lat50, lat95 = _pq(q, 2, m, "latency_ms")
        q50, _ = _pq(q, 3, m, "quality_score")
        out.append(ModelProfile(provider, model, m, lat50, lat95, q50))
    out.sort(key=lambda p: (-p.measures.selections, p.provider_name, p.model_name))
    return out


def to_jsonable(value: Any) -> Any:
    """``asdict``-style plain data for any of this module's rows (times as strings)."""
    if isinstance(value, datetime):
        return _iso(value)
    if hasattr(value, "__dataclass_fields__"):
        return {k: to_jsonable(v) for k, v in asdict(value).items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    return value
