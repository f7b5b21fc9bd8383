"""The build side of the publish fast path, fenced here: what ``make bench`` shows pays.

``Publisher.publish_many`` keeps a large batch compact while it is in flight, and the builder
encodes without re-validating what is plainly valid. The tricks, each kept because it is
measured (``python -m benchmarks --only publish``; docs/benchmarks.md) and each pinned to the
plain construction by a test:

* :data:`EventParts`: an event as one flat tuple of str and bytes instead of an
  ``OutgoingEvent`` and its header list (two objects the cyclic GC walks at every full
  collection while 100k events wait for their acknowledgements);
  ``tests/unit/test_publish_fast_paths.py`` checks it is the built event.
* :func:`header_dict`: the headers made only while a message is handed to librdkafka, as a
  dict copied from a per-type template (confluent-kafka converts a dict in half the time of a
  list of tuples, same order on the wire).
* :class:`_Payload` / :class:`_Envelope`: encode-only Structs with the models' field order, so
  the bytes are written without running the models' ``__post_init__`` checks, which the
  builder's shortcut (``events._envelope._shortcut``) has already decided cannot fail;
  ``tests/property/test_builder_fast_path.py`` checks the shortcut differentially against the
  full validation.

The publish side (producing compact parts, settling results without the frozen dataclass's
``__init__``) is :mod:`provider_events.publish._fast`; the plain path is
``Publisher.send_many``. Standard library and msgspec only: the hook path imports the builder.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from provider_events.events._catalog import CATALOG

__all__ = [
    "CE_SOURCE",
    "CE_TIME",
    "EVENT_ID",
    "EVENT_TYPE",
    "KEY",
    "MODEL",
    "PROVIDER",
    "TENANT_ID",
    "TOPIC",
    "VALUE",
    "EventParts",
    "header_dict",
    "header_list",
    "origin",
]

CONTENT_TYPE = b"application/json"


class _Payload(msgspec.Struct, gc=False):
    """Encoding only: the payload's fields in the wire order, values as the builder has them.

    The same bytes as encoding a dict of these keys (msgspec writes a Struct as a JSON object
    in field order), without hashing and writing the keys of two dicts per event; what the
    bytes may hold is decided by the validation (``ProviderSelectedPayloadV1``), not here.
    """

    provider_name: Any
    model_name: Any
    correlation_id: Any
    selection_reason: Any
    selection_criteria: Any
    selected_at: Any


class _Envelope(msgspec.Struct, gc=False):
    """Encoding only: ``OnexEnvelopeV1``'s fields in the wire order (see :class:`_Payload`)."""

    event_type: Any
    event_id: Any
    timestamp: Any
    correlation_id: Any
    causation_id: Any
    namespace: Any
    source: Any
    tenant_id: Any
    schema_ref: Any
    payload: Any


#: Per event type: its headers in wire order, the per-event values left empty (filled in by a
#: copy for each event, faster than writing the whole dict).
_HEADER_TEMPLATES: dict[str, dict[str, bytes]] = {
    spec.event_type: {
        "content-type": CONTENT_TYPE,
        "event_type": spec.event_type.encode(),
        "event_id": b"",
        "schema_ref": spec.schema_ref.encode(),
        "tenant_id": b"",
        # CloudEvents Kafka protocol binding (binary mode) for consumers that speak it.
        "ce_specversion": b"1.0",
        "ce_type": spec.event_type.encode(),
        "ce_id": b"",
        "ce_source": b"",
        "ce_time": b"",
    }
    for spec in CATALOG.values()
}
#: Per (tenant, namespace, source): the ``tenant_id`` and ``ce_source`` header values; bounded.
_ORIGINS: dict[tuple[str, str, str], tuple[bytes, bytes]] = {}


def origin(tenant: str, namespace: str, source: str) -> tuple[bytes, bytes]:
    """The ``tenant_id`` and ``ce_source`` header values, shared by every event of one origin."""
    origin = _ORIGINS.get((tenant, namespace, source))
    if origin is None:
        if len(_ORIGINS) >= 256:
            _ORIGINS.clear()
        origin = _ORIGINS[tenant, namespace, source] = (
            tenant.encode(),
            f"{namespace}/{source}".encode(),
        )
    return origin


#: A built event in compact form, for batches: (event_id, event_type, topic, key, value,
#: ce_time, tenant_id, ce_source, provider_name, model_name), the last four header values as
#: bytes. A flat tuple of str and bytes, which the cyclic GC stops tracking at its first
#: collection, where an ``OutgoingEvent`` and its header list are two tracked objects per
#: event that every full collection walks while a large batch is in flight.
EventParts = tuple[str, str, str, bytes, bytes, bytes, bytes, bytes, str, str]
#: The positions in :data:`EventParts` (a tuple, not a NamedTuple: the GC untracks only exact
#: tuples). Read them through these names, never as bare numbers.
EVENT_ID: Final = 0
EVENT_TYPE: Final = 1
TOPIC: Final = 2
KEY: Final = 3
VALUE: Final = 4
CE_TIME: Final = 5
TENANT_ID: Final = 6
CE_SOURCE: Final = 7
PROVIDER: Final = 8
MODEL: Final = 9


def header_list(parts: EventParts) -> list[tuple[str, bytes]]:
    """The Kafka headers of a compact event (a new list each call)."""
    return list(header_dict(parts).items())


def header_dict(parts: EventParts) -> dict[str, bytes]:
    """The Kafka headers of a compact event as a dict, in the same order (names are unique).

    What the producer hands to confluent-kafka: it converts a dict of headers in half the time
    of a list of tuples (no tuple parsing per header), and writes them in this same order.
    """
    headers = _HEADER_TEMPLATES[parts[EVENT_TYPE]].copy()
    eid = parts[EVENT_ID].encode()
    headers["event_id"] = eid
    headers["tenant_id"] = parts[TENANT_ID]
    headers["ce_id"] = eid
    headers["ce_source"] = parts[CE_SOURCE]
    headers["ce_time"] = parts[CE_TIME]
    return headers
