"""The columns of ``provider_selection_events``, for both stores that write it.

The PostgreSQL writer (``store/_pg.py``) and the embedded SQLite store (``_local_store.py``)
fill the same columns in the same order. They live here, apart from ``store/_pg.py``, because
importing that module loads psycopg, which the embedded (no-server) path must not need.
"""

from __future__ import annotations

__all__ = ["EVENT_COLUMNS", "KAFKA_COLUMNS", "TABLE"]

TABLE = "provider_selection_events"
#: The event's own columns, in order: what every store writes for an event.
EVENT_COLUMNS: tuple[str, ...] = (
    "event_id",
    "correlation_id",
    "provider_name",
    "model_name",
    "selection_reason",
    "selection_criteria",
    "selected_at",
    "tenant_id",
    "namespace",
    "source",
    "causation_id",
    "event_timestamp",
)
#: Where the consumer read the event; only PostgreSQL, fed from Kafka, has them.
KAFKA_COLUMNS: tuple[str, ...] = ("kafka_partition", "kafka_offset")
