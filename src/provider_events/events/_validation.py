"""Envelope and payload validation with readable errors, shared by publisher and consumer.

The publisher encodes an envelope and decodes its own bytes through :func:`decode_envelope`
before sending, so what goes on the wire is exactly what the consumer will accept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec

from provider_events.errors import InvalidEventError, PartitionKeyError
from provider_events.events._catalog import CATALOG, EventSpec
from provider_events.events._models import (
    EARLIEST_TIMESTAMP,
    FUTURE_TOLERANCE,
    LIMITS,
    NOT_NORMAL,
    OnexEnvelopeV1,
)
from provider_events.events._partition_key_policy import get_partition_key

__all__ = [
    "EARLIEST_TIMESTAMP",
    "FUTURE_TOLERANCE",
    "ValidationResult",
    "check_bounds",
    "decode_envelope",
    "validate_event",
    "validate_payload",
]


class _Head(msgspec.Struct):
    event_type: str


_head_decoder = msgspec.json.Decoder(_Head)
_decoders: dict[str, msgspec.json.Decoder[OnexEnvelopeV1[Any]]] = {
    name: msgspec.json.Decoder(OnexEnvelopeV1[spec.payload_type])  # type: ignore[name-defined]  # runtime generic: the payload type is a value
    for name, spec in CATALOG.items()
}


def _undecodable(exc: UnicodeDecodeError | RecursionError) -> InvalidEventError:
    """msgspec raises these (not ``DecodeError``) for bad UTF-8 inside a string and for
    nesting deeper than the interpreter's recursion limit."""
    if isinstance(exc, UnicodeDecodeError):
        return InvalidEventError(f"not UTF-8: {exc}", reason="bad_utf8")
    return InvalidEventError("JSON nests too deeply to decode", reason="schema")


def _not_json(exc: msgspec.DecodeError, data: bytes) -> InvalidEventError:
    """``bad_utf8`` when the bytes are not UTF-8 (also inside a JSON string), else ``bad_json``."""
    reason = "bad_utf8" if "utf-8" in str(exc).lower() else "bad_json"
    if reason == "bad_json":
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            reason = "bad_utf8"
    return InvalidEventError(f"not a JSON envelope: {exc}", reason=reason)


def _spec_of(data: bytes) -> EventSpec:
    try:
        head = _head_decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise InvalidEventError(f"envelope: {exc}", reason="schema") from None
    except (UnicodeDecodeError, RecursionError) as exc:
        raise _undecodable(exc) from None
    except msgspec.DecodeError as exc:
        raise _not_json(exc, data) from None
    spec = CATALOG.get(head.event_type)
    if spec is None:
        raise InvalidEventError(
            f"unknown event_type {head.event_type[:200]!r}", reason="unknown_event_type"
        )
    return spec


_PREFIX = b'{"event_type":"'


def _quick_spec(raw: bytes) -> EventSpec | None:
    """The catalog entry named by a compact envelope's leading ``event_type``, parsing nothing.

    Envelopes written by this package (and most JSON writers) start with that field; the full
    decode then confirms it, so a wrong guess only costs the fallback. Saves one parse per
    message on the consumer's hot path.
    """
    if not raw.startswith(_PREFIX):
        return None
    end = raw.find(b'"', len(_PREFIX))
    if end < 0:
        return None
    return CATALOG.get(raw[len(_PREFIX) : end].decode("ascii", "replace"))


def _reencoded(raw: bytes) -> bytes:
    """The same JSON with a leading space, so the quick look steps aside (no recursion loop)."""
    return b" " + raw


def _unknown(envelope: OnexEnvelopeV1[Any]) -> OnexEnvelopeV1[Any]:
    raise InvalidEventError(
        f"unknown event_type {envelope.event_type[:200]!r}", reason="unknown_event_type"
    )


