"""Shared hypothesis profile, strategies and the independent validity oracle for tests/property.

The oracle (:func:`problems`) states every enforced rule from docs/limits.md in plain Python,
without calling the code under test, so a property can say exactly which inputs must build
and which must be refused. Only the byte size of ``selection_criteria`` is measured with
msgspec, because the limit is defined on msgspec's compact encoding (what goes on the wire).
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import msgspec
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from provider_events.events._envelope import OutgoingEvent, build_provider_selection
from provider_events.events._models import LIMITS
from provider_events.events._validation import decode_envelope
from provider_events.settings import Settings, load_settings

# -- profile ---------------------------------------------------------------------------------
PROFILE = "provider-events-property"
settings.register_profile(
    PROFILE,
    derandomize=True,  # the same inputs on every run: CI is stable, failures reproduce
    database=None,
    deadline=None,  # a shared 2-core CI box has pauses; hangs are caught by pytest-timeout
    print_blob=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.filter_too_much,
    ],
)
#: PROPERTY_SCALE=10 multiplies every example count (a deeper run by hand or nightly).
SCALE = float(os.environ.get("PROPERTY_SCALE", "1"))


def examples(count: int) -> settings:
    """The profile with ``count`` (scaled) examples: ``@examples(1000)`` on a ``@given`` test."""
    return settings(settings.get_profile(PROFILE), max_examples=max(1, int(count * SCALE)))


# -- the rules, stated independently ---------------------------------------------------------
CONTROL = "".join(chr(c) for c in range(0x20)) + "\x7f"
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
#: Analytics numbers: 0, or a magnitude in [1e-100, 1e100] (quality_score at most 1).
NUMERIC_RULES: dict[str, tuple[float, float]] = {
    "cost_per_token": (0.0, 1e100),
    "latency_ms": (0.0, 1e100),
    "quality_score": (0.0, 1.0),
    "input_tokens": (0.0, 1e100),
    "output_tokens": (0.0, 1e100),
    "total_tokens": (0.0, 1e100),
    "cost_usd": (0.0, 1e100),
}
TINY = 1e-100
REASONS = frozenset(
    {"bad_utf8", "bad_json", "schema", "unknown_event_type", "too_large", "partition_key"}
)
EVENT_TYPE = "omninode.agent.provider.selected.v1"
SCHEMA_REF = "registry://omninode/agent/provider_selected/v1"


def utf8_ok(text: str) -> bool:
    """False for lone surrogates, which UTF-8 (and so JSON on the wire) cannot carry."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def name_ok(value: Any, limit: int) -> bool:
    """A name or id: a string of 1..limit code points, no control characters, valid Unicode."""
    return (
        isinstance(value, str)
        and 1 <= len(value) <= limit
        and not _CONTROL_RE.search(value)
        and utf8_ok(value)
    )


def reason_ok(value: Any) -> bool:
    """Free text: a string of at most 4,000 code points without NUL (other controls allowed)."""
    return (
        isinstance(value, str)
        and len(value) <= LIMITS["selection_reason"]
        and "\x00" not in value
        and utf8_ok(value)
    )


def criteria_problem(criteria: Any) -> str | None:
    """Why ``criteria`` (as a caller passes it) must be refused, or None when it is valid."""
    if criteria is None:
        return None
    if not isinstance(criteria, dict):
        return "not an object"
    count = 0

    def walk(value: Any, depth: int) -> str | None:
        nonlocal count
        if depth > LIMITS["criteria_depth"]:
            return "too deep"
        if value is None or isinstance(value, bool):
            return None
        if isinstance(value, str):
            return None if "\x00" not in value and utf8_ok(value) else "bad string"
        if isinstance(value, int):
            return None if -(10**4300) < value < 10**4300 else "integer over 4300 digits"
        if isinstance(value, float):
            if not math.isfinite(value):
                return "not finite"
            return "subnormal" if 0 < abs(value) < sys.float_info.min else None
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str) or "\x00" in key or not utf8_ok(key):
                    return "bad key"
                count += 1
                problem = walk(item, depth + 1)
                if problem:
                    return problem
            return None
        if isinstance(value, list | tuple):
            for item in value:
                count += 1
                problem = walk(item, depth + 1)
                if problem:
                    return problem
            return None
        return f"not a JSON type: {type(value).__name__}"

    problem = walk(criteria, 0)
    if problem:
        return problem
    if count > LIMITS["criteria_keys"]:
        return "too many values"
    if any(len(key) > 256 for key in criteria):
        return "top-level key longer than 256"
    for key, (low, high) in NUMERIC_RULES.items():
        if key in criteria:
            value = criteria[key]
            if type(value) not in (int, float) or not low <= value <= high or 0 < value < TINY:
                return f"{key} out of range"
    if len(msgspec.json.encode(criteria)) > LIMITS["criteria_bytes"]:
        return "larger than the byte limit"
    return None


