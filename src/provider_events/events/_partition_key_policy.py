"""Partition-key policy: which envelope field each event family keys on, and key extraction.

``AGENT_PROVIDER`` events key on ``correlation_id`` so every provider selection of one request
lands on one partition, in order. An event without a usable key is refused, never sent unkeyed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from provider_events.errors import PartitionKeyError
from provider_events.events._catalog import CATALOG, EventFamily

__all__ = ["POLICIES", "EventFamily", "PartitionKeyPolicy", "get_event_family", "get_partition_key"]


@dataclass(frozen=True, slots=True)
class PartitionKeyPolicy:
    family: EventFamily
    key_field: str
    reason: str
    cardinality: str


POLICIES: dict[EventFamily, PartitionKeyPolicy] = {
    EventFamily.AGENT_PROVIDER: PartitionKeyPolicy(
        family=EventFamily.AGENT_PROVIDER,
        key_field="correlation_id",
        reason="Track provider/model choices per request",
        cardinality="Medium (per agent execution, ~100-1000 unique keys/day)",
    ),
}


def get_event_family(event_type: str) -> EventFamily:
    """The family of a catalogued event type (``PartitionKeyError`` if it is not catalogued)."""
    spec = CATALOG.get(event_type)
    if spec is None:
        raise PartitionKeyError(f"no partition-key policy for event_type {event_type!r}")
    return spec.family


def _field(obj: Any, name: str) -> Any:
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def get_partition_key(envelope: Any) -> str:
    """The partition key of an envelope (a dict or an ``OnexEnvelopeV1``).

    Looks at the envelope's key field first, then the payload's. Raises
    :class:`PartitionKeyError` with the reason when neither holds a non-empty string.
    """
    event_type = _field(envelope, "event_type")
    family = get_event_family(str(event_type))
    field = POLICIES[family].key_field
    for holder in (envelope, _field(envelope, "payload")):
        value = _field(holder, field) if holder is not None else None
        if isinstance(value, str) and value.strip():
            return value
    raise PartitionKeyError(
        f"{event_type} events are keyed on {field!r} ({family.value} family) "
        f"but the event has no non-empty {field}"
    )
