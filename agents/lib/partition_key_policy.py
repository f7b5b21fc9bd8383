"""Guide path for the partition-key policy (``AGENT_PROVIDER`` keys on ``correlation_id``)."""

from provider_events.errors import PartitionKeyError
from provider_events.events._partition_key_policy import (
    DEFAULT_PARTITION_KEY_FIELD,
    PARTITION_KEY_POLICY,
    POLICIES,
    EventFamily,
    PartitionKeyPolicy,
    get_event_family,
    get_partition_key,
    get_partition_key_for_event,
    get_partition_policy,
    validate_partition_key,
)

__all__ = [
    "DEFAULT_PARTITION_KEY_FIELD",
    "PARTITION_KEY_POLICY",
    "POLICIES",
    "EventFamily",
    "PartitionKeyError",
    "PartitionKeyPolicy",
    "get_event_family",
    "get_partition_key",
    "get_partition_key_for_event",
    "get_partition_policy",
    "validate_partition_key",
]