def selected_at_ok(value: Any) -> bool:
    """None, or a timezone-aware datetime whose instant exists in UTC (years 1..9999) and lies
    in the accepted window [2000-01-01T00:00Z, now + 1 day] (docs/limits.md)."""
    if value is None:
        return True
    if not isinstance(value, datetime) or value.utcoffset() is None:
        return False
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        return False
    return datetime(2000, 1, 1, tzinfo=UTC) <= utc <= datetime.now(UTC) + timedelta(days=1)


def problems(fields: dict[str, Any]) -> list[str]:
    """Every rule the builder's keyword arguments break (empty: the event must build)."""
    out = []
    if not name_ok(fields.get("provider_name"), LIMITS["provider_name"]):
        out.append("provider_name")
    if not name_ok(fields.get("model_name"), LIMITS["model_name"]):
        out.append("model_name")
    if not reason_ok(fields.get("selection_reason")):
        out.append("selection_reason")
    cid = fields.get("correlation_id")
    if not (
        cid is None
        or isinstance(cid, uuid.UUID)
        or (name_ok(cid, LIMITS["correlation_id"]) and cid.strip())
    ):
        out.append("correlation_id")
    cause = fields.get("causation_id")
    if not (
        cause is None or isinstance(cause, uuid.UUID) or name_ok(cause, LIMITS["correlation_id"])
    ):
        out.append("causation_id")
    for name in ("tenant_id", "namespace", "source"):
        value = fields.get(name)
        if not (value is None or value == "" or name_ok(value, LIMITS["envelope_text"])):
            out.append(name)
    if not selected_at_ok(fields.get("selected_at")):
        out.append("selected_at")
    problem = criteria_problem(fields.get("selection_criteria"))
    if problem:
        out.append(f"selection_criteria: {problem}")
    return out


# -- comparing what came back ----------------------------------------------------------------
def same_json(got: Any, want: Any) -> bool:
    """Strict equality of JSON values: types kept (1 is not 1.0 or True), tuples are lists."""
    if isinstance(want, tuple):
        want = list(want)
    if isinstance(want, dict):
        return (
            isinstance(got, dict)
            and list(got) == list(want)
            and all(same_json(got[k], want[k]) for k in want)
        )
    if isinstance(want, list):
        return (
            isinstance(got, list)
            and len(got) == len(want)
            and all(same_json(g, w) for g, w in zip(got, want, strict=True))
        )
    return type(got) is type(want) and got == want


def offline_settings(home: Path | None = None) -> Settings:
    """Settings from an empty environment: defaults only (tenant ``default`` and so on)."""
    environ = {"HOME": str(home or Path("/nonexistent-home"))}
    return load_settings(environ=environ, dotenv=Path("/nonexistent/.env"))


def assert_round_trip(fields: dict[str, Any], event: OutgoingEvent, settings: Settings) -> None:
    """The built event decodes (as a consumer would) to exactly the caller's fields."""
    assert len(event.value) <= LIMITS["message_bytes"]
    envelope = decode_envelope(event.value)
    assert str(envelope.event_id) == event.event_id
    assert_envelope_matches(envelope, fields, settings)
    assert event.key == envelope.correlation_id.encode()
    headers = dict(event.headers)
    assert headers["event_id"] == event.event_id.encode()
    assert headers["tenant_id"] == envelope.tenant_id.encode()


