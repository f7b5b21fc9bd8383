"""Partition-key policy: which envelope field each event family keys on, and key extraction.

``AGENT_PROVIDER`` events key on ``correlation_id`` so every provider selection of one request
lands on one partition, in order. An event without a usable key is refused, never sent unkeyed.

:func:`get_partition_key` raises :class:`PartitionKeyError` with the reason. The reference
implementation's names are here too, with its results: :func:`get_partition_key_for_event`
(``None`` when there is no key or the event type is unknown), :func:`validate_partition_key`
(``False``), :func:`get_partition_policy` and :data:`PARTITION_KEY_POLICY`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from provider_events.errors import PartitionKeyError
from provider_events.events._catalog import CATALOG, EventFamily

__all__ = [
    "DEFAULT_PARTITION_KEY_FIELD",
    "PARTITION_KEY_POLICY",
    "POLICIES",
    "EventFamily",
    "PartitionKeyPolicy",
    "get_event_family",
    "get_partition_key",
    "get_partition_key_for_event",
    "get_partition_policy",
    "validate_partition_key",
]

DEFAULT_PARTITION_KEY_FIELD = "correlation_id"


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


#: The reference implementation's shape of the policy table: family -> its fields as text.
PARTITION_KEY_POLICY: dict[EventFamily, dict[str, str]] = {
    family: {
        "partition_key": p.key_field,
        "reason": p.reason,
        "cardinality": p.cardinality,
        "example": "omninode.agent.provider.selected.v1 -> correlation_id",
    }
    for family, p in POLICIES.items()
}
_MAX_KEY = 128  # the envelope's limit on correlation_id
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def get_event_family(event_type: str) -> EventFamily | None:
    """The family of a catalogued event type; ``None`` when it is not catalogued (as the
    reference returns for an event type it does not recognise)."""
    spec = CATALOG.get(event_type) if isinstance(event_type, str) else None
    return None if spec is None else spec.family


def get_partition_policy(event_family: EventFamily) -> dict[str, str]:
    """The reference's accessor: the policy of ``event_family`` as text, ``{}`` if none."""
    return dict(PARTITION_KEY_POLICY.get(event_family, {}))


def get_partition_key_for_event(event_type: str, envelope: Any) -> str | None:
    """The reference's key lookup: the partition key of ``envelope`` for ``event_type``, or
    ``None`` when the type is not catalogued or the envelope holds no non-empty key."""
    family = get_event_family(event_type)
    if family is None:
        return None
    field = POLICIES[family].key_field
    for holder in (envelope, _field(envelope, "payload")):
        value = _field(holder, field) if holder is not None else None
        if value is not None and str(value).strip():
            return str(value)
    return None


def validate_partition_key(event_type: str, partition_key: str | None) -> bool:
    """The reference's check: ``True`` when ``event_type`` is catalogued and ``partition_key``
    is a key this package would publish (a non-blank string of at most 128 characters without
    control characters); ``False`` otherwise, never an exception."""
    if get_event_family(event_type) is None or not isinstance(partition_key, str):
        return False
    return (
        bool(partition_key.strip())
        and len(partition_key) <= _MAX_KEY
        and not _CONTROL.search(partition_key)
    )


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
    if family is None:
        raise PartitionKeyError(f"no partition-key policy for event_type {event_type!r}")
    field = POLICIES[family].key_field
    for holder in (envelope, _field(envelope, "payload")):
        value = _field(holder, field) if holder is not None else None
        if isinstance(value, str) and value.strip():
            return value
    raise PartitionKeyError(
        f"{event_type} events are keyed on {field!r} ({family.name} family) "
        f"but the event has no non-empty {field}"
    )
