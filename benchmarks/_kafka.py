"""Kafka helpers for benchmarks: fresh topics and settings aimed at them."""

from __future__ import annotations

import contextlib
import tempfile
import uuid
from pathlib import Path

from provider_events import load_settings
from provider_events.settings import Settings


def fresh_topic(bootstrap: str, prefix: str, partitions: int = 6) -> str:
    from confluent_kafka.admin import AdminClient, NewTopic

    name = f"bench.{prefix}.{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])[
        name
    ].result(60)
    return name


def delete_topics(bootstrap: str, *names: str) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.delete_topics(list(names), operation_timeout=30).values():
        with contextlib.suppress(Exception):  # cleanup only
            future.result(60)


def bench_settings(bootstrap: str, topic: str, **overrides: object) -> Settings:
    state = Path(tempfile.mkdtemp(prefix="pe-bench-"))
    return load_settings(
        environ={
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "PROVIDER_EVENTS_TOPIC": topic,
            "PROVIDER_EVENTS_STATE_DIR": str(state),
            "PROVIDER_EVENTS_RELAY_AUTOSTART": "false",
        },
        dotenv=state / "none",
        **overrides,
    )