def assert_envelope_matches(envelope: Any, fields: dict[str, Any], settings: Settings) -> None:
    """A decoded envelope carries exactly the builder arguments ``fields`` (defaults applied)."""
    payload = envelope.payload
    assert envelope.event_type == EVENT_TYPE and envelope.schema_ref == SCHEMA_REF
    assert envelope.event_id.version == 4
    assert payload.provider_name == fields["provider_name"]
    assert payload.model_name == fields["model_name"]
    assert payload.selection_reason == fields["selection_reason"]
    cid = fields.get("correlation_id")
    if cid is None:
        assert uuid.UUID(envelope.correlation_id).version == 7
    else:
        assert envelope.correlation_id == str(cid)
    assert payload.correlation_id == envelope.correlation_id
    cause = fields.get("causation_id")
    assert envelope.causation_id == (None if cause is None else str(cause))
    assert envelope.tenant_id == (fields.get("tenant_id") or settings.tenant_id)
    assert envelope.namespace == (fields.get("namespace") or settings.namespace)
    assert envelope.source == (fields.get("source") or settings.source)
    assert same_json(payload.selection_criteria, fields.get("selection_criteria") or {})
    moment = fields.get("selected_at")
    if moment is not None:  # the same instant (== is False across zones for ambiguous times)
        utc = moment.replace(tzinfo=None) - moment.utcoffset()
        assert payload.selected_at.replace(tzinfo=None) == utc
    assert payload.selected_at.utcoffset() == timedelta(0)
    assert envelope.timestamp.utcoffset() == timedelta(0)


# -- strategies: text ------------------------------------------------------------------------
SQL = (
    "'; DROP TABLE provider_selection_events; --",
    "Robert'); DROP TABLE provider_selection_events;--",
    "1' OR '1'='1",
    '" OR ""="',
    "$$; DELETE FROM provider_selection_events; $$",
    "'); SELECT pg_sleep(30); --",
    "x' UNION SELECT usename, passwd FROM pg_shadow --",
    "E'\\\\x27'; TRUNCATE provider_selection_events CASCADE; --",
    "%s %(provider_name)s {0} ${HOME} $(id) `id`",
    "\\copy provider_selection_events TO '/tmp/stolen'",
    "/*",
    "--",
    ";",
    "'",
    "\\",
    '"',
)
#: SQL-looking text for each text field of an event (a correlation id is never blank).
SQL_TEXT_FIELDS = {
    "provider_name": st.sampled_from(SQL),
    "model_name": st.sampled_from(SQL),
    "selection_reason": st.sampled_from(SQL),
    "correlation_id": st.sampled_from([s for s in SQL if s.strip()]),
    "causation_id": st.sampled_from(SQL),
    "tenant_id": st.sampled_from(SQL),
}
SURROGATES: tuple[Literal["Cs"]] = ("Cs",)
#: Characters a name or id may hold: anything but control characters and lone surrogates.
NAME_CHARS = st.characters(exclude_categories=SURROGATES, exclude_characters=CONTROL)
#: Characters free text may hold: anything but NUL and lone surrogates.
REASON_CHARS = st.characters(exclude_categories=SURROGATES, exclude_characters="\x00")
#: Every code point, lone surrogates and NUL included.
ANY_CHARS = st.characters(exclude_categories=())
TRICKY = st.sampled_from(
    [
        "\x00",
        "\x01",
        "\x1b",
        "\x1f",
        "\x7f",
        "\n",
        "\r",
        "\t",
        "\x85",
        "\xa0",
        "\u2028",
        "\ufeff",
        "\ud800",
        "\udfff",
        "\U0001f600",
        "\U0010ffff",
        "'",
        '"',
        "\\",
        "%",
        " ",
    ]
)


