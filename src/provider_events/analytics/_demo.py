"""The demo's pipelines: a synthetic week into the embedded store, or through Kafka into PostgreSQL.

``load_local`` publishes with the real :class:`~provider_events.Publisher` on the local sink
(the embedded default: nothing to run, nothing to configure). ``load_via_kafka`` publishes the
same selections to a fresh topic with the Publisher on Kafka (acknowledged, idempotent), then
runs the real consumer in-process until it has ingested them into a demo schema of
PostgreSQL (migrated first, so the rollups are maintained at ingest). Both report progress
through a callback so the command can draw a progress bar.
"""

from __future__ import annotations

import contextlib
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from provider_events.analytics._synth import Selection
from provider_events.settings import Settings

__all__ = [
    "DEMO_SCHEMA_PREFIX",
    "KafkaLoad",
    "LocalLoad",
    "kafka_reachable",
    "load_local",
    "load_via_kafka",
    "postgres_reachable",
    "read_back",
]

#: The demo only ever drops and recreates schemas whose name starts with this.
DEMO_SCHEMA_PREFIX = "provider_events_demo"
Progress = Callable[[str, int], None]
BATCH = 2_000


@dataclass(slots=True)
class LocalLoad:
    """What :func:`load_local` did."""

    store: Path
    published: int = 0
    stored: int = 0
    failed: int = 0
    seconds: float = 0.0


@dataclass(slots=True)
class KafkaLoad:
    """What :func:`load_via_kafka` did."""

    topic: str
    schema: str
    dsn: str
    published: int = 0
    delivered: int = 0
    failed: list[str] = field(default_factory=list)
    consumed: int = 0
    inserted: int = 0
    rows: int = 0
    publish_seconds: float = 0.0
    consume_seconds: float = 0.0


def _batches(selections: Iterable[Selection], size: int) -> Iterator[list[Selection]]:
    batch: list[Selection] = []
    for s in selections:
        batch.append(s)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def load_local(
    settings: Settings, selections: Iterable[Selection], progress: Progress | None = None
) -> LocalLoad:
    """Publish ``selections`` on the local sink of ``settings`` (a fresh demo store)."""
    from provider_events.publish._publisher import Publisher
    from provider_events.publish._result import DeliveryStatus
    from provider_events.store._local import LocalEventStore

    settings = settings.with_overrides(sink="local", relay_autostart=False)
    result = LocalLoad(LocalEventStore.for_settings(settings).path)
    started = time.perf_counter()
    publisher = Publisher(settings, outbox=False)
    try:
        for batch in _batches(selections, BATCH):
            events = [publisher.build(**s.fields()) for s in batch]
            for r in publisher.send_many_sync(events):
                result.published += 1
                if r.status is DeliveryStatus.STORED:
                    result.stored += 1
                else:
                    result.failed += 1
            if progress:
                progress("publish", len(batch))
    finally:
        publisher.close()
    result.seconds = time.perf_counter() - started
    return result


def kafka_reachable(bootstrap: str, timeout: float = 1.5) -> bool:
    """Whether the first bootstrap server accepts a TCP connection."""
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def postgres_reachable(dsn: str) -> str | None:
    """``None`` when PostgreSQL answers, else a one-line reason."""
    try:
        from provider_events.store._pg import connect

        connect(dsn, connect_timeout=3).close()
    except Exception as exc:
        return str(exc)
    return None


def _create_topic(settings: Settings, topic: str, partitions: int = 6) -> None:
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    from provider_events.publish._producer import kafka_config

    admin = AdminClient(kafka_config(settings, for_consumer=True))
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1)], operation_timeout=30
    )
    futures[topic].result(timeout=60)


def delete_topics(settings: Settings, topics: Sequence[str]) -> None:
    """Delete the demo's topics (best effort)."""
    from confluent_kafka.admin import AdminClient

    from provider_events.publish._producer import kafka_config

    admin = AdminClient(kafka_config(settings, for_consumer=True))
    for future in admin.delete_topics(list(topics), operation_timeout=30).values():
        with contextlib.suppress(Exception):  # an absent DLQ topic, say: nothing to clean
            future.result(timeout=30)


