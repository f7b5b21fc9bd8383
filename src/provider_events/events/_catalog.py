"""The event catalog: each event type mapped to its payload model, family, key, topic and schema.

Adding an event type is one :class:`EventSpec` entry in :data:`CATALOG`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from provider_events.events._models import ProviderCompletedPayloadV1, ProviderSelectedPayloadV1

__all__ = [
    "CATALOG",
    "PROVIDER_COMPLETED_V1",
    "PROVIDER_SELECTED_V1",
    "PROVIDER_SELECTION_TOPIC",
    "EventFamily",
    "EventSpec",
    "spec_for",
    "spec_for_schema_ref",
]


class EventFamily(StrEnum):
    """Event families of the partition-key policy; each names the field its events key on.

    The member's *name* is the guide's spelling (``AGENT_PROVIDER``); its *value* is the
    reference implementation's (``"agent.provider"``). Neither is part of the wire format.
    """

    AGENT_PROVIDER = "agent.provider"


@dataclass(frozen=True, slots=True)
class EventSpec:
    event_type: str
    payload_type: type
    family: EventFamily
    key_field: str
    topic: str
    schema_ref: str
    description: str

    @property
    def dlq_topic(self) -> str:
        return f"{self.topic}.dlq"


PROVIDER_SELECTED_V1 = EventSpec(
    event_type="omninode.agent.provider.selected.v1",
    payload_type=ProviderSelectedPayloadV1,
    family=EventFamily.AGENT_PROVIDER,
    key_field="correlation_id",
    topic="omninode.agent.provider.selected.v1",
    schema_ref="registry://omninode/agent/provider_selected/v1",
    description="An agent chose an AI provider and model for a request.",
)

#: The measured outcome of a selection (tokens, cost, stop reason), keyed like it. It travels on
#: the selection's topic: one key (the session id) then orders a session's selections and
#: outcomes on one partition, and one consumer, one dead-letter topic and one offset space
#: serve both (the consumer dispatches on ``event_type``).
PROVIDER_COMPLETED_V1 = EventSpec(
    event_type="omninode.agent.provider.completed.v1",
    payload_type=ProviderCompletedPayloadV1,
    family=EventFamily.AGENT_PROVIDER,
    key_field="correlation_id",
    topic=PROVIDER_SELECTED_V1.topic,
    schema_ref="registry://omninode/agent/provider_completed/v1",
    description="What an AI provider's response measured: tokens, cost, stop reason.",
)

CATALOG: dict[str, EventSpec] = {
    spec.event_type: spec for spec in (PROVIDER_SELECTED_V1, PROVIDER_COMPLETED_V1)
}

#: The reference implementation's name for the provider-selection topic.
PROVIDER_SELECTION_TOPIC = PROVIDER_SELECTED_V1.topic


def spec_for(event_type: str) -> EventSpec:
    """The catalog entry of ``event_type``; ``KeyError`` with a readable message if unknown."""
    try:
        return CATALOG[event_type]
    except KeyError:
        raise KeyError(f"unknown event_type {event_type!r}") from None


def spec_for_schema_ref(schema_ref: str) -> EventSpec:
    for spec in CATALOG.values():
        if spec.schema_ref == schema_ref:
            return spec
    raise KeyError(f"unknown schema_ref {schema_ref!r}")
