"""Envelope and payload validation with readable errors, shared by publisher and consumer.

The publisher encodes an envelope and decodes its own bytes through :func:`decode_envelope`
before sending, so what goes on the wire is exactly what the consumer will accept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from provider_events.errors import InvalidEventError, PartitionKeyError
from provider_events.events._catalog import CATALOG, EventSpec
from provider_events.events._models import LIMITS, OnexEnvelopeV1
from provider_events.events._partition_key_policy import get_partition_key

__all__ = ["ValidationResult", "decode_envelope", "validate_event", "validate_payload"]


class _Head(msgspec.Struct):
    event_type: str


_head_decoder = msgspec.json.Decoder(_Head)
_decoders: dict[str, msgspec.json.Decoder[Any]] = {
    name: msgspec.json.Decoder(OnexEnvelopeV1[spec.payload_type])  # type: ignore[name-defined]
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
        envelope = _decoders[spec.event_type].decode(raw)
    except msgspec.ValidationError as exc:
        raise InvalidEventError(str(exc), reason="schema") from None
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
    return envelope


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
