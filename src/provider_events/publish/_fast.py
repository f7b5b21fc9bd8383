"""The publish side of the fast path, fenced here: ``Publisher.publish_many`` on large batches.

The plain path is ``Publisher.send_many`` (``OutgoingEvent`` in, ``PublishResult`` out, with
routing, backlog ordering and the outbox). A batch of compact
:data:`~provider_events.events._fast.EventParts` takes this path only when every event goes
straight to Kafka (synchronous delivery, the Kafka sink, no spooled backlog); otherwise it is
turned into ``OutgoingEvent``s and handed to the plain path. What it does differently, each
measured by ``python -m benchmarks --only publish`` and pinned to the plain construction by
``tests/unit/test_publish_fast_paths.py``:

* :func:`produce_parts`: the headers of each message exist only while it is handed to
  librdkafka (:func:`~provider_events.events._fast.header_dict`);
* :func:`delivered_result`: a delivered ``PublishResult`` made through its slots' setters,
  twice as fast as the frozen dataclass's ``__init__`` (one per event);
* :func:`publish_parts`: settles reports by position, reading names through the
  ``EventParts`` index constants, and spools the unacknowledged through the plain path.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, cast

from provider_events.events._envelope import event_from_parts
from provider_events.events._fast import (
    EVENT_ID,
    KEY,
    MODEL,
    PROVIDER,
    TOPIC,
    VALUE,
    EventParts,
    header_dict,
)
from provider_events.publish._producer import _KAFKA_ERROR, DeliveryGroup, Report, _OnDelivery
from provider_events.publish._publisher import (
    Delivery,
    Unacknowledged,
    _settled,
    delivered,
    notify_all,
)
from provider_events.publish._result import DeliveryStatus, FailureReason, PublishResult

if TYPE_CHECKING:
    from provider_events.publish._producer import SharedProducer
    from provider_events.publish._publisher import Publisher

__all__ = ["delivered_result", "produce_parts", "publish_parts"]


async def publish_parts(
    publisher: Publisher, parts: Sequence[EventParts], delivery: Delivery
) -> list[PublishResult]:
    """Publish compact events; the same results, in order, as ``send_many`` of their
    ``OutgoingEvent``s."""
    if delivery != "sync" or not publisher._straight_to_kafka():
        return await publisher.send_many([event_from_parts(p) for p in parts], delivery)
    started = time.perf_counter()
    settings = publisher.settings

    def start(wake: Callable[[], None]) -> tuple[DeliveryGroup, SharedProducer, float]:
        from provider_events.publish._producer import get_producer

        deadline = time.monotonic() + settings.delivery_timeout
        producer = get_producer(settings)
        return produce_parts(producer, parts, deadline, wake), producer, deadline

    group, producer = await delivered(start)
    producer.release(group, f"not acknowledged within {settings.delivery_timeout:g}s")
    results: list[PublishResult | None] = [None] * len(parts)
    unacknowledged: list[Unacknowledged] = []
    reports = cast("list[Report]", group.reports)  # release() filled every one
    for i, (report, p) in enumerate(zip(reports, parts, strict=True)):
        if report[0] is None:
            results[i] = delivered_result(p[EVENT_ID], p[TOPIC], report[1], report[2])
        else:
            unacknowledged.append((i, report[0], report[4] or FailureReason.KAFKA_ERROR))
    if unacknowledged:
        publisher._spool_unacknowledged(
            [event_from_parts(parts[i]) for i, _, _ in unacknowledged], unacknowledged, results
        )
    done = _settled(results)
    notify_all(done, ((p[PROVIDER], p[MODEL]) for p in parts), started)
    return done


def produce_parts(
    producer: SharedProducer,
    parts: Sequence[EventParts],
    deadline: float,
    on_done: Callable[[], None] | None = None,
) -> DeliveryGroup:
    """``SharedProducer.produce_group`` for compact events: each one's headers are made only
    while it is handed over (every object kept alive per event costs the cyclic GC)."""
    group, accepting = producer.open_group(len(parts), on_done)
    if not accepting:
        return group
    # Typed loosely on purpose: confluent-kafka's stub wants dict[str, str | bytes | None]
    # headers (invariant), ours are dict[str, bytes], which it takes as they are.
    produce: Callable[..., None] = producer.client.produce
    on_delivery = _OnDelivery
    for index, p in enumerate(parts):
        try:
            produce(
                p[TOPIC],
                p[VALUE],
                p[KEY],
                headers=header_dict(p),
                on_delivery=on_delivery(group, index),
            )
        except BufferError:
            producer.produce_when_room(
                group, index, p[TOPIC], p[KEY], p[VALUE], header_dict(p), deadline
            )
        except Exception as exc:  # KafkaException, TypeError: refused before sending
            group.report(index, f"{type(exc).__name__}: {exc}", None, None, False, _KAFKA_ERROR)
    return group


#: The frozen dataclass's own slot setters (``delivered_result`` uses them).
_new = object.__new__
(
    _set_status,
    _set_event_id,
    _set_topic,
    _set_partition,
    _set_offset,
    _set_error,
    _set_retriable,
    _set_reason,
) = (
    PublishResult.__dict__[name].__set__  # the slots' own setters
    for name in (
        "status",
        "event_id",
        "topic",
        "partition",
        "offset",
        "error",
        "retriable",
        "reason",
    )
)


def delivered_result(
    event_id: str, topic: str, partition: int | None, offset: int | None
) -> PublishResult:
    """``PublishResult(DeliveryStatus.DELIVERED, event_id, topic, partition, offset)``, made
    twice as fast for large batches (one per event): the frozen dataclass's ``__init__`` goes
    through ``object.__setattr__`` per field, this sets each slot directly. The result is the
    same frozen, equal, hashable object (a unit test checks every field)."""
    result = _new(PublishResult)
    _set_status(result, DeliveryStatus.DELIVERED)
    _set_event_id(result, event_id)
    _set_topic(result, topic)
    _set_partition(result, partition)
    _set_offset(result, offset)
    _set_error(result, None)
    _set_retriable(result, False)
    _set_reason(result, None)
    return result
