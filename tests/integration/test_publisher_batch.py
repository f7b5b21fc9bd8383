"""``Publisher.publish_many`` against the real broker: what lands on the topic, and every route.

``publish_many`` keeps a batch in compact form (plain tuples) and builds the header list of
each event only while handing it to librdkafka; these tests read the topic back with kcat (an
independent client) and check that the key, value and headers are exactly what
``Publisher.build`` makes, in the documented header order. The other routes (local sink,
background delivery, a spooled backlog for some keys, an unreachable broker, a subclass that
builds its own events, observers) take the full ``OutgoingEvent`` path and must keep working.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest

from provider_events import Publisher
from provider_events.events._envelope import OutgoingEvent
from provider_events.events._validation import decode_envelope
from provider_events.publish._outbox import Outbox
from provider_events.publish._publisher import _observers, add_observer
from provider_events.publish._result import DeliveryStatus, PublishResult
from tests.support import publisher_settings

HEADER_NAMES = [
    "content-type",
    "event_type",
    "event_id",
    "schema_ref",
    "tenant_id",
    "ce_specversion",
    "ce_type",
    "ce_id",
    "ce_source",
    "ce_time",
]


settings_for = publisher_settings


def selection(i: int, **extra: Any) -> dict[str, Any]:
    return {
        "provider_name": ["claude", "gemini-flash", "zai"][i % 3],
        "model_name": f"model-{i}",
        "correlation_id": f"req-{i % 4}",
        "selection_reason": "batch test",
        "selection_criteria": {"cost_per_token": 1e-6, "latency_ms": i, "quality_score": 0.5},
        **extra,
    }


def dead_bootstrap() -> str:
    """A loopback port nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def test_batch_lands_exactly_as_built_with_rejections_in_place(
    kafka_bootstrap: str, topic: str, kcat: Any, tmp_path: Path
) -> None:
    publisher = Publisher(settings_for(kafka_bootstrap, topic, tmp_path))
    selections: list[dict[str, Any]] = [selection(i) for i in range(40)]
    selections[0] = selection(0, provider_name="")  # rejected first ...
    selections[17] = selection(17, selection_criteria={"quality_score": 2})  # ... in the middle
    selections[18] = selection(18, model_name=7)  # ... twice in a row
    selections[39] = selection(39, correlation_id="  ")  # ... and last
    selections[5] = selection(5, causation_id="cause-5", tenant_id="acme", namespace="ns")
    selections[6] = selection(6, selection_reason="\ttabbed\nreason", model_name="m\u00a0x")
    rejected = {0, 17, 18, 39}

    results = asyncio.run(publisher.publish_many(selections))

    assert len(results) == len(selections)
    for i, result in enumerate(results):
        if i in rejected:
            assert result.status is DeliveryStatus.REJECTED and result.error
        else:
            assert result.status is DeliveryStatus.DELIVERED, (i, result)
            assert result.topic == topic and result.partition is not None
            assert result.offset is not None and result.event_id
    by_id = {r.event_id: (i, r) for i, r in enumerate(results) if r.delivered}
    messages = kcat.wait_for(topic, lambda ms: len(ms) >= len(by_id))
    assert len(messages) == len(by_id)
    for message in messages:
        headers = message.headers
        assert list(headers) == HEADER_NAMES
        i, result = by_id[headers["event_id"]]
        assert (message.partition, message.offset) == (result.partition, result.offset)
        envelope = decode_envelope(message.payload.encode())
        assert str(envelope.event_id) == headers["ce_id"] == result.event_id
        fields = selections[i]
        assert message.key == fields["correlation_id"] == envelope.correlation_id
        assert envelope.payload.provider_name == fields["provider_name"]
        assert envelope.payload.model_name == fields["model_name"]
        assert envelope.payload.selection_reason == fields["selection_reason"]
        assert headers["tenant_id"] == envelope.tenant_id == fields.get("tenant_id", "default")
        assert headers["ce_source"] == f"{envelope.namespace}/{envelope.source}"
        assert envelope.causation_id == fields.get("causation_id")
        assert headers["content-type"] == "application/json"
        assert headers["event_type"] == headers["ce_type"] == envelope.event_type
        assert headers["ce_specversion"] == "1.0"
        assert headers["schema_ref"] == envelope.schema_ref
        assert len(headers["ce_time"]) == len("2025-11-13T14:30:00.000000Z")
        assert headers["ce_time"].endswith("Z")


