"""provider-events: record which AI provider and model an agent chose, deliver it through Kafka
without losing it, land it in PostgreSQL, and answer usage, cost and quality questions.

Public API (everything else is private and may change)::

    from provider_events import publish_provider_selection, publish_provider_selection_sync
    from provider_events import Publisher, PublishResult, DeliveryStatus, load_settings

Attributes are imported lazily so ``import provider_events`` stays cheap on the hook path.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "CATALOG",
    "ConfigError",
    "DatabaseError",
    "DeliveryStatus",
    "EventFamily",
    "EventSpec",
    "InvalidEventError",
    "OnexEnvelopeV1",
    "OutboxCorruptError",
    "OutboxError",
    "OutboxFullError",
    "PartitionKeyError",
    "ProviderEventsError",
    "ProviderSelectedPayloadV1",
    "PublishResult",
    "Publisher",
    "Settings",
    "ValidationResult",
    "__version__",
    "decode_envelope",
    "enable_publisher_metrics",
    "get_partition_key",
    "load_settings",
    "publish_provider_selection",
    "publish_provider_selection_sync",
    "validate_event",
]

_WHERE = {
    "CATALOG": "_catalog",
    "EventFamily": "_catalog",
    "EventSpec": "_catalog",
    "ConfigError": "_errors",
    "DatabaseError": "_errors",
    "InvalidEventError": "_errors",
    "OutboxCorruptError": "_errors",
    "OutboxError": "_errors",
    "OutboxFullError": "_errors",
    "PartitionKeyError": "_errors",
    "ProviderEventsError": "_errors",
    "OnexEnvelopeV1": "_models",
    "ProviderSelectedPayloadV1": "_models",
    "DeliveryStatus": "_result",
    "PublishResult": "_result",
    "Publisher": "_publisher",
    "publish_provider_selection": "_publisher",
    "publish_provider_selection_sync": "_publisher",
    "Settings": "_config",
    "load_settings": "_config",
    "ValidationResult": "_validation",
    "decode_envelope": "_validation",
    "validate_event": "_validation",
    "get_partition_key": "_partition_key_policy",
    "enable_publisher_metrics": "_publisher_metrics",
}

if TYPE_CHECKING:
    from ._catalog import CATALOG, EventFamily, EventSpec
    from ._config import Settings, load_settings
    from ._errors import (
        ConfigError,
        DatabaseError,
        InvalidEventError,
        OutboxCorruptError,
        OutboxError,
        OutboxFullError,
        PartitionKeyError,
        ProviderEventsError,
    )
    from ._models import OnexEnvelopeV1, ProviderSelectedPayloadV1
    from ._partition_key_policy import get_partition_key
    from ._publisher import Publisher, publish_provider_selection, publish_provider_selection_sync
    from ._publisher_metrics import enable_publisher_metrics
    from ._result import DeliveryStatus, PublishResult
    from ._validation import ValidationResult, decode_envelope, validate_event


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'provider_events' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"provider_events.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
