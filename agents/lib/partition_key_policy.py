"""Guide path for the partition-key policy (``AGENT_PROVIDER`` keys on ``correlation_id``)."""

from provider_events.errors import PartitionKeyError
from provider_events.events._partition_key_policy import (
    POLICIES,
    EventFamily,
    PartitionKeyPolicy,
    get_event_family,
    get_partition_key,
)

__all__ = [
    "POLICIES",
    "EventFamily",
    "PartitionKeyError",
    "PartitionKeyPolicy",
    "get_event_family",
    "get_partition_key",
]