def test_unreachable_broker_spools_the_whole_batch_with_headers(tmp_path: Path) -> None:
    settings = settings_for(
        dead_bootstrap(), "t.unreachable", tmp_path, PROVIDER_EVENTS_DELIVERY_TIMEOUT="1"
    )
    publisher = Publisher(settings)
    results = asyncio.run(publisher.publish_many([selection(i) for i in range(5)]))
    assert [r.status for r in results] == [DeliveryStatus.SPOOLED] * 5
    assert all(r.retriable and r.error and r.accepted for r in results)
    rows = publisher.outbox.batch()
    assert [row.event_id for row in rows] == [r.event_id for r in results]
    for row in rows:
        assert [name for name, _ in row.headers] == HEADER_NAMES
        assert dict(row.headers)["event_id"] == row.event_id.encode()
        assert decode_envelope(row.value).correlation_id.encode() == row.key


def test_spooled_backlog_keeps_per_key_order(
    kafka_bootstrap: str, topic: str, tmp_path: Path
) -> None:
    settings = settings_for(kafka_bootstrap, topic, tmp_path)
    publisher = Publisher(settings)
    earlier = publisher.build(**selection(1))  # key req-1 has a spooled event
    Outbox(
        settings.resolved_outbox_path, settings.outbox_max_events, settings.outbox_max_bytes
    ).add([earlier], error="earlier outage")
    results = asyncio.run(publisher.publish_many([selection(i) for i in range(8)]))
    for i, result in enumerate(results):
        if i % 4 == 1:
            assert result.status is DeliveryStatus.SPOOLED
            assert "queued behind" in (result.error or "")
        else:
            assert result.status is DeliveryStatus.DELIVERED


def test_background_and_local_sink_take_every_event(
    kafka_bootstrap: str, topic: str, tmp_path: Path
) -> None:
    background = Publisher(settings_for(kafka_bootstrap, topic, tmp_path / "bg"))
    queued = asyncio.run(
        background.publish_many([selection(i) for i in range(3)], delivery="background")
    )
    assert [r.status for r in queued] == [DeliveryStatus.QUEUED] * 3
    assert [row.event_id for row in background.outbox.batch()] == [r.event_id for r in queued]

    local = Publisher(
        settings_for(kafka_bootstrap, topic, tmp_path / "local", PROVIDER_EVENTS_SINK="local")
    )
    stored = asyncio.run(local.publish_many([selection(i) for i in range(3)]))
    assert [r.status for r in stored] == [DeliveryStatus.STORED] * 3

    with pytest.raises(Exception, match="delivery must be"):
        asyncio.run(background.publish_many([selection(0)], delivery="later"))  # type: ignore[arg-type]


def test_observers_and_subclassed_build_see_every_event(
    kafka_bootstrap: str, topic: str, tmp_path: Path
) -> None:
    seen: list[tuple[DeliveryStatus, str, str]] = []

    def observer(result: PublishResult, provider: str, model: str, seconds: float) -> None:
        seen.append((result.status, provider, model))

    class Stamped(Publisher):
        def build(self, **fields: Any) -> OutgoingEvent:
            event = super().build(**fields)
            event.model_name = "stamped"
            return event

    add_observer(observer)
    try:
        plain = Publisher(settings_for(kafka_bootstrap, topic, tmp_path / "a"))
        asyncio.run(plain.publish_many([selection(i) for i in range(3)]))
        stamped = Stamped(settings_for(kafka_bootstrap, topic, tmp_path / "b"))
        results = asyncio.run(stamped.publish_many([selection(i) for i in range(2)]))
    finally:
        _observers.remove(observer)
    assert all(r.delivered for r in results)
    assert seen == [
        (DeliveryStatus.DELIVERED, "claude", "model-0"),
        (DeliveryStatus.DELIVERED, "gemini-flash", "model-1"),
        (DeliveryStatus.DELIVERED, "zai", "model-2"),
        (DeliveryStatus.DELIVERED, "claude", "stamped"),
        (DeliveryStatus.DELIVERED, "gemini-flash", "stamped"),
    ]
