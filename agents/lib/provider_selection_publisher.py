"""Guide path for the publisher: ``from agents.lib.provider_selection_publisher import ...``.

Re-exports :mod:`provider_events`' publish functions; see ``docs/guide-notes.md`` for where the
implementation keeps, and where it deliberately changes, the guide's behaviour.
"""

from provider_events import (
    PROVIDER_SELECTION_TOPIC,
    DeliveryStatus,
    Publisher,
    PublishResult,
    publish_provider_selection,
    publish_provider_selection_sync,
)

__all__ = [
    "PROVIDER_SELECTION_TOPIC",
    "DeliveryStatus",
    "PublishResult",
    "Publisher",
    "publish_provider_selection",
    "publish_provider_selection_sync",
]