def sized(alphabet: st.SearchStrategy[str], length: int) -> st.SearchStrategy[str]:
    """Strings of exactly ``length`` code points, a repeated run of up to 8 drawn characters."""
    return st.lists(alphabet, min_size=1, max_size=8).map(
        lambda chars: ("".join(chars) * (length // len(chars) + 1))[:length]
    )


def huge(alphabet: st.SearchStrategy[str], limit: int) -> st.SearchStrategy[str]:
    """Strings beyond ``limit``: just over it, far over it, and over a megabyte."""
    lengths = st.sampled_from([limit + 1, limit + 2, 2 * limit, 70_000, 1_100_000])
    return lengths.flatmap(lambda n: sized(alphabet, n))


def valid_name(limit: int) -> st.SearchStrategy[str]:
    """Names and ids within ``limit``: short, exactly at the limit, SQL-looking, exotic."""
    return st.one_of(
        st.text(NAME_CHARS, min_size=1, max_size=min(limit, 40)),
        sized(NAME_CHARS, limit),
        st.integers(1, limit).flatmap(lambda n: sized(NAME_CHARS, n)),
        st.sampled_from([s for s in SQL if len(s) <= limit]),
        st.sampled_from(["gemini-flash", "claude-3-5-sonnet", "gpt-4o", "abc-123-def-456"]),
    )


def valid_reason() -> st.SearchStrategy[str]:
    """Free text within 4,000 code points: control characters, SQL, emoji, the exact limit."""
    limit = LIMITS["selection_reason"]
    return st.one_of(
        st.text(REASON_CHARS, max_size=60),
        sized(REASON_CHARS, limit),
        st.integers(0, limit).flatmap(lambda n: sized(REASON_CHARS, n)),
        st.sampled_from(SQL),
    )


def any_text(limit: int) -> st.SearchStrategy[str]:
    """Any string around and beyond ``limit``: NUL, controls, surrogates, huge, empty."""
    return st.one_of(
        st.text(ANY_CHARS, max_size=30),
        st.lists(st.one_of(TRICKY, ANY_CHARS), max_size=20).map("".join),
        st.integers(0, limit + 3).flatmap(lambda n: sized(st.one_of(TRICKY, ANY_CHARS), n)),
        huge(st.one_of(NAME_CHARS, TRICKY), limit),
        st.sampled_from(["", " ", "\t", "\u3000", *SQL]),
    )


# -- strategies: other values ----------------------------------------------------------------
#: Values of the wrong type, each with the type(s) it produces.
WRONG_TYPE_OPTIONS: list[tuple[tuple[type, ...], st.SearchStrategy[Any]]] = [
    ((int,), st.integers()),
    ((float,), st.floats()),
    ((bool,), st.booleans()),
    ((type(None),), st.none()),
    ((bytes,), st.binary(max_size=20)),
    ((bytearray,), st.binary(max_size=8).map(bytearray)),
    ((list,), st.lists(st.text(max_size=5), max_size=3)),
    ((dict,), st.dictionaries(st.text(max_size=5), st.integers(), max_size=3)),
    ((tuple,), st.tuples(st.text(max_size=5))),
    ((datetime,), st.datetimes()),
    ((uuid.UUID,), st.uuids()),
    ((Decimal,), st.decimals(allow_nan=False)),
    ((object,), st.just(object())),
]
WRONG_TYPES: st.SearchStrategy[Any] = st.one_of([strategy for _, strategy in WRONG_TYPE_OPTIONS])


def wrong_type_for(accepted: tuple[type, ...]) -> st.SearchStrategy[Any]:
    """Values of every type in :data:`WRONG_TYPE_OPTIONS` except the ``accepted`` ones."""
    return st.one_of(
        [
            strategy
            for produced, strategy in WRONG_TYPE_OPTIONS
            if produced != (object,) and not issubclass(produced[0], accepted)
        ]
        + [st.just(object())]
    )


FIXED_OFFSETS = st.builds(
    timezone,
    st.timedeltas(
        min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23, minutes=59)
    ),
)
ZONES = st.one_of(st.just(UTC), FIXED_OFFSETS, st.timezones())


#: The latest ``selected_at`` every zone keeps inside the accepted window (now + 1 day).
_RECENT = datetime.now().replace(microsecond=0) - timedelta(days=2)


def valid_selected_at() -> st.SearchStrategy[datetime | None]:
    """None or an aware datetime any zone can carry into UTC."""
    return st.one_of(
        st.none(),
        st.datetimes(min_value=datetime(2000, 1, 2), max_value=_RECENT, timezones=ZONES),
    )


def any_selected_at() -> st.SearchStrategy[Any]:
    """Naive, aware, at the very ends of the calendar with offsets, or not a datetime at all."""
    return st.one_of(
        valid_selected_at(),
        st.datetimes(),
        st.datetimes(timezones=FIXED_OFFSETS),
        st.sampled_from([datetime.min, datetime.max]).flatmap(
            lambda edge: FIXED_OFFSETS.map(lambda tz: edge.replace(tzinfo=tz))
        ),
        st.dates(),
        st.text(max_size=30),
        WRONG_TYPES,
    )


# -- strategies: selection_criteria ----------------------------------------------------------
CRITERIA_KEYS = st.one_of(
    st.text(REASON_CHARS, min_size=1, max_size=12).filter(lambda k: k not in NUMERIC_RULES),
    st.sampled_from(["model", "strategy", "candidates", "fallbacks", "region", SQL[0]]),
)
JSON_SCALARS: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False, allow_subnormal=False),
    st.text(REASON_CHARS, max_size=40),
    st.sampled_from(SQL),
)


