"""Building events: payload wrapped in the envelope, validated, keyed and ready for the wire."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec

from provider_events.errors import InvalidEventError, PartitionKeyError
from provider_events.events._catalog import PROVIDER_COMPLETED_V1, PROVIDER_SELECTED_V1
from provider_events.events._fast import _HEADER_TEMPLATES as _HEADER_TEMPLATES
from provider_events.events._fast import _ORIGINS as _ORIGINS
from provider_events.events._fast import (
    EVENT_ID,
    EVENT_TYPE,
    KEY,
    MODEL,
    PROVIDER,
    TOPIC,
    VALUE,
    EventParts,
    _Envelope,
    _Payload,
    header_dict,
    header_list,
)
from provider_events.events._fast import origin as _origin
from provider_events.events._ids import _pool as _event_id_pool
from provider_events.events._ids import new_correlation_id, new_event_id
from provider_events.events._models import (
    EARLIEST_TIMESTAMP,
    FUTURE_TOLERANCE,
    LIMITS,
    OnexEnvelopeV1,
    ProviderCompletedPayloadV1,
    ProviderSelectedPayloadV1,
    plainly_valid_criteria,
    reject_non_finite,
)
from provider_events.settings import Settings

__all__ = [
    "EventParts",
    "OutgoingEvent",
    "build_provider_completion",
    "build_provider_selection",
    "check_topic",
    "event_from_parts",
    "header_dict",
    "header_list",
    "outcome_event_id",
    "provider_selection_parts",
    "wire_size",
]

_encoder = msgspec.json.Encoder()
_encode = _encoder.encode
_validating_decoder = msgspec.json.Decoder(OnexEnvelopeV1[ProviderSelectedPayloadV1])
_now = datetime.now
_pooled_event_id = _event_id_pool.pop  # IndexError when empty: new_event_id refills it


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


def event_from_parts(parts: EventParts) -> OutgoingEvent:
    """The ``OutgoingEvent`` of a compact event."""
    return OutgoingEvent(
        parts[EVENT_ID],
        parts[EVENT_TYPE],
        parts[TOPIC],
        parts[KEY],
        parts[VALUE],
        header_list(parts),
        parts[PROVIDER],
        parts[MODEL],
    )


#: Per event type: the bytes of its header names and fixed values (see :func:`wire_size`).
_HEADER_FIXED: dict[str, int] = {
    event_type: sum(len(name) + len(value) for name, value in template.items())
    for event_type, template in _HEADER_TEMPLATES.items()
}
#: Bytes librdkafka adds to a record beyond its key, value and headers (a generous bound of
#: the v2 record and batch framing), counted against ``message.max.bytes``.
RECORD_OVERHEAD = 128
_TOPIC_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
_valid_topics: set[str] = set()


def check_topic(topic: str) -> str:
    """``topic`` if Kafka accepts it as a topic name (``[A-Za-z0-9._-]``, 1..249 characters,
    not ``.`` or ``..``); else :class:`InvalidEventError` (reason ``topic``)."""
    if topic in _valid_topics:
        return topic
    if (
        not isinstance(topic, str)
        or not 0 < len(topic) <= 249
        or topic in (".", "..")
        or not set(topic) <= _TOPIC_CHARS
    ):
        raise InvalidEventError(
            f"invalid Kafka topic name {topic!r}: use 1 to 249 of A-Z a-z 0-9 . _ - "
            "(and not '.' or '..')",
            reason="topic",
        )
    if len(_valid_topics) < 64:
        _valid_topics.add(topic)
    return topic


def wire_size(parts: EventParts) -> int:
    """The bytes an event counts against ``message.max.bytes``: key, value, headers and
    :data:`RECORD_OVERHEAD`."""
    return (
        len(parts[3])
        + len(parts[4])
        + _HEADER_FIXED[parts[1]]
        + 2 * len(parts[0])
        + len(parts[5])
        + len(parts[6])
        + len(parts[7])
        + RECORD_OVERHEAD
    )


def _check_size(parts: EventParts, limit: int) -> EventParts:
    size = wire_size(parts)
    if size > limit:
        raise InvalidEventError(
            f"event is {size} bytes on the wire, over the producer's message.max.bytes "
            f"({limit}, KAFKA_MESSAGE_MAX_BYTES)",
            reason="too_large",
        )
    return parts


_PROVIDER_MAX = LIMITS["provider_name"]
_MODEL_MAX = LIMITS["model_name"]
_ID_MAX = LIMITS["correlation_id"]
_REASON_MAX = LIMITS["selection_reason"]
_TEXT_MAX = LIMITS["envelope_text"]


#: The builder's shortcut (tests switch it off to compare with the full validation): when
#: every text field is a plain ``str`` within its length limit, with the names and ids
#: printable (so no control character and no lone surrogate) and the reason without NUL, and
#: the criteria are plainly valid (:func:`plainly_valid_criteria`), the models' rules
#: certainly accept them and JSON returns them unchanged, so the validating decoder could only
#: say yes and is skipped. Anything else takes the full validation, which decides and words
#: the error.
_shortcut = True
_EVENT_TYPE = PROVIDER_SELECTED_V1.event_type
_SCHEMA_REF = PROVIDER_SELECTED_V1.schema_ref
_TOPIC = PROVIDER_SELECTED_V1.topic


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


def _required_text(name: str, value: Any) -> str:
    """:func:`_text_arg` of a required value: a ``str`` or an :class:`InvalidEventError`."""
    text = _text_arg(name, value)
    if text is None:  # unreachable: a required None raised above
        raise InvalidEventError(f"{name} is required")
    return text


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
    return event_from_parts(
        provider_selection_parts(
            settings=settings,
            provider_name=provider_name,
            model_name=model_name,
            selection_reason=selection_reason,
            correlation_id=correlation_id,
            selection_criteria=selection_criteria,
            causation_id=causation_id,
            tenant_id=tenant_id,
            namespace=namespace,
            source=source,
            selected_at=selected_at,
        )
    )


def provider_selection_parts(
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
) -> EventParts:
    """:func:`build_provider_selection` returning the compact form (see :data:`EventParts`)."""
    if type(correlation_id) is str:
        cid = correlation_id
    elif correlation_id is None:
        cid = new_correlation_id()
    else:
        cid = _required_text("correlation_id", correlation_id)
    if not cid.strip():
        raise PartitionKeyError(
            "correlation_id is the partition key of provider-selection events and must "
            "not be empty; pass None to have one generated"
        )
    if selection_criteria is None:
        selection_criteria = {}
    elif not isinstance(selection_criteria, dict):
        raise InvalidEventError(
            f"selection_criteria must be an object (dict), got {type(selection_criteria).__name__}"
        )
    # msgspec would quietly turn bytes, datetimes, UUIDs or Decimals into text: refuse them.
    if not (
        type(provider_name) is str and type(model_name) is str and type(selection_reason) is str
    ):
        for name, text in (
            ("provider_name", provider_name),
            ("model_name", model_name),
            ("selection_reason", selection_reason),
        ):
            if not isinstance(text, str):
                raise InvalidEventError(f"{name} must be a string, got {type(text).__name__}")
    if not (tenant_id is None and namespace is None and source is None):
        for name, optional in (
            ("tenant_id", tenant_id),
            ("namespace", namespace),
            ("source", source),
        ):
            if optional is not None and not isinstance(optional, str):
                raise InvalidEventError(f"{name} must be a string, got {type(optional).__name__}")
    now = _now(UTC)
    selected_at = now if selected_at is None else _as_utc(selected_at)
    if not EARLIEST_TIMESTAMP <= selected_at <= now + FUTURE_TOLERANCE:
        raise InvalidEventError(
            f"selected_at {selected_at.isoformat()} is outside the accepted window "
            f"[{EARLIEST_TIMESTAMP:%Y-%m-%d}, now + {FUTURE_TOLERANCE.days} day]",
            reason="timestamp_out_of_range",
        )
    try:
        event_id = _pooled_event_id()
    except IndexError:
        event_id = new_event_id()
    tenant = tenant_id or settings.tenant_id
    namespace = namespace or settings.namespace
    source = source or settings.source
    causation = None if causation_id is None else _text_arg("causation_id", causation_id)
    document = _Envelope(
        _EVENT_TYPE,
        event_id,
        now,
        cid,
        causation,
        namespace,
        source,
        tenant,
        _SCHEMA_REF,
        _Payload(provider_name, model_name, cid, selection_reason, selection_criteria, selected_at),
    )
    try:
        if (
            _shortcut
            # _plainly_valid inlined (it runs per event): each text field a plain str within
            # its limit, names printable, the reason without NUL; see its docstring.
            and type(provider_name) is str
            and 0 < len(provider_name) <= _PROVIDER_MAX
            and provider_name.isprintable()
            and type(model_name) is str
            and 0 < len(model_name) <= _MODEL_MAX
            and model_name.isprintable()
            and type(cid) is str
            and len(cid) <= _ID_MAX
            and cid.isprintable()
            and (
                causation is None
                or (
                    type(causation) is str
                    and 0 < len(causation) <= _ID_MAX
                    and causation.isprintable()
                )
            )
            and type(selection_reason) is str
            and len(selection_reason) <= _REASON_MAX
            and "\x00" not in selection_reason
            and type(tenant) is str
            and 0 < len(tenant) <= _TEXT_MAX
            and tenant.isprintable()
            and type(namespace) is str
            and 0 < len(namespace) <= _TEXT_MAX
            and namespace.isprintable()
            and type(source) is str
            and 0 < len(source) <= _TEXT_MAX
            and source.isprintable()
            and plainly_valid_criteria(selection_criteria)
        ):
            # Every value is of a kind the rules certainly accept, unchanged by JSON:
            # decoding the bytes again could only say yes.
            value = _encode(document)
        else:
            # Anything else is decided by the full validation of exactly the bytes that go on
            # the wire: encode, then decode with the validating decoder (each rule runs once).
            # JSON has no NaN or Infinity (msgspec would write null): refuse them first.
            reject_non_finite(selection_criteria)
            value = _encode(document)
            envelope = _validating_decoder.decode(value)
            provider_name = envelope.payload.provider_name
            model_name = envelope.payload.model_name
    except (TypeError, ValueError, msgspec.EncodeError) as exc:
        raise InvalidEventError(str(exc)) from None
    except msgspec.ValidationError as exc:  # pragma: no cover - ValidationError is a ValueError
        raise InvalidEventError(str(exc)) from None
    origin = _ORIGINS.get((tenant, namespace, source)) or _origin(tenant, namespace, source)
    # msgspec writes the time as '"<RFC 3339>Z"' and leaves a zero fraction out; the ce_time
    # header always has six digits (as format_timestamp writes them).
    when = _encode(now)
    parts = (
        event_id,
        _EVENT_TYPE,
        _TOPIC if settings.topic is None else check_topic(settings.topic),
        cid.encode(),
        value,
        when[1:-1] if len(when) == 29 else when[1:-2] + b".000000Z",
        origin[0],
        origin[1],
        provider_name,
        model_name,
    )
    return _check_size(parts, settings.kafka_message_max_bytes)


# -- the measured outcome (omninode.agent.provider.completed.v1) -------------------------------
_completed_decoder = msgspec.json.Decoder(OnexEnvelopeV1[ProviderCompletedPayloadV1])


def outcome_event_id(outcome_id: uuid.UUID) -> str:
    """The envelope ``event_id`` of an outcome: a version-4-shaped UUID derived from its id.

    Deterministic, so the same response imported twice (a lost state file, a second machine
    reading a synced folder) is the same event end to end, deduplicated by every store.
    """
    digest = hashlib.sha256(b"provider-events/outcome/" + outcome_id.bytes).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def build_provider_completion(
    payload: ProviderCompletedPayloadV1,
    *,
    settings: Settings,
    tenant_id: str | None = None,
    source: str | None = None,
) -> OutgoingEvent:
    """Wrap, validate and serialise one ``omninode.agent.provider.completed.v1`` event.

    The bytes are decoded again by the validating decoder, so what goes on the wire is what
    the consumer accepts. Raises :class:`InvalidEventError` with the reason.
    """
    if not isinstance(payload, ProviderCompletedPayloadV1):
        raise InvalidEventError("payload must be a ProviderCompletedPayloadV1")
    if not payload.correlation_id.strip():
        raise PartitionKeyError(
            "correlation_id is the partition key of provider events and must not be empty"
        )
    spec = PROVIDER_COMPLETED_V1
    now = _now(UTC)
    tenant = tenant_id or settings.tenant_id
    source = source or settings.source
    document = _Envelope(
        spec.event_type,
        outcome_event_id(payload.outcome_id),
        now,
        payload.correlation_id,
        None,
        settings.namespace,
        source,
        tenant,
        spec.schema_ref,
        payload,
    )
    try:
        value = _encode(document)
        _completed_decoder.decode(value)
    except (TypeError, ValueError, msgspec.EncodeError) as exc:
        raise InvalidEventError(str(exc)) from None
    when = _encode(now)
    parts: EventParts = (
        document.event_id,
        spec.event_type,
        settings.topic or spec.topic,
        payload.correlation_id.encode(),
        value,
        when[1:-1] if len(when) == 29 else when[1:-2] + b".000000Z",
        *_origin(tenant, settings.namespace, source),
        payload.provider_name,
        payload.model_name,
    )
    return event_from_parts(_check_size(parts, settings.kafka_message_max_bytes))
