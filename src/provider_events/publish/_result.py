"""The typed outcome of a publish call."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["DeliveryStatus", "PublishResult", "delivered_result"]


class DeliveryStatus(StrEnum):
    """Where an event is after a publish call returned."""

    DELIVERED = "delivered"  #: the broker acknowledged it (partition and offset are known)
    STORED = "stored"  #: local sink: committed to the embedded event store
    QUEUED = "queued"  #: background mode: committed to the outbox; the relay delivers it
    SPOOLED = "spooled"  #: not acknowledged within the bound; committed to the outbox
    REJECTED = "rejected"  #: invalid input; nothing was sent or stored
    FAILED = "failed"  #: neither delivered nor spooled (e.g. outbox full); see ``error``


@dataclass(frozen=True, slots=True)
class PublishResult:
    """What happened to one event. ``bool(result)`` is true only when it reached its sink."""

    status: DeliveryStatus
    event_id: str | None = None
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    error: str | None = None
    retriable: bool = False

    @property
    def delivered(self) -> bool:
        return self.status in (DeliveryStatus.DELIVERED, DeliveryStatus.STORED)

    @property
    def accepted(self) -> bool:
        """True when the event is safe: delivered, stored, or durably in the outbox."""
        return self.status not in (DeliveryStatus.REJECTED, DeliveryStatus.FAILED)

    def __bool__(self) -> bool:
        return self.delivered


_new = object.__new__
_set_status, _set_event_id, _set_topic, _set_partition, _set_offset, _set_error, _set_retriable = (
    PublishResult.__dict__[name].__set__  # the slots' own setters
    for name in ("status", "event_id", "topic", "partition", "offset", "error", "retriable")
)


def delivered_result(event_id: str, topic: str, partition: int, offset: int) -> PublishResult:
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
    return result
