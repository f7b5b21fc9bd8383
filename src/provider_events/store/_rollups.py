"""The rollups' share of a batch, aggregated by the batch writer (migrations 0004, 0007).

The statement trigger of migration 0002 derives every row's measures again in SQL (seven
``jsonb`` lookups, a histogram bin per metric) and aggregates them in several passes: about
20 µs per row, more than the ``COPY`` itself. The writer has the rows in hand, so it aggregates
them in one pass here (:class:`Deltas`: the derivations of
:func:`provider_events.analytics._model.derive`, inlined, which the SQL mirrors) *while it
streams them to* ``COPY`` (the Python work overlaps PostgreSQL's), and appends only the
aggregates (a few rows per hour, tenant, provider and model) to the pending tables of migration
0007, in the inserting transaction; ``provider_events.rollups_by_writer = 'on'``
(transaction-local) makes the insert trigger step aside for the writer's own statements.
:func:`merge_pending` folds everything pending into the rollup tables at once, every few
seconds: many batches touch the same histogram rows, and merging a histogram row costs about a
millisecond however few values it gains.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import msgspec
import psycopg

from provider_events.analytics._model import BIN_MAX, BIN_MIN, BIN_SCALE, ZERO_BIN

__all__ = ["SKIP_TRIGGER", "Deltas", "merge_pending", "supported"]

#: Transaction-local: the insert trigger steps aside; and room for the statement's transition
#: table, which PostgreSQL still captures (a batch of 20,000 rows spilled to disk at 4 MB).
SKIP_TRIGGER = (
    "SELECT set_config('provider_events.rollups_by_writer', 'on', true), "
    "set_config('work_mem', '64MB', true)"
)
_SUPPORTED = "SELECT to_regprocedure('provider_events_merge_pending(boolean)') IS NOT NULL"
_MERGE = "SELECT provider_events_merge_pending(%s)"
_ROLL_TYPES = (
    ["timestamptz", "text", "text", "text", "int8"]
    + (["int8", "float8", "float8", "float8", "float8"] * 3)
    + ["int8", "float8", "float8", "float8", "int8", "float8"]
)


class _Numbers(msgspec.Struct):
    """The criteria keys the rollups read (every other key is skipped while decoding), each a
    number or absent (what ingest validation lets through): decoded straight to floats, one
    C call for the seven. A key holding anything else (a string, a boolean, a number beyond
    float8) fails it, and the general path of :func:`_derive` decides."""

    cost_per_token: float | None = None
    latency_ms: float | None = None
    quality_score: float | None = None
    input_tokens: float | None = None
    output_tokens: float | None = None
    total_tokens: float | None = None
    cost_usd: float | None = None


_decode_numbers = msgspec.json.Decoder(_Numbers).decode


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


#: (hour as POSIX seconds, tenant, provider, model)
Key = tuple[float, str, str, str]
#: What one criteria text contributes: cpt, lat, q (and their squares and bins), input, output
#: and total tokens, cost (see :func:`_derive`).
Derived = tuple[Any, ...]
#: Distinct criteria texts remembered across batches (agents often repeat their criteria: the
#: same configured cost and quality per model); the memo is cleared when it is full. Measured
#: latencies and token counts make every text distinct: the writer then stops using it
#: (a lookup and an insert per row cost about as much as a third of the derivation).
MEMO_SIZE = 4096


def supported(conn: psycopg.Connection[Any]) -> bool:
    """Whether this database has ``provider_events_merge_pending`` (migration 0007 applied;
    False for a bare table without rollups, or an older schema: the trigger does the work)."""
    row = conn.execute(_SUPPORTED).fetchone()
    return bool(row and row[0])


def _stats() -> list[Any]:
    """selections; (n, sum, sumsq, min, max) of cpt, lat and q; token_n, input_tokens,
    output_tokens, tokens, costed_n, cost_usd: the columns of provider_events_pending_roll
    (0-21); then this key's histogram bins of cpt, lat and q ({bin: [n, sum]}, 22-24) and its
    reasons ({reason: n}, 25). Nested per key, the per-row lookups hash an int or a string,
    not a tuple holding the key."""
    measure = [0, 0.0, 0.0, None, None]
    return [0, *measure, *measure, *measure, 0, 0.0, 0.0, 0.0, 0, 0.0, {}, {}, {}, {}]


_COLUMNS = 22  # of _stats(): the roll row's columns


def _check_finite(roll: dict[Key, list[Any]]) -> None:
    """Refuse a batch whose sums overflow float8 as PostgreSQL's own arithmetic would (the
    statement triggers raise 22003): the writer then sorts the rows out one by one, and the
    row the triggers refuse is reported for the dead-letter topic instead of storing Infinity
    in the rollups."""
    for s in roll.values():
        values = [*s[:_COLUMNS], *(acc[1] for m in (22, 23, 24) for acc in s[m].values())]
        for v in values:
            if v.__class__ is float and v - v != 0.0:
                raise psycopg.errors.NumericValueOutOfRange("value out of range: overflow")


#: value -> (its square, its bin) for :func:`_derive`; cleared when it holds VALUES_SIZE.
_VALUES: dict[float, tuple[float, int]] = {}
VALUES_SIZE = 65_536


def _square_and_bin(v: float) -> tuple[float, int]:
    """``v * v`` (refusing underflow, as PostgreSQL's float8 does; an overflow to inf is
    refused by :func:`_check_finite`) and ``analytics._model.bin_of(v)`` (same arithmetic)."""
    sq = v * v
    if sq == 0.0 and v != 0.0:
        raise psycopg.errors.NumericValueOutOfRange("value out of range: underflow")
    if v <= 0.0:
        return sq, ZERO_BIN
    b = math.ceil(math.log(v) * BIN_SCALE)
    return sq, BIN_MIN if b < BIN_MIN else BIN_MAX if b > BIN_MAX else b


def _derive(text: bytes) -> Derived:
    """The measures of one criteria text: (cpt, lat, q, cpt², lat², q², bin of cpt, of lat,
    of q, input tokens, output tokens, tokens, cost), the derivations of
    :func:`provider_events.analytics._model.derive` (which the SQL mirrors)."""
    try:
        n = _decode_numbers(text)  # JSON numbers within float8: finite floats
        cpt, lat, q = n.cost_per_token, n.latency_ms, n.quality_score
        inp, out, tokens, cost = n.input_tokens, n.output_tokens, n.total_tokens, n.cost_usd
    except msgspec.ValidationError:  # a non-number somewhere, or one beyond float8
        c = json.loads(text)  # the stdlib reads 1e400 as inf (then not a number), as SQL would
        get = c.get if isinstance(c, dict) else {}.get
        cpt, lat, q = (
            _num(get("cost_per_token")),
            _num(get("latency_ms")),
            _num(get("quality_score")),
        )
        inp, out = _num(get("input_tokens")), _num(get("output_tokens"))
        tokens, cost = _num(get("total_tokens")), _num(get("cost_usd"))
    if tokens is None and (inp is not None or out is not None):
        tokens = (inp if inp is not None else 0.0) + (out if out is not None else 0.0)
    if cost is None and cpt is not None and tokens is not None:
        cost = cpt * tokens
    # Each metric's square and histogram bin, remembered per value: measured latencies are
    # whole milliseconds and scores have three decimals, so values repeat even when whole
    # criteria texts do not (a lookup instead of a log, a ceil and a clamp).
    memo = _VALUES
    if len(memo) >= VALUES_SIZE:
        memo.clear()
    sq1 = sq2 = sq3 = b1 = b2 = b3 = None
    if cpt is not None:
        m = memo.get(cpt)
        if m is None:
            m = memo[cpt] = _square_and_bin(cpt)
        sq1, b1 = m
    if lat is not None:
        m = memo.get(lat)
        if m is None:
            m = memo[lat] = _square_and_bin(lat)
        sq2, b2 = m
    if q is not None:
        m = memo.get(q)
        if m is None:
            m = memo[q] = _square_and_bin(q)
        sq3, b3 = m
    return (cpt, lat, q, sq1, sq2, sq3, b1, b2, b3, inp, out, tokens, cost)


class Deltas:
    """The rollups' share of the rows :meth:`add` is given, aggregated in one pass.

    The batch writer calls :meth:`add` for each row while it streams the batch to ``COPY``, so
    this Python work runs while PostgreSQL is busy parsing and inserting the rows already sent
    (two processes, two cores), then :meth:`stage` appends the aggregates to the pending
    tables in the same transaction. Rows are added in order; sums add up in that order, as before.
    """

    __slots__ = ("_memo", "derived", "roll")

    def __init__(self, memo: dict[bytes, Derived] | None = None) -> None:
        #: Per (hour, tenant, provider, model): the list of :func:`_stats`.
        self.roll: dict[Key, list[Any]] = {}
        self._memo = memo
        #: Rows whose criteria text was not in the memo (how much the memo is worth).
        self.derived = 0

    def __len__(self) -> int:
        return len(self.roll)

    def add(self, row: Any) -> None:
        """Fold one table row (criteria JSON at 5, selected_at at 6, tenant at 7, provider at
        2, model at 3, reason at 4); raises ``NumericValueOutOfRange`` where PostgreSQL's
        float8 arithmetic would."""
        text = row[5]
        memo = self._memo
        d: Derived | None
        if memo is None:
            d = _derive(text)
        else:
            d = memo.get(text)
            if d is None:
                d = _derive(text)
                self.derived += 1
                if len(memo) >= MEMO_SIZE:
                    memo.clear()
                memo[bytes(text)] = d
        ts = row[6].timestamp()
        key: Key = (ts - ts % 3600.0, row[7], row[2], row[3])
        s = self.roll.get(key)
        if s is None:
            s = self.roll[key] = _stats()
        s[0] += 1
        v = d[0]
        if v is not None:
            s[1] += 1
            s[2] += v
            s[3] += d[3]
            if s[4] is None or v < s[4]:
                s[4] = v
            if s[5] is None or v > s[5]:
                s[5] = v
            bins = s[22]
            acc = bins.get(d[6])
            if acc is None:
                bins[d[6]] = [1, v]
            else:
                acc[0] += 1
                acc[1] += v
        v = d[1]
        if v is not None:
            s[6] += 1
            s[7] += v
            s[8] += d[4]
            if s[9] is None or v < s[9]:
                s[9] = v
            if s[10] is None or v > s[10]:
                s[10] = v
            bins = s[23]
            acc = bins.get(d[7])
            if acc is None:
                bins[d[7]] = [1, v]
            else:
                acc[0] += 1
                acc[1] += v
        v = d[2]
        if v is not None:
            s[11] += 1
            s[12] += v
            s[13] += d[5]
            if s[14] is None or v < s[14]:
                s[14] = v
            if s[15] is None or v > s[15]:
                s[15] = v
            bins = s[24]
            acc = bins.get(d[8])
            if acc is None:
                bins[d[8]] = [1, v]
            else:
                acc[0] += 1
                acc[1] += v
        tokens = d[11]
        if tokens is not None:
            s[16] += 1
            s[19] += tokens
        if d[9] is not None:
            s[17] += d[9]
        if d[10] is not None:
            s[18] += d[10]
        if d[12] is not None:
            s[20] += 1
            s[21] += d[12]
        reasons = s[25]
        reason = row[4] or ""
        reasons[reason] = reasons.get(reason, 0) + 1

    def stage(self, cur: psycopg.Cursor[Any]) -> None:
        """Append the aggregates to the pending tables, in the caller's transaction (so they
        commit, or not, with the rows they describe); :func:`merge_pending` folds them in."""
        if not self.roll:
            return
        _check_finite(self.roll)
        rows = [(datetime.fromtimestamp(key[0], UTC), *key[1:], s) for key, s in self.roll.items()]
        with cur.copy("COPY provider_events_pending_roll FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(_ROLL_TYPES)
            for h, t, p, m, s in rows:
                copy.write_row((h, t, p, m, *s[:_COLUMNS]))
        with cur.copy("COPY provider_events_pending_reasons FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["timestamptz", "text", "text", "text", "text", "int8"])
            for h, t, p, m, s in rows:
                for reason, n in s[25].items():
                    copy.write_row((h, t, p, m, reason, n))
        with cur.copy("COPY provider_events_pending_bins FROM STDIN (FORMAT BINARY)") as copy:
            # a row per key and metric, its bins as arrays: ~15x fewer rows than one per bin
            copy.set_types(
                ["timestamptz", "text", "text", "text", "int2", "int4[]", "int8[]", "float8[]"]
            )
            for h, t, p, m, s in rows:
                for metric in (1, 2, 3):
                    bins = s[21 + metric]
                    if bins:
                        accs = bins.values()
                        counts = [acc[0] for acc in accs]
                        sums = [acc[1] for acc in accs]
                        copy.write_row((h, t, p, m, metric, list(bins), counts, sums))


def merge_pending(conn: psycopg.Connection[Any], wait: bool = True) -> int:
    """Fold every pending delta into the rollups in one transaction; the number of pending
    rollup rows merged, or -1 when ``wait`` is false and another session is merging."""
    with conn.transaction():
        row = conn.execute(_MERGE, [wait]).fetchone()
    return int(row[0]) if row and row[0] is not None else 0
