"""Models, ids and limits: what the envelope accepts and refuses, without any service."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from provider_events import InvalidEventError, decode_envelope, load_settings
from provider_events.events._envelope import build_provider_selection
from provider_events.events._ids import format_timestamp, uuid7
from provider_events.events._models import LIMITS


@pytest.fixture
def settings(tmp_path):
    return load_settings(environ={"HOME": str(tmp_path)}, dotenv=tmp_path / "none")


def build(settings, **overrides):
    fields = dict(
        provider_name="claude",
        model_name="m",
        correlation_id="c",
        selection_reason="r",
        selection_criteria={},
    )
    fields.update(overrides)
    return build_provider_selection(settings=settings, **fields)


def test_uuid7_layout_and_order() -> None:
    """uuid7 sets version 7 and the RFC variant, and sorts by time."""
    a, b = uuid7(1_000), uuid7(2_000)
    assert a.version == 7 and a.variant == uuid.RFC_4122
    assert a < b
    assert int.from_bytes(a.bytes[:6], "big") == 1_000


def test_timestamps_are_utc_z() -> None:
    """Timestamps are printed in UTC with a Z, whatever zone they came in."""
    moment = datetime(2025, 11, 13, 16, 30, tzinfo=timezone(timedelta(hours=2)))
    assert format_timestamp(moment) == "2025-11-13T14:30:00.000000Z"
    with pytest.raises(ValueError, match="timezone-aware"):
        format_timestamp(datetime(2025, 1, 1))


def test_selected_at_in_another_zone_is_normalised(settings) -> None:
    """A caller's selected_at with an offset is stored in UTC."""
    moment = datetime(2025, 11, 13, 16, 30, tzinfo=timezone(timedelta(hours=2)))
    env = json.loads(build(settings, selected_at=moment).value)
    assert env["payload"]["selected_at"] == "2025-11-13T14:30:00Z"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"provider_name": ""}, "provider_name"),
        ({"provider_name": "x" * (LIMITS["provider_name"] + 1)}, "provider_name"),
        ({"model_name": "a\nb"}, "model_name"),
        ({"correlation_id": "c" * (LIMITS["correlation_id"] + 1)}, "correlation_id"),
        ({"selection_reason": "nul\x00byte"}, "selection_reason"),
        ({"selection_reason": "r" * (LIMITS["selection_reason"] + 1)}, "selection_reason"),
        (
            {
                "selection_criteria": {
                    "deep": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": 1}}}}}}}}
                }
            },
            "deeper",
        ),
        ({"selection_criteria": {"blob": "x" * (LIMITS["criteria_bytes"] + 1)}}, "larger"),
        ({"selection_criteria": {"latency_ms": float("inf")}}, "finite"),
        ({"selection_criteria": {"quality_score": True}}, "number"),
        ({"selected_at": datetime(2025, 1, 1)}, "timezone"),
        ({"tenant_id": "a b\tc"}, "tenant_id"),
        ({"causation_id": 5}, "causation_id"),
    ],
)
def test_invalid_input_is_refused_with_reason(settings, overrides, message) -> None:
    """Every enforced limit gives an InvalidEventError naming the problem."""
    with pytest.raises(InvalidEventError, match=message):
        build(settings, **overrides)


def test_opaque_correlation_ids_are_accepted(settings) -> None:
    """The guide's non-UUID ids (abc-123-def-456) are valid correlation ids."""
    event = build(settings, correlation_id="abc-123-def-456")
    assert event.key == b"abc-123-def-456"
    assert build(settings, correlation_id=uuid.UUID(int=5)).key == str(uuid.UUID(int=5)).encode()


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe garbage", "bad_utf8"),
        (b"{not json", "bad_json"),
        (b"[]", "schema"),
        (b'{"event_type": "nope.v1"}', "unknown_event_type"),
        (b'{"event_type": "omninode.agent.provider.selected.v1"}', "schema"),
        (b" " * (LIMITS["message_bytes"] + 1), "too_large"),
    ],
)
def test_decode_envelope_reasons(raw: bytes, reason: str) -> None:
    """Undecodable messages get a stable reason code (used by the DLQ)."""
    with pytest.raises(InvalidEventError) as info:
        decode_envelope(raw)
    assert info.value.reason == reason


def test_decode_rejects_mismatched_ids_and_schema_ref(settings) -> None:
    """Envelope/payload correlation mismatch, non-v4 event ids and wrong schema_ref are refused."""
    env = json.loads(build(settings).value)
    for bad in (
        dict(env, correlation_id="other"),
        dict(env, event_id=str(uuid7())),
        dict(env, schema_ref="registry://other/v9"),
        dict(env, extra_field=1),
    ):
        with pytest.raises(InvalidEventError):
            decode_envelope(json.dumps(bad).encode())
    assert decode_envelope(build(settings).value).payload.provider_name == "claude"


def test_now_is_recent(settings) -> None:
    """Built events carry the current time."""
    env = decode_envelope(build(settings).value)
    assert abs((datetime.now(UTC) - env.timestamp).total_seconds()) < 5


def test_escaped_event_type_still_decodes(settings) -> None:
    """An envelope whose event_type uses JSON escapes decodes like the plain one."""
    value = build(settings).value.replace(
        b'selected.v1","event_id', b'selected.v\\u0031","event_id', 1
    )
    assert b"\\u0031" in value
    assert decode_envelope(value).event_type == "omninode.agent.provider.selected.v1"
    with pytest.raises(InvalidEventError) as info:
        decode_envelope(value.replace(b"v\\u0031", b"v\\u0032", 1))
    assert info.value.reason == "unknown_event_type"
