"""Property tests of the models, the builder and ``decode_envelope`` over hostile input.

Every input either builds an event that decodes back to the caller's exact fields, or is
refused with :class:`InvalidEventError`; the independent oracle in ``_property_strategies``
says which, so valid input is never refused and invalid input never slips through. Limits
are probed at the boundary (limit accepted, limit + 1 refused). ``decode_envelope`` meets
arbitrary and mutated bytes and always returns a rule-abiding envelope or raises
``InvalidEventError`` with a known reason code.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime
from typing import Any

import msgspec
import pytest
from _property_strategies import (
    ANY_CHARS,
    CRITERIA_KEYS,
    EVENT_TYPE,
    JSON_SCALARS,
    MUST_REFUSE,
    NAME_CHARS,
    REASON_CHARS,
    REASONS,
    SQL,
    SQL_TEXT_FIELDS,
    TRICKY,
    assert_round_trip,
    criteria_problem,
    examples,
    mixed_fields,
    mutated,
    name_ok,
    nested,
    offline_settings,
    problems,
    reason_ok,
    sized,
    valid_fields,
    wrong_type_for,
)
from hypothesis import given
from hypothesis import strategies as st

from provider_events.errors import InvalidEventError
from provider_events.events._envelope import OutgoingEvent, build_provider_selection
from provider_events.events._models import LIMITS, OnexEnvelopeV1
from provider_events.events._validation import decode_envelope

SETTINGS = offline_settings()
#: No single build or decode may take this long (a hang shows as a failure, not a stall).
BOUND = 5.0


def build(fields: dict[str, Any]) -> OutgoingEvent:
    started = time.monotonic()
    try:
        return build_provider_selection(settings=SETTINGS, **fields)
    finally:
        assert time.monotonic() - started < BOUND, "build took too long"


def decode(raw: bytes) -> OnexEnvelopeV1[Any]:
    started = time.monotonic()
    try:
        return decode_envelope(raw)
    finally:
        assert time.monotonic() - started < BOUND, "decode took too long"


def refusal(fields: dict[str, Any]) -> InvalidEventError:
    with pytest.raises(InvalidEventError) as info:
        build(fields)
    assert str(info.value).strip()
    return info.value


BASE: dict[str, Any] = {
    "provider_name": "gemini-flash",
    "model_name": "gemini-1.5-flash-002",
    "selection_reason": "Cost-effective for high-volume pattern matching",
    "correlation_id": "abc-123-def-456",
}


# -- the builder -----------------------------------------------------------------------------
@examples(2000)
@given(mixed_fields())
def test_any_input_builds_exactly_when_valid(fields: dict[str, Any]) -> None:
    """Anything at all either builds and round-trips unchanged or is an InvalidEventError."""
    expected = problems(fields)
    try:
        event = build(fields)
    except InvalidEventError as exc:
        assert expected, f"valid input refused: {exc}"
        assert str(exc).strip()
        return
    assert not expected, f"accepted although it breaks {expected}"
    assert_round_trip(fields, event, SETTINGS)


@examples(1000)
@given(valid_fields())
def test_valid_input_is_never_refused(fields: dict[str, Any]) -> None:
    """Input within every limit (exotic Unicode, SQL, controls in free text) always builds."""
    assert problems(fields) == []
    assert_round_trip(fields, build(fields), SETTINGS)


TEXT_LIMITS = [
    ("provider_name", LIMITS["provider_name"], NAME_CHARS),
    ("model_name", LIMITS["model_name"], NAME_CHARS),
    ("correlation_id", LIMITS["correlation_id"], NAME_CHARS),
    ("causation_id", LIMITS["correlation_id"], NAME_CHARS),
    ("tenant_id", LIMITS["envelope_text"], NAME_CHARS),
    ("namespace", LIMITS["envelope_text"], NAME_CHARS),
    ("source", LIMITS["envelope_text"], NAME_CHARS),
    ("selection_reason", LIMITS["selection_reason"], REASON_CHARS),
]


@examples(800)
@given(st.sampled_from(TEXT_LIMITS).flatmap(lambda f: st.tuples(st.just(f), sized(f[2], f[1]))))
def test_text_limits_are_exact(case: tuple[tuple[str, int, Any], str]) -> None:
    """Every text field takes exactly its limit in code points and refuses one more."""
    (name, limit, _), text = case
    if not text.strip():
        text = "c" + text[1:]  # an all-whitespace correlation id is refused for that reason
    assert len(text) == limit
    fields = {**BASE, name: text}
    assert_round_trip(fields, build(fields), SETTINGS)
    over = {**BASE, name: text + text[-1]}
    assert name in str(refusal(over))


def _exact_criteria(key: str, char: str, size: int) -> dict[str, str]:
    """``{key: value}`` whose compact JSON encoding is exactly ``size`` bytes."""
    base = len(msgspec.json.encode({key: ""}))
    per = len(msgspec.json.encode(char)) - 2
    room = size - base
    value = char * (room // per) + "a" * (room % per)
    criteria = {key: value}
    assert len(msgspec.json.encode(criteria)) == size
    return criteria


@examples(300)
@given(CRITERIA_KEYS, st.one_of(REASON_CHARS, TRICKY.filter(lambda c: c not in "\x00\ud800\udfff")))
def test_criteria_byte_limit_is_exact(key: str, char: str) -> None:
    """selection_criteria of exactly 16 KiB encoded is accepted, one byte more is refused."""
    limit = LIMITS["criteria_bytes"]
    at_limit = _exact_criteria(key, char, limit)
    fields = {**BASE, "selection_criteria": at_limit}
    assert_round_trip(fields, build(fields), SETTINGS)
    over = {key: at_limit[key] + "a"}
    assert "larger" in str(refusal({**BASE, "selection_criteria": over}))


@examples(300)
@given(st.integers(1, 200), st.integers(0, 6), st.sampled_from([0, "", None, True, 1.5]))
def test_criteria_value_count_limit_is_exact(flat: int, wrap: int, leaf: Any) -> None:
    """256 values (object members and array items at any depth) pass, 257 are refused."""

    def criteria(total: int) -> dict[str, Any]:
        items: Any = [leaf] * (total - flat - wrap)
        for level in range(wrap):
            items = {f"w{level}": items}
        return {**{f"k{i}": leaf for i in range(flat - 1)}, "items": items}

    limit = LIMITS["criteria_keys"]
    fields = {**BASE, "selection_criteria": criteria(limit)}
    assert_round_trip(fields, build(fields), SETTINGS)
    assert "values" in str(refusal({**BASE, "selection_criteria": criteria(limit + 1)}))


@examples(300)
@given(
    st.lists(st.booleans(), min_size=1, max_size=8),
    st.one_of(JSON_SCALARS, st.just({}), st.just([])),
)
def test_criteria_depth_limit_is_exact(kinds: list[bool], leaf: Any) -> None:
    """A value 8 levels below selection_criteria is accepted, 9 levels is refused."""
    limit = LIMITS["criteria_depth"]
    # "deep" is level 1; its value wraps the leaf in n containers: the leaf sits at 1 + n.
    fields = {**BASE, "selection_criteria": {"deep": nested(limit - 1, leaf, kinds)}}
    assert_round_trip(fields, build(fields), SETTINGS)
    too_deep = {**BASE, "selection_criteria": {"deep": nested(limit, leaf, kinds)}}
    assert "deeper" in str(refusal(too_deep))


@examples(400)
@given(
    st.fixed_dictionaries(
        {
            **SQL_TEXT_FIELDS,
            "namespace": st.sampled_from(SQL),
            "source": st.sampled_from(SQL),
            "selection_criteria": st.dictionaries(
                st.sampled_from(SQL),
                st.one_of(st.sampled_from(SQL), st.lists(st.sampled_from(SQL))),
                max_size=4,
            ),
        }
    )
)
def test_sql_looking_strings_are_plain_data(fields: dict[str, Any]) -> None:
    """Quotes, comments and DROP TABLE in every field are accepted verbatim and come back as-is."""
    assert_round_trip(fields, build(fields), SETTINGS)


@examples(400)
@given(
    st.sampled_from([float("nan"), float("inf"), float("-inf")]),
    st.integers(0, LIMITS["criteria_depth"] - 1),
    st.lists(st.booleans(), min_size=1, max_size=4),
    st.dictionaries(CRITERIA_KEYS, JSON_SCALARS, max_size=3),
)
def test_nan_and_infinity_are_refused_anywhere(
    number: float, depth: int, kinds: list[bool], siblings: dict[str, Any]
) -> None:
    """NaN and +-Infinity are refused at the top level and nested in lists and objects."""
    criteria = {**siblings, "value": nested(depth, number, kinds)}
    assert "finite" in str(refusal({**BASE, "selection_criteria": criteria}))


ACCEPTED_TYPES: dict[str, tuple[type, ...]] = {
    "provider_name": (str,),
    "model_name": (str,),
    "selection_reason": (str,),
    "correlation_id": (str, uuid.UUID, type(None)),
    "causation_id": (str, uuid.UUID, type(None)),
    "tenant_id": (str, type(None)),
    "namespace": (str, type(None)),
    "source": (str, type(None)),
    "selected_at": (datetime, type(None)),
    "selection_criteria": (dict, type(None)),
}


@examples(600)
@given(
    st.sampled_from(sorted(ACCEPTED_TYPES)).flatmap(
        lambda name: st.tuples(st.just(name), wrong_type_for(ACCEPTED_TYPES[name]))
    )
)
def test_wrong_types_are_refused_for_every_field(case: tuple[str, Any]) -> None:
    """ints, floats, bools, None, bytes, lists, dicts, UUIDs or datetimes where they do not
    belong are refused, never coerced into text."""
    name, value = case
    assert name in str(refusal({**BASE, name: value}))


# -- decode_envelope -------------------------------------------------------------------------
def _utf8_bytes(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def check_decoded(raw: bytes) -> OnexEnvelopeV1[Any] | None:
    """Decode ``raw``: an accepted envelope must obey every rule; a refusal has a known reason."""
    try:
        envelope = decode(raw)
    except InvalidEventError as exc:
        assert exc.reason in REASONS, exc.reason
        assert str(exc).strip()
        if exc.reason == "bad_utf8":
            assert not _utf8_bytes(raw)
        return None
    assert len(raw) <= LIMITS["message_bytes"]
    payload = envelope.payload
    assert envelope.event_type == EVENT_TYPE
    assert envelope.event_id.version == 4
    assert envelope.correlation_id == payload.correlation_id and envelope.correlation_id.strip()
    assert name_ok(envelope.correlation_id, LIMITS["correlation_id"])
    assert envelope.causation_id is None or name_ok(envelope.causation_id, LIMITS["correlation_id"])
    for text in (envelope.tenant_id, envelope.namespace, envelope.source):
        assert name_ok(text, LIMITS["envelope_text"])
    assert name_ok(payload.provider_name, LIMITS["provider_name"])
    assert name_ok(payload.model_name, LIMITS["model_name"])
    assert reason_ok(payload.selection_reason)
    assert criteria_problem(payload.selection_criteria) is None
    assert envelope.timestamp.utcoffset() is not None
    assert payload.selected_at.utcoffset() is not None
    # What was accepted re-encodes to an envelope that decodes to the same fields.
    again = decode(msgspec.json.encode(envelope))
    assert again == envelope
    return envelope


@examples(2000)
@given(
    st.one_of(
        st.binary(max_size=300),
        st.text(ANY_CHARS, max_size=100).map(lambda t: t.encode("utf-8", "surrogatepass")),
        st.recursive(
            JSON_SCALARS,
            lambda inner: (
                st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4)
            ),
            max_leaves=8,
        ).map(lambda v: json.dumps(v).encode()),
        st.sampled_from([b"", b"null", b"{}", b"[]", b"NaN", b"Infinity", b"-Infinity", b"1e999"]),
        # Deep nesting where the decoder must skip it (unknown field) or read it (event_type).
        st.tuples(
            st.sampled_from([b"", b'{"event_type":', b'{"x":', b'{"payload":{"a":']),
            st.integers(1, 100_000),
            st.sampled_from([b"[", b'{"a":', b"[{}, "]),
        ).map(lambda t: t[0] + t[2] * t[1]),
        # Raw bytes that are not UTF-8 inside a JSON string, before or after event_type.
        st.tuples(
            st.binary(min_size=1, max_size=4).filter(lambda b: not _utf8_bytes(b)),
            st.sampled_from(
                [
                    b'{"event_type":"%s"}',
                    b'{"x":"%s","event_type":"omninode.agent.provider.selected.v1"}',
                    b'{"event_type":"omninode.agent.provider.selected.v1","source":"%s"}',
                ]
            ),
        ).map(lambda t: t[1].replace(b"%s", t[0])),
    )
)
def test_decode_arbitrary_bytes(raw: bytes) -> None:
    """Arbitrary bytes are refused with a known reason code (or obey every rule)."""
    check_decoded(raw)


@examples(1500)
@given(mutated())
def test_decode_mutated_envelopes(case: tuple[str, bytes]) -> None:
    """Flipped bytes, truncations, extra fields, wrong types, NaN, nesting, bad UTF-8: every one
    is refused with a known reason or decodes to an envelope within every rule."""
    kind, raw = case
    envelope = check_decoded(raw)
    if kind in MUST_REFUSE:
        assert envelope is None, f"{kind} accepted: {raw[:200]!r}"
    if kind == "deep":
        # Nesting deeper than 8 levels under selection_criteria is never accepted.
        assert envelope is None


@examples(150)
@given(
    valid_fields(),
    st.lists(st.sampled_from(b" \t\r\n"), min_size=1, max_size=8).map(bytes),
    st.booleans(),
)
def test_message_size_limit_is_exact(fields: dict[str, Any], blank: bytes, front: bool) -> None:
    """A valid envelope padded with JSON whitespace to 64 KiB decodes; one byte more is too_large."""
    raw = build(fields).value
    limit = LIMITS["message_bytes"]
    pad = (blank * (limit // len(blank) + 1))[: limit - len(raw)]
    padded = pad + raw if front else raw + pad
    assert len(padded) == limit
    assert decode(padded) == decode(raw)
    with pytest.raises(InvalidEventError) as info:
        decode(padded + b" ")
    assert info.value.reason == "too_large"