def json_values(levels: int) -> st.SearchStrategy[Any]:
    """JSON values holding containers at most ``levels`` deep."""
    if levels == 0:
        return JSON_SCALARS
    inner = json_values(levels - 1)
    return st.one_of(
        JSON_SCALARS,
        st.lists(inner, max_size=3),
        st.dictionaries(CRITERIA_KEYS, inner, max_size=3),
    )


def valid_numeric(key: str) -> st.SearchStrategy[int | float]:
    """0, or a number in [1e-100, limit]: the boundaries themselves included."""
    _, high = NUMERIC_RULES[key]
    return st.one_of(
        st.just(0),
        st.just(0.0),
        st.sampled_from([TINY, high]),
        st.floats(min_value=TINY, max_value=high),
        st.integers(min_value=0, max_value=int(high)),
    )


def valid_criteria() -> st.SearchStrategy[dict[str, Any] | None]:
    """Criteria within every limit: known numeric keys in range plus free nested values."""
    known = st.lists(st.sampled_from(sorted(NUMERIC_RULES)), unique=True, max_size=4).flatmap(
        lambda keys: st.fixed_dictionaries({k: valid_numeric(k) for k in keys})
    )
    free = st.dictionaries(CRITERIA_KEYS, json_values(LIMITS["criteria_depth"] - 1), max_size=6)
    merged = st.tuples(known, free).map(lambda kf: {**kf[1], **kf[0]})
    return st.one_of(st.none(), merged).filter(lambda c: criteria_problem(c) is None)


def nested(depth: int, leaf: Any, kinds: list[bool]) -> Any:
    """``leaf`` inside ``depth`` containers (dict when the kind is True, else list)."""
    value = leaf
    for level in range(depth):
        value = {f"l{depth - level}": value} if kinds[level % len(kinds)] else [value]
    return value


def any_criteria() -> st.SearchStrategy[Any]:
    """Criteria valid or not: NaN and Infinity anywhere, deep, oversized, wrong types."""
    bad_scalar = st.one_of(
        st.floats(),  # NaN and +-Infinity included
        st.sampled_from([math.nan, math.inf, -math.inf]),
        st.binary(max_size=8),
        st.sets(st.integers(), max_size=3),
        st.datetimes(),
        st.just(object()),
        st.text(ANY_CHARS, max_size=10),  # NUL and surrogates
        st.integers(min_value=10**4299, max_value=10**4301),
    )
    keys = st.one_of(CRITERIA_KEYS, st.integers(), st.text(ANY_CHARS, max_size=8), st.none())
    deep = st.tuples(
        st.integers(7, 40),
        st.one_of(JSON_SCALARS, bad_scalar),
        st.lists(st.booleans(), min_size=1, max_size=4),
    ).map(lambda t: {"deep": nested(t[0], t[1], t[2])})
    wide = st.integers(250, 600).map(lambda n: {f"k{i}": i for i in range(n)})
    long_list = st.integers(250, 600).map(lambda n: {"items": list(range(n))})
    big = st.integers(16_300, 40_000).map(lambda n: {"blob": "x" * n})
    # Up to 32 flat strings with long keys: the size of the fast path's worst case.
    many_long = st.tuples(st.integers(16, 32), st.integers(33, 256), REASON_CHARS).map(
        lambda t: {f"{i:03d}" + t[2] * (t[1] - 3): t[2] * t[1] for i in range(t[0])}
    )
    long_key = st.integers(250, 300).map(lambda n: {"k" * n: 1})
    numeric = st.sampled_from(sorted(NUMERIC_RULES)).flatmap(
        lambda k: st.one_of(
            st.floats(),
            st.integers(),
            st.booleans(),
            st.none(),
            st.text(max_size=3),
            # around the analytics bounds, where float8 squares would overflow or underflow
            st.sampled_from(
                [0, -0.0, 5e-324, 1e-200, 1e-101, TINY, 1.0, 1e100, 10**100, 1e101, 1e200, 10**400]
            ),
        ).map(lambda v: {k: v})
    )
    sprinkled = st.dictionaries(keys, st.one_of(json_values(2), bad_scalar), max_size=5)
    return st.one_of(
        valid_criteria(),
        sprinkled,
        deep,
        wide,
        long_list,
        big,
        many_long,
        long_key,
        numeric,
        WRONG_TYPES,
    )