def decode_envelope(data: bytes | bytearray | memoryview) -> OnexEnvelopeV1[Any]:
    """Decode and fully validate one envelope from JSON bytes.

    Raises :class:`InvalidEventError` whose ``reason`` says why (bad UTF-8 or JSON, unknown
    ``event_type``, schema violation, oversized message, unusable partition key).
    """
    raw = bytes(data)
    if len(raw) > LIMITS["message_bytes"]:
        raise InvalidEventError(
            f"message is {len(raw)} bytes, limit {LIMITS['message_bytes']}", reason="too_large"
        )
    spec = _quick_spec(raw) or _spec_of(raw)
    try:
        envelope: OnexEnvelopeV1[Any] = _decoders[spec.event_type].decode(raw)
    except msgspec.ValidationError as exc:
        reason = "non_normal_number" if NOT_NORMAL in str(exc) else "schema"
        raise InvalidEventError(str(exc), reason=reason) from None
    except (UnicodeDecodeError, RecursionError) as exc:
        raise _undecodable(exc) from None
    except msgspec.DecodeError as exc:
        raise _not_json(exc, raw) from None
    if envelope.event_type != spec.event_type:  # the quick look was fooled (escapes, spacing)
        return decode_envelope(_reencoded(raw)) if raw.startswith(_PREFIX) else _unknown(envelope)
    if envelope.schema_ref != spec.schema_ref:
        raise InvalidEventError(
            f"schema_ref {envelope.schema_ref!r} does not match {spec.schema_ref!r}",
            reason="schema",
        )
    get_partition_key(envelope)
    check_bounds(envelope)
    if _MAYBE_UNDERFLOW.search(raw) is not None:
        _reject_underflow(raw)
    return envelope


def check_bounds(envelope: OnexEnvelopeV1[Any], now: datetime | None = None) -> None:
    """Refuse timestamps outside [:data:`EARLIEST_TIMESTAMP`, now + :data:`FUTURE_TOLERANCE`]
    (reason ``timestamp_out_of_range``)."""
    latest = (now or datetime.now(UTC)) + FUTURE_TOLERANCE
    moments = [("timestamp", envelope.timestamp)]
    selected = getattr(envelope.payload, "selected_at", None)
    if isinstance(selected, datetime):
        moments.append(("payload.selected_at", selected))
    for name, moment in moments:
        if not EARLIEST_TIMESTAMP <= moment <= latest:
            raise InvalidEventError(
                f"{name} {moment.isoformat()} is outside the accepted window "
                f"[{EARLIEST_TIMESTAMP:%Y-%m-%d}, now + {FUTURE_TOLERANCE.days} day]",
                reason="timestamp_out_of_range",
            )


#: A literal that may underflow to 0.0: an exponent of -100 or below, or a long run of zeros.
_MAYBE_UNDERFLOW = re.compile(rb"[eE]-0*[1-9][0-9]{2}|0{300}")
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_JSON_NUMBER = re.compile(rb"-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


def _reject_underflow(raw: bytes) -> None:
    """Refuse a number literal with a non-zero digit that parses to 0.0 (``1e-400``): like a
    subnormal, it cannot be stored as written (reason ``non_normal_number``)."""
    for token in _JSON_NUMBER.findall(_JSON_STRING.sub(b'""', raw)):
        mantissa = re.split(rb"[eE]", token)[0]
        if float(token) == 0.0 and mantissa.strip(b"-0.") != b"":
            raise InvalidEventError(
                f"number {token[:40].decode()} underflows to 0.0; {NOT_NORMAL}",
                reason="non_normal_number",
            )


@dataclass(frozen=True, slots=True)
class ValidationResult:
    """Outcome of :func:`validate_event`: ``is_valid`` and human-readable ``errors``."""

    is_valid: bool
    errors: list[str] = field(default_factory=list)
    reason: str | None = None

    def __bool__(self) -> bool:
        return self.is_valid


def validate_event(event: Any) -> ValidationResult:
    """Validate an envelope given as a dict, an ``OnexEnvelopeV1`` or JSON bytes."""
    try:
        data = event if isinstance(event, bytes | bytearray) else msgspec.json.encode(event)
        decode_envelope(data)
    except PartitionKeyError as exc:
        return ValidationResult(False, [str(exc)], exc.reason)
    except InvalidEventError as exc:
        return ValidationResult(False, [str(exc)], exc.reason)
    except (TypeError, msgspec.EncodeError) as exc:
        return ValidationResult(False, [f"not serialisable as JSON: {exc}"], "schema")
    return ValidationResult(True)


def validate_payload(event_type: str, payload: Any) -> ValidationResult:
    """Validate only a payload (dict) against the catalogued model of ``event_type``."""
    spec = CATALOG.get(event_type)
    if spec is None:
        return ValidationResult(False, [f"unknown event_type {event_type!r}"], "unknown_event_type")
    try:
        msgspec.json.decode(msgspec.json.encode(payload), type=spec.payload_type)
    except (msgspec.ValidationError, msgspec.EncodeError, TypeError) as exc:
        return ValidationResult(False, [str(exc)], "schema")
    return ValidationResult(True)
