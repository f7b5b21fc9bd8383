"""The rollups' share of a batch, aggregated by the batch writer (migration 0004).

The statement trigger of migration 0002 derives every row's measures again in SQL (seven
``jsonb`` lookups, a histogram bin per metric) and aggregates them in several passes: about
20 µs per row, more than the ``COPY`` itself. The writer has the rows in hand, so it aggregates
them in one pass here (the derivations of :func:`provider_events.analytics._model.derive`,
inlined, which the SQL mirrors) and hands PostgreSQL only the aggregates, a few rows per hour, tenant, provider
and model: ``provider_events_apply_deltas()`` folds them into every rollup table in the
inserting transaction, while ``provider_events.rollups_by_writer = 'on'`` (transaction-local)
makes the insert trigger step aside for the writer's own statements.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import msgspec
import psycopg

from provider_events.analytics._model import bin_of

__all__ = ["SKIP_TRIGGER", "apply_deltas", "supported"]

#: Transaction-local: the insert trigger steps aside; and room for the statement's transition
#: table, which PostgreSQL still captures (a batch of 20,000 rows spilled to disk at 4 MB).
SKIP_TRIGGER = (
    "SELECT set_config('provider_events.rollups_by_writer', 'on', true), "
    "set_config('work_mem', '64MB', true)"
)
_SUPPORTED = "SELECT to_regprocedure('provider_events_apply_deltas()') IS NOT NULL"
_CREATE = (
    "CREATE TEMP TABLE IF NOT EXISTS provider_events_delta_roll ("
    "h timestamptz, tenant_id text, provider_name text, model_name text, selections bigint, "
    "cpt_n bigint, cpt_sum float8, cpt_sumsq float8, cpt_min float8, cpt_max float8, "
    "lat_n bigint, lat_sum float8, lat_sumsq float8, lat_min float8, lat_max float8, "
    "q_n bigint, q_sum float8, q_sumsq float8, q_min float8, q_max float8, "
    "token_n bigint, input_tokens float8, output_tokens float8, tokens float8, "
    "costed_n bigint, cost_usd float8) ON COMMIT DELETE ROWS",
    "CREATE TEMP TABLE IF NOT EXISTS provider_events_delta_reasons ("
    "h timestamptz, tenant_id text, provider_name text, model_name text, reason text, "
    "selections bigint) ON COMMIT DELETE ROWS",
    "CREATE TEMP TABLE IF NOT EXISTS provider_events_delta_bins ("
    "h timestamptz, tenant_id text, provider_name text, model_name text, metric smallint, "
    "bin integer, n bigint, vs float8) ON COMMIT DELETE ROWS",
)
_ROLL_TYPES = (
    ["timestamptz", "text", "text", "text", "int8"]
    + (["int8", "float8", "float8", "float8", "float8"] * 3)
    + ["int8", "float8", "float8", "float8", "int8", "float8"]
)


class _Criteria(msgspec.Struct):
    """The criteria keys the rollups read; every other key is skipped while decoding."""

    cost_per_token: Any = None
    latency_ms: Any = None
    quality_score: Any = None
    input_tokens: Any = None
    output_tokens: Any = None
    total_tokens: Any = None
    cost_usd: Any = None


_decode = msgspec.json.Decoder(_Criteria).decode


def _num(value: Any) -> float | None:
    """:func:`provider_events.analytics._model._num` for one decoded JSON value."""
    kind = value.__class__
    if kind is float:
        return value if value - value == 0.0 else None
    if kind is int:
        try:
            return float(value)
        except OverflowError:  # beyond float8, as PostgreSQL's cast says in the triggers
            raise psycopg.errors.NumericValueOutOfRange("value out of range: overflow") from None
    return None


#: (hour, tenant, provider, model)
Key = tuple[datetime, str, str, str]


def supported(conn: psycopg.Connection[Any]) -> bool:
    """Whether this database has ``provider_events_apply_deltas`` (migration 0004 applied;
    False for a bare table without rollups, or an older schema: the trigger does the work)."""
    row = conn.execute(_SUPPORTED).fetchone()
    return bool(row and row[0])


def _stats() -> list[Any]:
    """selections; (n, sum, sumsq, min, max) of cpt, lat and q; token_n, input_tokens,
    output_tokens, tokens, costed_n, cost_usd: the columns of provider_events_delta_roll."""
    measure = [0, 0.0, 0.0, None, None]
    return [0, *measure, *measure, *measure, 0, 0.0, 0.0, 0.0, 0, 0.0]


def _check_finite(roll: dict[Key, list[Any]], bins: dict[Any, list[Any]]) -> None:
    """Refuse a batch whose sums overflow float8 as PostgreSQL's own arithmetic would (the
    statement triggers raise 22003): the writer then sorts the rows out one by one, and the
    row the triggers refuse is reported for the dead-letter topic instead of storing Infinity
    in the rollups."""
    for values in (*roll.values(), *bins.values()):
        for v in values:
            if v.__class__ is float and v - v != 0.0:
                raise psycopg.errors.NumericValueOutOfRange("value out of range: overflow")


def apply_deltas(cur: psycopg.Cursor[Any], rows: Iterable[Any], created: bool) -> None:
    """Aggregate ``rows`` (table rows: criteria JSON at 5, selected_at at 6, tenant at 7,
    provider at 2, model at 3) and fold them into the rollups, in the caller's transaction."""
    roll: dict[Key, list[Any]] = {}
    reasons: dict[tuple[Key, str], int] = {}
    bins: dict[tuple[Key, int, int], list[Any]] = {}
    for row in rows:
        at: datetime = row[6]
        if at.tzinfo is not UTC:
            at = at.astimezone(UTC)
        key: Key = (at.replace(minute=0, second=0, microsecond=0), row[7], row[2], row[3])
        c = _decode(row[5])
        cpt, lat, q = _num(c.cost_per_token), _num(c.latency_ms), _num(c.quality_score)
        inp, out, tokens = _num(c.input_tokens), _num(c.output_tokens), _num(c.total_tokens)
        if tokens is None and (inp is not None or out is not None):
            tokens = (inp if inp is not None else 0.0) + (out if out is not None else 0.0)
        cost = _num(c.cost_usd)
        if cost is None and cpt is not None and tokens is not None:
            cost = cpt * tokens
        s = roll.get(key)
        if s is None:
            s = roll[key] = _stats()
        s[0] += 1
        for metric, offset, v in ((1, 1, cpt), (2, 6, lat), (3, 11, q)):
            if v is None:
                continue
            s[offset] += 1
            s[offset + 1] += v
            sq = v * v  # 1e200 squared is inf: _check_finite refuses the batch
            if sq == 0.0 and v != 0.0:  # PostgreSQL's float8 raises on underflow; so do we
                raise psycopg.errors.NumericValueOutOfRange("value out of range: underflow")
            s[offset + 2] += sq
            lo, hi = s[offset + 3], s[offset + 4]
            s[offset + 3] = v if lo is None or v < lo else lo
            s[offset + 4] = v if hi is None or v > hi else hi
            slot = (key, metric, bin_of(v))
            acc = bins.get(slot)
            if acc is None:
                bins[slot] = [1, v]
            else:
                acc[0] += 1
                acc[1] += v
        if tokens is not None:
            s[16] += 1
            s[19] += tokens
        if inp is not None:
            s[17] += inp
        if out is not None:
            s[18] += out
        if cost is not None:
            s[20] += 1
            s[21] += cost
        reason_key = (key, row[4] or "")
        reasons[reason_key] = reasons.get(reason_key, 0) + 1
    if not roll:
        return
    _check_finite(roll, bins)
    if not created:
        for statement in _CREATE:
            cur.execute(statement)
    with cur.copy("COPY provider_events_delta_roll FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(_ROLL_TYPES)
        for key, s in roll.items():
            copy.write_row((*key, *s))
    with cur.copy("COPY provider_events_delta_reasons FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(["timestamptz", "text", "text", "text", "text", "int8"])
        for (key, reason), n in reasons.items():
            copy.write_row((*key, reason, n))
    with cur.copy("COPY provider_events_delta_bins FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(["timestamptz", "text", "text", "text", "int2", "int4", "int8", "float8"])
        for (key, metric, b), (n, vs) in bins.items():
            copy.write_row((*key, metric, b, n, vs))
    cur.execute("SELECT provider_events_apply_deltas()")