# -- strategies: whole builder inputs --------------------------------------------------------
VALID_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "provider_name": valid_name(LIMITS["provider_name"]),
    "model_name": valid_name(LIMITS["model_name"]),
    "selection_reason": valid_reason(),
    "correlation_id": st.one_of(
        st.none(), st.uuids(), valid_name(LIMITS["correlation_id"]).filter(str.strip)
    ),
    "causation_id": st.one_of(st.none(), st.uuids(), valid_name(LIMITS["correlation_id"])),
    "tenant_id": st.one_of(st.none(), st.just(""), valid_name(LIMITS["envelope_text"])),
    "namespace": st.one_of(st.none(), valid_name(LIMITS["envelope_text"])),
    "source": st.one_of(st.none(), valid_name(LIMITS["envelope_text"])),
    "selected_at": valid_selected_at(),
    "selection_criteria": valid_criteria(),
}
ANY_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "provider_name": st.one_of(any_text(LIMITS["provider_name"]), WRONG_TYPES),
    "model_name": st.one_of(any_text(LIMITS["model_name"]), WRONG_TYPES),
    "selection_reason": st.one_of(any_text(LIMITS["selection_reason"]), WRONG_TYPES),
    "correlation_id": st.one_of(any_text(LIMITS["correlation_id"]), WRONG_TYPES),
    "causation_id": st.one_of(any_text(LIMITS["correlation_id"]), WRONG_TYPES),
    "tenant_id": st.one_of(any_text(LIMITS["envelope_text"]), WRONG_TYPES),
    "namespace": st.one_of(any_text(LIMITS["envelope_text"]), WRONG_TYPES),
    "source": st.one_of(any_text(LIMITS["envelope_text"]), WRONG_TYPES),
    "selected_at": any_selected_at(),
    "selection_criteria": any_criteria(),
}
OPTIONAL = ("correlation_id", "causation_id", "tenant_id", "namespace", "source", "selected_at")


@st.composite
def valid_fields(draw: Callable[..., Any]) -> dict[str, Any]:
    """Builder keyword arguments that satisfy every rule (optional ones sometimes left out)."""
    fields = {}
    for name, strategy in VALID_FIELDS.items():
        if name in OPTIONAL and draw(st.booleans()):
            continue
        fields[name] = draw(strategy)
    return fields


@st.composite
def mixed_fields(draw: Callable[..., Any]) -> dict[str, Any]:
    """Valid arguments with 0-3 of them replaced by anything at all (huge, wrong type, ...)."""
    fields = draw(valid_fields())
    for name in draw(st.lists(st.sampled_from(sorted(ANY_FIELDS)), max_size=3, unique=True)):
        fields[name] = draw(ANY_FIELDS[name])
    return fields


# -- strategies: mutated envelopes ----------------------------------------------------------
OFFLINE = offline_settings()
WRONG_JSON = st.one_of(
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False, allow_subnormal=False),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
FIELDS = (
    "event_type",
    "event_id",
    "timestamp",
    "correlation_id",
    "causation_id",
    "namespace",
    "source",
    "tenant_id",
    "schema_ref",
    "payload",
)
PAYLOAD_FIELDS = (
    "provider_name",
    "model_name",
    "correlation_id",
    "selection_reason",
    "selection_criteria",
    "selected_at",
)


