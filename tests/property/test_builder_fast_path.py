"""The builder's fast path is the full validation's exact twin.

``build_provider_selection`` skips decoding its own bytes when every value is of a kind the
rules certainly accept (see ``_envelope._shortcut`` and ``plainly_valid_criteria``). These properties
check that shortcut differentially: for the same input, with ids and clocks pinned, the
builder with the shortcut and the builder forced through the validating decoder either both
refuse with the same error or both return the same bytes, key and headers. The inputs sit on
the shortcut's edges: plain ASCII at and around every length limit, printable but exotic text,
control characters, numbers at the analytics bounds and the 64-bit edges, strings and keys of
32 and 33 characters, 32 and 33 entries.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from unittest import mock

import msgspec
import pytest
from _property_strategies import (
    NUMERIC_RULES,
    TINY,
    examples,
    mixed_fields,
    offline_settings,
    valid_fields,
)
from hypothesis import given
from hypothesis import strategies as st

from provider_events.errors import InvalidEventError
from provider_events.events import _envelope
from provider_events.events._envelope import build_provider_selection
from provider_events.events._ids import format_timestamp
from provider_events.events._models import (
    LIMITS,
    check_criteria,
    plainly_valid_criteria,
    reject_non_finite,
)

SETTINGS = offline_settings()
EVENT_ID = "6f1c2b8e-3d4a-4e5f-9a0b-1c2d3e4f5a6b"
NOW = datetime(2025, 11, 13, 14, 30, 0, 123456, tzinfo=UTC)
GENERATED_CID = "0193a6b2-7c3d-7e4f-8a5b-6c7d8e9f0a1b"


@contextmanager
def pinned(now: datetime = NOW) -> Iterator[None]:
    with (
        mock.patch.object(_envelope, "_pooled_event_id", lambda: EVENT_ID),
        mock.patch.object(_envelope, "_now", lambda tz: now),
        mock.patch.object(_envelope, "new_correlation_id", lambda: GENERATED_CID),
    ):
        yield


def outcome(fields: dict[str, Any], *, full: bool) -> tuple[Any, ...]:
    """What the builder makes of ``fields``: its error, or everything it sends."""
    with pinned(), full_validation(full):
        try:
            event = build_provider_selection(settings=SETTINGS, **fields)
        except InvalidEventError as exc:
            return ("refused", type(exc), str(exc))
    return (
        "built",
        event.event_id,
        event.event_type,
        event.topic,
        event.key,
        event.value,
        event.headers,
        event.provider_name,
        event.model_name,
    )


@contextmanager
def full_validation(full: bool) -> Iterator[None]:
    """With ``full``, the shortcut never applies: every input takes the validating decoder."""
    if not full:
        yield
        return
    with mock.patch.object(_envelope, "_shortcut", False):
        yield


def assert_twins(fields: dict[str, Any]) -> None:
    fast, full = outcome(fields, full=False), outcome(fields, full=True)
    assert fast == full


# -- inputs on the shortcut's edges ----------------------------------------------------------
PRINTABLE = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
#: Allowed by the rules but not printable (the shortcut defers), or refused by them.
EDGE_CHARS = st.sampled_from(
    ["\t", "\n", "\x00", "\x1f", "\x7f", "\x85", "\xa0", "\u2028", "\ufeff", "\U0001f600", "\ud800"]
)


def edge_text(limit: int) -> st.SearchStrategy[str]:
    around = st.integers(max(0, limit - 1), limit + 1).map(lambda n: "a" * n)
    spiced = st.tuples(st.text(PRINTABLE, max_size=limit), EDGE_CHARS, st.integers(0, limit)).map(
        lambda t: t[0][: t[2]] + t[1] + t[0][t[2] :]
    )
    return st.one_of(
        st.text(PRINTABLE, min_size=1, max_size=limit), around, spiced, st.just(" "), st.just("")
    )


EDGE_NUMBERS = st.sampled_from(
    [
        0,
        0.0,
        -0.0,
        -1,
        -1e-300,
        5e-324,
        TINY / 10,
        TINY,
        0.5,
        1,
        1.0,
        1.0000000000000002,
        1e100,
        1e101,
        10**100,
        10**100 + 1,
        2**63 - 1,
        2**63,
        2**64 - 1,
        2**64,
        -(2**63),
        -(2**63) - 1,
        float("nan"),
        float("inf"),
        True,
        False,
        None,
        "0.5",
    ]
)
EDGE_SCALARS = st.one_of(
    EDGE_NUMBERS,
    st.floats(),
    st.integers(),
    st.text(PRINTABLE, max_size=33),
    st.integers(31, 33).map(lambda n: "v" * n),
    EDGE_CHARS,
    st.lists(st.integers(), max_size=2),
    st.tuples(st.integers()),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    st.binary(max_size=2),
)
EDGE_KEYS = st.one_of(
    st.sampled_from(sorted(NUMERIC_RULES)),
    st.text(PRINTABLE, min_size=1, max_size=8),
    st.integers(31, 33).map(lambda n: "k" * n),
    EDGE_CHARS,
    st.just(""),
)
EDGE_CRITERIA = st.one_of(
    st.dictionaries(EDGE_KEYS, EDGE_SCALARS, max_size=6),
    st.integers(31, 34).map(lambda n: {f"k{i}": i for i in range(n)}),
    st.integers(31, 34).map(lambda n: {f"{i:02d}" + "k" * 30: "v" * 32 for i in range(n)}),
    st.sampled_from(sorted(NUMERIC_RULES)).flatmap(
        lambda key: EDGE_NUMBERS.map(lambda value: {key: value})
    ),
)


@st.composite
def edge_fields(draw: Callable[..., Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "provider_name": draw(edge_text(LIMITS["provider_name"])),
        "model_name": draw(edge_text(LIMITS["model_name"])),
        "selection_reason": draw(
            st.one_of(edge_text(LIMITS["selection_reason"]), st.just("a" * 4001))
        ),
        "selection_criteria": draw(st.one_of(st.none(), EDGE_CRITERIA)),
    }
    for name, limit in (
        ("correlation_id", LIMITS["correlation_id"]),
        ("causation_id", LIMITS["correlation_id"]),
        ("tenant_id", LIMITS["envelope_text"]),
        ("namespace", LIMITS["envelope_text"]),
        ("source", LIMITS["envelope_text"]),
    ):
        if draw(st.booleans()):
            fields[name] = draw(st.one_of(edge_text(limit), st.none(), st.uuids()))
    return fields


# -- properties ------------------------------------------------------------------------------
@examples(1500)
@given(edge_fields())
def test_shortcut_twins_full_validation_on_edges(fields: dict[str, Any]) -> None:
    assert_twins(fields)


@examples(500)
@given(st.one_of(mixed_fields(), valid_fields()))
def test_shortcut_twins_full_validation_on_any_input(fields: dict[str, Any]) -> None:
    assert_twins(fields)


@examples(1500)
@given(EDGE_CRITERIA)
def test_plain_criteria_pass_every_rule_unchanged_by_json(criteria: dict[str, Any]) -> None:
    """What the shortcut calls plain passes the full rules and survives JSON unchanged."""
    if not plainly_valid_criteria(criteria):
        return
    reject_non_finite(criteria)
    try:
        raw = msgspec.json.encode(criteria)
    except UnicodeEncodeError:  # a lone surrogate: refused by the encoder on either path
        return
    decoded = msgspec.json.decode(raw)
    check_criteria(decoded)
    check_criteria(criteria)
    assert decoded == criteria
    assert [type(v) for v in decoded.values()] == [type(v) for v in criteria.values()]


def test_typical_selection_takes_the_shortcut() -> None:
    """A plain selection (the hook's and the benchmark's kind) is never decoded again."""
    refusing = mock.Mock()
    refusing.decode.side_effect = AssertionError("decoded on the fast path")
    with mock.patch.object(_envelope, "_validating_decoder", refusing):
        event = build_provider_selection(
            settings=SETTINGS,
            provider_name="gemini-flash",
            model_name="gemini-1.5-flash-002",
            correlation_id=uuid.uuid4(),
            selection_reason="Cost-effective for high-volume pattern matching\nsecond line",
            selection_criteria={"cost_per_token": 1e-6, "latency_ms": 50, "quality_score": 0.85},
        )
    assert event.provider_name == "gemini-flash"


@pytest.mark.parametrize("microsecond", [0, 1, 10, 500_000, 999_999])
def test_ce_time_header_keeps_six_digits(microsecond: int) -> None:
    """The header's time has six fraction digits even where the JSON leaves a zero one out."""
    now = NOW.replace(microsecond=microsecond)
    with pinned(now):
        event = build_provider_selection(
            settings=SETTINGS, provider_name="p", model_name="m", selection_reason=""
        )
    assert dict(event.headers)["ce_time"] == format_timestamp(now).encode()
    wire = msgspec.json.decode(event.value)["timestamp"]
    assert wire == msgspec.json.encode(now).decode().strip('"')


def test_headers_are_the_documented_list() -> None:
    with pinned():
        event = build_provider_selection(
            settings=SETTINGS,
            provider_name="p",
            model_name="m",
            selection_reason="",
            correlation_id="c",
            tenant_id="acme",
            namespace="ns",
            source="src",
        )
    assert event.headers == [
        ("content-type", b"application/json"),
        ("event_type", b"omninode.agent.provider.selected.v1"),
        ("event_id", EVENT_ID.encode()),
        ("schema_ref", b"registry://omninode/agent/provider_selected/v1"),
        ("tenant_id", b"acme"),
        ("ce_specversion", b"1.0"),
        ("ce_type", b"omninode.agent.provider.selected.v1"),
        ("ce_id", EVENT_ID.encode()),
        ("ce_source", b"ns/src"),
        ("ce_time", b"2025-11-13T14:30:00.123456Z"),
    ]
