"""The batch writer's one-pass rollup aggregation (store/_rollups.py) against the reference
derivations of analytics/_model.py, on ordinary and hostile criteria."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from provider_events.analytics._model import bin_of, derive
from provider_events.store._rollups import Deltas, _derive

CRITERIA: list[str] = [
    '{"cost_per_token": 1.2e-6, "latency_ms": 619, "quality_score": 0.893}',
    '{"input_tokens": 2011, "output_tokens": 934, "cost_per_token": 3e-6}',
    '{"total_tokens": 10, "input_tokens": 4, "cost_usd": 0.5}',
    '{"latency_ms": 0, "quality_score": 0.0, "cost_per_token": -1}',
    '{"latency_ms": "fast", "quality_score": true, "cost_per_token": null}',
    '{"latency_ms": 1e400, "quality_score": 0.5}',  # beyond float8: not a number here
    '{"latency_ms": 18446744073709551616, "output_tokens": 7}',
    '{"latency_ms": [1, 2], "cost_usd": {"x": 1}, "input_tokens": false}',
    '{"unrelated": 1, "nested": {"latency_ms": 5}}',
    "{}",
    '{"latency_ms": 1e-100, "cost_per_token": 1e100}',
]


@pytest.mark.parametrize("text", CRITERIA)
def test_derivations_match_the_reference(text: str) -> None:
    d = _derive(text.encode())
    ref = derive(json.loads(text))
    values = (ref.cost_per_token, ref.latency_ms, ref.quality_score)
    assert d[0:3] == values
    assert d[3:6] == tuple(None if v is None else v * v for v in values)
    assert d[6:9] == tuple(None if v is None else bin_of(v) for v in values)
    assert d[9:13] == (ref.input_tokens, ref.output_tokens, ref.tokens, ref.cost_usd)


def test_an_integer_beyond_float8_is_refused_as_postgresql_would() -> None:
    with pytest.raises(psycopg.errors.NumericValueOutOfRange):
        _derive(b'{"latency_ms": 1' + b"0" * 400 + b"}")


def _row(text: str, at: datetime, tenant: str = "t", reason: str = "r") -> tuple[Any, ...]:
    return (None, "c", "p", "m", reason, text.encode(), at, tenant)


@pytest.mark.parametrize("memo", [None, {}])
def test_deltas_aggregate_per_hour_key_reason_and_bin(memo: dict[bytes, Any] | None) -> None:
    hour = datetime(2025, 11, 10, 7, tzinfo=UTC)
    texts = ['{"latency_ms": 100}', '{"latency_ms": 100}', '{"latency_ms": 300, "cost_usd": 2}']
    deltas = Deltas(memo)
    for i, text in enumerate(texts):
        deltas.add(_row(text, hour + timedelta(minutes=20 * i), reason="a" if i else "b"))
    deltas.add(_row('{"latency_ms": 5}', hour + timedelta(hours=1), tenant="u"))
    assert len(deltas) == 2
    key = (hour.timestamp(), "t", "p", "m")
    stats = deltas.roll[key]
    assert stats[0] == 3  # selections
    assert stats[6:11] == [3, 500.0, 100.0**2 * 2 + 300.0**2, 100.0, 300.0]  # latency
    assert (stats[20], stats[21]) == (1, 2.0)  # costed_n, cost_usd
    assert stats[25] == {"a": 2, "b": 1}  # reasons
    assert stats[23] == {bin_of(100.0): [2, 200.0], bin_of(300.0): [1, 300.0]}  # latency bins
    assert stats[22] == {} and stats[24] == {}  # no cost_per_token, no quality_score
    assert stats[21] == 2.0
    assert deltas.derived == (0 if memo is None else 3)