def _fresh_schema(dsn: str, schema: str) -> str:
    """Drop and recreate ``schema`` (a demo schema only), migrate it, return its DSN."""
    from provider_events.store import migrate
    from provider_events.store._pg import connect
    from provider_events.store._scratch import dsn_for_schema

    if not schema.startswith(DEMO_SCHEMA_PREFIX) or not schema.replace("_", "").isalnum():
        raise ValueError(f"demo schema must start with {DEMO_SCHEMA_PREFIX!r}, got {schema!r}")
    with connect(dsn, application_name="provider-events-demo") as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.execute(f'CREATE SCHEMA "{schema}"')
    scoped = dsn_for_schema(dsn, schema)
    migrate(scoped)
    return scoped


def load_via_kafka(
    settings: Settings,
    dsn: str,
    selections: Sequence[Selection],
    *,
    schema: str = DEMO_SCHEMA_PREFIX,
    topic: str | None = None,
    progress: Progress | None = None,
    idle_timeout: float = 5.0,
) -> KafkaLoad:
    """Publish through Kafka to a fresh topic, consume into a fresh demo schema, count rows."""
    from provider_events.ingest._consumer import ConsumerOptions, IngestConsumer
    from provider_events.publish._publisher import Publisher
    from provider_events.store._pg import connect

    topic = topic or f"provider-events-demo-{datetime.now():%Y%m%d%H%M%S}-{uuid.uuid4().hex[:6]}"
    scoped = _fresh_schema(dsn, schema)
    result = KafkaLoad(topic=topic, schema=schema, dsn=scoped)
    _create_topic(settings, topic)
    kafka = settings.with_overrides(sink="kafka", topic=topic, relay_autostart=False)
    publisher = Publisher(kafka, outbox=False)
    started = time.perf_counter()
    try:
        for batch in _batches(selections, BATCH):
            events = [publisher.build(**s.fields()) for s in batch]
            for r in publisher.send_many_sync(events):
                result.published += 1
                if r.delivered:
                    result.delivered += 1
                elif len(result.failed) < 3:
                    result.failed.append(r.error or r.status.value)
            if progress:
                progress("publish", len(batch))
    finally:
        publisher.close()
    result.publish_seconds = time.perf_counter() - started

    seen = [0]

    def on_event(kind: str, fields: dict[str, Any]) -> None:
        if kind in ("progress", "stopped") and progress:
            now = int(fields.get("messages", 0))
            progress("consume", now - seen[0])
            seen[0] = now

    options = ConsumerOptions(
        topic=topic,
        dlq_topic=f"{topic}.dlq",
        group_id=f"provider-events-demo-{uuid.uuid4().hex[:8]}",
        batch_size=5_000,
        batch_timeout=0.5,
        max_messages=result.delivered or None,
        until_idle=idle_timeout,
        progress_interval=0.25,
    )
    started = time.perf_counter()
    consumer = IngestConsumer(kafka, options, scoped, on_event=on_event)
    totals = consumer.run()
    result.consume_seconds = time.perf_counter() - started
    result.consumed, result.inserted = totals.messages, totals.inserted
    with connect(scoped, application_name="provider-events-demo") as conn:
        row = conn.execute("SELECT count(*) FROM provider_selection_events").fetchone()
        result.rows = int(row[0]) if row else 0
    return result


@dataclass(frozen=True, slots=True)
class ReadBack:
    """One message as read back from the topic."""

    partition: int
    offset: int
    key: str
    event_id: str
    tenant_id: str
    provider_name: str
    model_name: str
    selection_reason: str
    selected_at: datetime


def read_back(
    settings: Settings, topic: str, limit: int = 5, timeout: float = 10.0
) -> list[ReadBack]:
    """The first ``limit`` messages of ``topic`` (any partitions), decoded and validated."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    from provider_events.events._validation import decode_envelope
    from provider_events.publish._producer import kafka_config

    conf = kafka_config(settings, for_consumer=True)
    conf.update(
        {
            "group.id": f"provider-events-demo-read-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
        }
    )
    consumer = Consumer(conf)
    out: list[ReadBack] = []
    try:
        meta = consumer.list_topics(topic, timeout=timeout)
        partitions = sorted(meta.topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        deadline = time.monotonic() + timeout
        while len(out) < limit and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            env = decode_envelope(msg.value() or b"")
            p = env.payload
            out.append(
                ReadBack(
                    partition=msg.partition() or 0,
                    offset=msg.offset() or 0,
                    key=(msg.key() or b"").decode("utf-8", "replace"),
                    event_id=str(env.event_id),
                    tenant_id=env.tenant_id,
                    provider_name=p.provider_name,
                    model_name=p.model_name,
                    selection_reason=p.selection_reason,
                    selected_at=p.selected_at,
                )
            )
    finally:
        consumer.close()
    return out
