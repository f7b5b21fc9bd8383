"""Every Prometheus metric of provider-events, in one dedicated registry, and the exporter.

Import this module only where metrics are recorded or served (consumer, long-lived
publishers): ``prometheus_client`` is never imported on the publish CLI / hook path.

Names follow the Prometheus conventions: ``provider_events_`` prefix, base units (seconds),
``_total`` for counters. ``provider_selection_total`` and ``provider_selection_duration_seconds``
keep the names the integration guide shows. Selections are counted at ingest by the consumer
(one per row newly stored, so redeliveries are not counted twice); scrape publishers under
another job so the two are not summed (see deploy/prometheus/prometheus.yml).
"""

from __future__ import annotations

import threading
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    gc_collector,
    generate_latest,
    platform_collector,
    process_collector,
    start_http_server,
)

__all__ = [
    "CONSUMER_BATCH_DURATION",
    "CONSUMER_CONFLICTS",
    "CONSUMER_DEAD_LETTER_TABLE",
    "CONSUMER_DLQ",
    "CONSUMER_DUPLICATES",
    "CONSUMER_LAG",
    "CONSUMER_MESSAGES",
    "CONSUMER_ROWS_INSERTED",
    "OUTBOX_OLDEST_AGE",
    "OUTBOX_PENDING",
    "PROVIDER_SELECTION",
    "PROVIDER_SELECTION_DURATION",
    "PUBLISH_FAILURES",
    "PUBLISH_SPOOLED",
    "REGISTRY",
    "render",
    "start_metrics_server",
]

# No `<name>_created` series next to every counter and histogram: they double the series count
# and nothing here reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus_client leaves it unannotated

#: The project's registry: our metrics plus process, platform and GC collectors.
REGISTRY = CollectorRegistry(auto_describe=True)
process_collector.ProcessCollector(registry=REGISTRY)
platform_collector.PlatformCollector(registry=REGISTRY)
gc_collector.GCCollector(registry=REGISTRY)

# -- consumer ------------------------------------------------------------------------------
CONSUMER_MESSAGES = Counter(
    "provider_events_consumer_messages_total",
    "Kafka messages consumed and handled (stored, duplicate or dead-lettered).",
    registry=REGISTRY,
)
CONSUMER_ROWS_INSERTED = Counter(
    "provider_events_consumer_rows_inserted_total",
    "Rows newly inserted into provider_selection_events.",
    registry=REGISTRY,
)
CONSUMER_DUPLICATES = Counter(
    "provider_events_consumer_duplicates_total",
    "Valid events skipped because their event_id was already stored (redeliveries).",
    registry=REGISTRY,
)
CONSUMER_CONFLICTS = Counter(
    "provider_events_consumer_conflicting_duplicates_total",
    "Events whose event_id was already stored with another content: not stored, "
    "dead-lettered with reason conflicting_duplicate.",
    registry=REGISTRY,
)
CONSUMER_DEAD_LETTER_TABLE = Counter(
    "provider_events_consumer_dead_letter_table_total",
    "Messages recorded in the PostgreSQL table provider_events_dead_letters because the "
    "dead-letter topic refused them even as a bounded record.",
    registry=REGISTRY,
)
CONSUMER_DLQ = Counter(
    "provider_events_consumer_dlq_total",
    "Messages sent to the dead-letter topic, by reason.",
    ["reason"],
    registry=REGISTRY,
)
CONSUMER_BATCH_DURATION = Histogram(
    "provider_events_consumer_batch_duration_seconds",
    "Time to handle one batch: decode, write to PostgreSQL, dead-letter, commit offsets.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
    registry=REGISTRY,
)
CONSUMER_LAG = Gauge(
    "provider_events_consumer_lag_messages",
    "Messages in the partition not yet committed by this consumer group (high watermark - "
    "committed offset).",
    ["topic", "partition"],
    registry=REGISTRY,
)
#: Every reason the consumer dead-letters for; each series exists from the start at 0, so
#: ``increase()`` sees the very first dead letter after a consumer start.
DLQ_REASONS = (
    "bad_utf8",
    "bad_json",
    "schema",
    "unknown_event_type",
    "too_large",
    "partition_key",
    "decode_error",
    "db_rejected",
    "conflicting_duplicate",
    "timestamp_out_of_range",
    "non_normal_number",
)
for _reason in DLQ_REASONS:
    CONSUMER_DLQ.labels(_reason)

#: The label value used past the cardinality caps.
OTHER = "other"
MAX_PROVIDERS = 50
MAX_MODELS = 500


class LabelCap:
    """Keeps at most ``limit`` distinct label values; later ones become :data:`OTHER`.

    Provider and model names come from whoever publishes, so without a cap any producer
    could create unbounded series on the exporter.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        with self._lock:
            if len(self._seen) < self.limit:
                self._seen.add(value)
                return value
        return OTHER


_providers = LabelCap(MAX_PROVIDERS)
_models = LabelCap(MAX_MODELS)


def selection_labels(provider: str, model: str) -> tuple[str, str]:
    """Bounded ``(provider, model)`` labels for ``provider_selection_total`` and friends."""
    provider_label = _providers(provider)
    return provider_label, (_models(model) if provider_label != OTHER else OTHER)


PROVIDER_SELECTION = Counter(
    "provider_selection_total",
    "Total provider selections (counted at ingest, once per stored event).",
    ["provider", "model"],
    registry=REGISTRY,
)

# -- publisher (recorded by the publishing side) --------------------------------------------
PROVIDER_SELECTION_DURATION = Histogram(
    "provider_selection_duration_seconds",
    "Provider selection event publish duration.",
    ["provider"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)
PUBLISH_FAILURES = Counter(
    "provider_events_publish_failures_total",
    "Publish calls not acknowledged by Kafka at once (spooled or failed), by reason.",
    ["reason"],
    registry=REGISTRY,
)
PUBLISH_SPOOLED = Counter(
    "provider_events_publish_spooled_total",
    "Events written to the local outbox for later delivery.",
    registry=REGISTRY,
)
OUTBOX_PENDING = Gauge(
    "provider_events_outbox_pending_events",
    "Events waiting in the local outbox.",
    registry=REGISTRY,
)
OUTBOX_OLDEST_AGE = Gauge(
    "provider_events_outbox_oldest_age_seconds",
    "Age of the oldest event waiting in the local outbox (0 when empty).",
    registry=REGISTRY,
)

_servers: dict[tuple[str, int], Any] = {}
_servers_lock = threading.Lock()


def start_metrics_server(port: int, addr: str = "127.0.0.1") -> int:
    """Serve ``/metrics`` for :data:`REGISTRY` on ``addr:port`` in a daemon thread.

    ``port=0`` picks a free port. Returns the bound port. Raises ``OSError`` when the
    address is in use. Starting twice on the same address is a no-op.
    """
    with _servers_lock:
        if port and (addr, port) in _servers:
            return port
        server, _thread = start_http_server(port, addr=addr, registry=REGISTRY)
        bound = int(server.server_address[1])
        _servers[(addr, bound)] = server
        return bound


def render() -> bytes:
    """The current exposition text of :data:`REGISTRY` (what ``/metrics`` serves)."""
    return generate_latest(REGISTRY)
