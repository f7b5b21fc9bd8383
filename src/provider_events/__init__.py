"""provider-events: record which AI provider and model an agent chose, deliver it through Kafka
without losing it, land it in PostgreSQL, and answer usage, cost and quality questions.

Public API (everything else is private and may change)::

    from provider_events import publish_provider_selection, publish_provider_selection_sync
    from provider_events import Publisher, PublishResult, DeliveryStatus, FailureReason, load_settings
    from provider_events import ProviderEventsError  # every error raised (see errors.py)

Attributes are imported lazily so ``import provider_events`` stays cheap on the hook path.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported at run time: the hook path loads this module
if TYPE_CHECKING:
    from typing import Any

__version__ = "0.1.0"

# Plain sorted(); ruff's isort-style order would put PROVIDER_SELECTION_TOPIC second.
__all__ = [  # noqa: RUF022
    "CATALOG",
    "ConfigError",
    "DatabaseError",
    "DatabaseLoginError",
    "DatabaseUnavailableError",
    "DeliveryStatus",
    "EventFamily",
    "EventSpec",
    "ExitCode",
    "FailureReason",
    "HookInputError",
    "InvalidEventError",
    "KafkaClientError",
    "MigrationError",
    "OnexEnvelopeV1",
    "OutboxCorruptError",
    "OutboxError",
    "OutboxFullError",
    "PROVIDER_SELECTION_TOPIC",
    "PartitionKeyError",
    "ProviderEventsError",
    "ProviderSelectedPayloadV1",
    "PublishResult",
    "Publisher",
    "Settings",
    "SettingsFileError",
    "SettingsWriteError",
    "SwitchError",
    "TranscriptImportError",
    "UnsafePathError",
    "ValidationResult",
    "__version__",
    "decode_envelope",
    "enable_publisher_metrics",
    "get_partition_key",
    "get_partition_key_for_event",
    "load_settings",
    "publish_provider_selection",
    "publish_provider_selection_sync",
    "validate_event",
    "validate_partition_key",
]

_WHERE = {
    "CATALOG": "events._catalog",
    "EventFamily": "events._catalog",
    "EventSpec": "events._catalog",
    "PROVIDER_SELECTION_TOPIC": "events._catalog",
    "ConfigError": "errors",
    "DatabaseError": "errors",
    "InvalidEventError": "errors",
    "OutboxCorruptError": "errors",
    "OutboxError": "errors",
    "OutboxFullError": "errors",
    "PartitionKeyError": "errors",
    "ProviderEventsError": "errors",
    "KafkaClientError": "errors",
    "DatabaseLoginError": "errors",
    "DatabaseUnavailableError": "errors",
    "ExitCode": "errors",
    "HookInputError": "errors",
    "MigrationError": "errors",
    "SettingsFileError": "errors",
    "SettingsWriteError": "errors",
    "SwitchError": "errors",
    "TranscriptImportError": "errors",
    "UnsafePathError": "errors",
    "OnexEnvelopeV1": "events._models",
    "ProviderSelectedPayloadV1": "events._models",
    "DeliveryStatus": "publish._result",
    "PublishResult": "publish._result",
    "FailureReason": "publish._result",
    "Publisher": "publish._publisher",
    "publish_provider_selection": "publish._publisher",
    "publish_provider_selection_sync": "publish._publisher",
    "Settings": "settings",
    "load_settings": "settings",
    "ValidationResult": "events._validation",
    "decode_envelope": "events._validation",
    "validate_event": "events._validation",
    "get_partition_key": "events._partition_key_policy",
    "get_partition_key_for_event": "events._partition_key_policy",
    "validate_partition_key": "events._partition_key_policy",
    "enable_publisher_metrics": "observability._publisher_metrics",
}

if TYPE_CHECKING:
    from provider_events.errors import (
        ConfigError,
        DatabaseError,
        DatabaseLoginError,
        DatabaseUnavailableError,
        ExitCode,
        HookInputError,
        InvalidEventError,
        KafkaClientError,
        MigrationError,
        OutboxCorruptError,
        OutboxError,
        OutboxFullError,
        PartitionKeyError,
        ProviderEventsError,
        SettingsFileError,
        SettingsWriteError,
        SwitchError,
        TranscriptImportError,
        UnsafePathError,
    )
    from provider_events.events._catalog import (
        CATALOG,
        PROVIDER_SELECTION_TOPIC,
        EventFamily,
        EventSpec,
    )
    from provider_events.events._models import OnexEnvelopeV1, ProviderSelectedPayloadV1
    from provider_events.events._partition_key_policy import (
        get_partition_key,
        get_partition_key_for_event,
        validate_partition_key,
    )
    from provider_events.events._validation import ValidationResult, decode_envelope, validate_event
    from provider_events.observability._publisher_metrics import enable_publisher_metrics
    from provider_events.publish._publisher import (
        Publisher,
        publish_provider_selection,
        publish_provider_selection_sync,
    )
    from provider_events.publish._result import DeliveryStatus, FailureReason, PublishResult
    from provider_events.settings import Settings, load_settings


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'provider_events' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"provider_events.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
