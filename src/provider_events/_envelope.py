"""Building events: payload wrapped in the envelope, validated, keyed and ready for the wire."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec

from ._catalog import PROVIDER_SELECTED_V1, EventSpec
from ._config import Settings
from ._errors import InvalidEventError, PartitionKeyError
from ._ids import format_timestamp, new_correlation_id, new_event_id, utc_now
from ._models import OnexEnvelopeV1, ProviderSelectedPayloadV1, reject_non_finite

__all__ = ["OutgoingEvent", "build_provider_selection"]

CONTENT_TYPE = b"application/json"
_encoder = msgspec.json.Encoder()
_validating_decoder = msgspec.json.Decoder(OnexEnvelopeV1[ProviderSelectedPayloadV1])


@dataclass(slots=True)
class OutgoingEvent:
    """One validated event, serialised: what the producer sends and the outbox stores."""

    event_id: str
    event_type: str
    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]
    provider_name: str = ""
    model_name: str = ""


_CONSTANT_HEADERS: dict[str, tuple[bytes, bytes]] = {}


def _headers(
    event_id: str, timestamp: str, tenant_id: str, ce_source: str, spec: EventSpec
) -> list[tuple[str, bytes]]:
    constant = _CONSTANT_HEADERS.get(spec.event_type)
    if constant is None:
        constant = _CONSTANT_HEADERS[spec.event_type] = (
            spec.event_type.encode(),
            spec.schema_ref.encode(),
        )
    event_type, schema_ref = constant
    eid = event_id.encode()
    return [
        ("content-type", CONTENT_TYPE),
        ("event_type", event_type),
        ("event_id", eid),
        ("schema_ref", schema_ref),
        ("tenant_id", tenant_id.encode()),
        # CloudEvents Kafka protocol binding (binary mode) for consumers that speak it.
        ("ce_specversion", b"1.0"),
        ("ce_type", event_type),
        ("ce_id", eid),
        ("ce_source", ce_source.encode()),
        ("ce_time", timestamp.encode()),
    ]


def _text_arg(name: str, value: Any, *, required: bool = True) -> str | None:
    if value is None:
        if required:
            raise InvalidEventError(f"{name} is required")
        return None
    if isinstance(value, uuid.UUID):
        return str(value)
    if not isinstance(value, str):
        raise InvalidEventError(f"{name} must be a string, got {type(value).__name__}")
    return value


def _as_utc(moment: Any) -> datetime:
    """``selected_at`` in UTC; refused unless it is an aware datetime that UTC can represent."""
    if isinstance(moment, datetime):
        try:
            if moment.utcoffset() is not None:
                return moment.astimezone(UTC)
        except (OverflowError, ValueError) as exc:  # before year 1 or after 9999 in UTC
            raise InvalidEventError(f"selected_at cannot be converted to UTC: {exc}") from None
    raise InvalidEventError("selected_at must be a timezone-aware datetime")


def build_provider_selection(
    *,
    provider_name: str,
    model_name: str,
    selection_reason: str,
    correlation_id: str | uuid.UUID | None = None,
    settings: Settings,
    selection_criteria: dict[str, Any] | None = None,
    causation_id: str | uuid.UUID | None = None,
    tenant_id: str | None = None,
    namespace: str | None = None,
    source: str | None = None,
    selected_at: datetime | None = None,
) -> OutgoingEvent:
    """Build, validate and serialise one ``omninode.agent.provider.selected.v1`` event.

    Raises :class:`InvalidEventError` (or its :class:`PartitionKeyError`) with the reason.
    """
    spec = PROVIDER_SELECTED_V1
    cid = _text_arg("correlation_id", correlation_id, required=False)
    if cid is None:
        cid = new_correlation_id()
    elif not cid.strip():
        raise PartitionKeyError(
            "correlation_id is the partition key of provider-selection events and must not be "
            "empty; pass None to have one generated"
        )
    if selection_criteria is None:
        selection_criteria = {}
    if not isinstance(selection_criteria, dict):
        raise InvalidEventError(
            f"selection_criteria must be an object (dict), got {type(selection_criteria).__name__}"
        )
    # msgspec would quietly turn bytes, datetimes, UUIDs or Decimals into text: refuse them.
    for name, text in (
        ("provider_name", provider_name),
        ("model_name", model_name),
        ("selection_reason", selection_reason),
    ):
        if not isinstance(text, str):
            raise InvalidEventError(f"{name} must be a string, got {type(text).__name__}")
    for name, optional in (("tenant_id", tenant_id), ("namespace", namespace), ("source", source)):
        if optional is not None and not isinstance(optional, str):
            raise InvalidEventError(f"{name} must be a string, got {type(optional).__name__}")
    now = utc_now()
    selected_at = now if selected_at is None else _as_utc(selected_at)
    event_id = new_event_id()
    tenant = tenant_id or settings.tenant_id
    namespace = namespace or settings.namespace
    source = source or settings.source
    # Encode a plain document, then decode it with the validating decoder: what is checked
    # is exactly the bytes that go on the wire, and each rule runs once.
    document = {
        "event_type": spec.event_type,
        "event_id": event_id,
        "timestamp": now,
        "correlation_id": cid,
        "causation_id": _text_arg("causation_id", causation_id, required=False),
        "namespace": namespace,
        "source": source,
        "tenant_id": tenant,
        "schema_ref": spec.schema_ref,
        "payload": {
            "provider_name": provider_name,
            "model_name": model_name,
            "correlation_id": cid,
            "selection_reason": selection_reason,
            "selection_criteria": selection_criteria,
            "selected_at": selected_at,
        },
    }
    try:
        # JSON has no NaN or Infinity (msgspec would write null): refuse them before encoding.
        reject_non_finite(selection_criteria)
        value = _encoder.encode(document)
        envelope = _validating_decoder.decode(value)
    except (TypeError, ValueError, msgspec.EncodeError) as exc:
        raise InvalidEventError(str(exc)) from None
    except msgspec.ValidationError as exc:  # pragma: no cover - ValidationError is a ValueError
        raise InvalidEventError(str(exc)) from None
    payload = envelope.payload
    return OutgoingEvent(
        event_id=event_id,
        event_type=spec.event_type,
        topic=settings.topic or spec.topic,
        key=cid.encode("utf-8"),
        value=value,
        headers=_headers(event_id, format_timestamp(now), tenant, f"{namespace}/{source}", spec),
        provider_name=payload.provider_name,
        model_name=payload.model_name,
    )