@st.composite
def mutated(draw: Any) -> tuple[str, bytes]:
    """A valid envelope, then one mutation: (kind, bytes)."""
    fields = draw(valid_fields())
    raw = build_provider_selection(settings=OFFLINE, **fields).value
    kind = draw(
        st.sampled_from(
            [
                "flip",
                "truncate",
                "insert",
                "extra_field",
                "extra_payload_field",
                "wrong_type",
                "wrong_payload_type",
                "drop_field",
                "non_finite",
                "deep",
                "huge_string",
                "invalid_utf8",
                "control_escape",
            ]
        )
    )
    if kind == "flip":
        data = bytearray(raw)
        for index in draw(st.lists(st.integers(0, len(raw) - 1), min_size=1, max_size=4)):
            data[index] ^= draw(st.integers(1, 255))
        return kind, bytes(data)
    if kind == "truncate":
        return kind, raw[: draw(st.integers(0, len(raw) - 1))]
    if kind == "insert":
        at = draw(st.integers(0, len(raw)))
        return kind, raw[:at] + draw(st.binary(min_size=1, max_size=20)) + raw[at:]
    doc = json.loads(raw)
    if kind == "extra_field":
        doc[draw(st.text(max_size=10).filter(lambda k: k not in FIELDS))] = draw(JSON_SCALARS)
    elif kind == "extra_payload_field":
        name = draw(st.text(max_size=10).filter(lambda k: k not in PAYLOAD_FIELDS))
        doc["payload"][name] = draw(JSON_SCALARS)
    elif kind == "wrong_type":
        doc[draw(st.sampled_from(FIELDS))] = draw(WRONG_JSON)
    elif kind == "wrong_payload_type":
        name = draw(st.sampled_from(PAYLOAD_FIELDS))
        doc["payload"][name] = draw(
            WRONG_JSON.filter(lambda v: not (name == "selection_criteria" and isinstance(v, dict)))
        )
    elif kind == "drop_field":
        target = draw(st.sampled_from([doc, doc["payload"]]))
        target.pop(draw(st.sampled_from(sorted(target))))
    elif kind == "non_finite":
        token = draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e999"]))
        doc["payload"]["selection_criteria"]["__x"] = "__TOKEN__"
        return kind, json.dumps(doc).replace('"__TOKEN__"', token).encode()
    elif kind == "deep":
        depth = draw(st.integers(LIMITS["criteria_depth"] + 1, 5000))
        doc["payload"]["selection_criteria"]["deep"] = "__TOKEN__"
        return kind, json.dumps(doc).replace('"__TOKEN__"', "[" * depth + "]" * depth).encode()
    elif kind == "huge_string":
        name = draw(st.sampled_from(PAYLOAD_FIELDS[:4]))
        doc["payload"][name] = draw(
            st.sampled_from([LIMITS["provider_name"] + 1, 5_000, 70_000])
        ) * draw(st.sampled_from(["x", "é", "\U0001f600"]))
    elif kind == "invalid_utf8":
        name = draw(st.sampled_from(PAYLOAD_FIELDS[:4]))
        doc["payload"][name] = "__TOKEN__"
        bad = draw(
            st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80"])
        )
        return kind, json.dumps(doc).encode().replace(b"__TOKEN__", b"a" + bad + b"b")
    elif kind == "control_escape":
        name = draw(st.sampled_from(["provider_name", "model_name", "correlation_id"]))
        char = draw(st.sampled_from(["\\u0000", "\\u0001", "\\u001f", "\\u007f", "\\n", "\\t"]))
        doc["payload"][name] = "__TOKEN__"
        return kind, json.dumps(doc).replace("__TOKEN__", "a" + char + "b").encode()
    return kind, json.dumps(doc, ensure_ascii=draw(st.booleans())).encode()


MUST_REFUSE = {
    "truncate",
    "extra_field",
    "extra_payload_field",
    "wrong_type",
    "wrong_payload_type",
    "non_finite",
    "invalid_utf8",
    "control_escape",
}
